"""Draw-down rules of credit buckets (``service.domain.credit``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.domain.credit import plan_draws, refund_restores, split_draws
from service.domain.values import Bucket, Draw

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bucket(name: str, remaining: int, expires_in_days: int | None, seq: int) -> Bucket:
    expires_at = None if expires_in_days is None else T0 + timedelta(days=expires_in_days)
    return Bucket(name, "purchase", remaining, remaining, expires_at, seq)


def amounts(draws: list[Draw]) -> list[tuple[str | None, int]]:
    return [(d.bucket, d.amount) for d in draws]


def test_a_debit_draws_the_bucket_that_expires_first() -> None:
    buckets = [bucket("late", 10, 30, 1), bucket("soon", 10, 1, 2)]
    assert amounts(plan_draws(buckets, 15)) == [("soon", 10), ("late", 5)]


def test_non_expiring_credit_is_drawn_last() -> None:
    buckets = [bucket("forever", 10, None, 1), bucket("expiring", 10, 90, 2)]
    assert amounts(plan_draws(buckets, 12)) == [("expiring", 10), ("forever", 2)]


def test_buckets_that_expire_together_are_drawn_first_in_first_out() -> None:
    buckets = [
        bucket("second", 10, 5, 7),
        bucket("first", 10, 5, 3),
        bucket("nx2", 5, None, 9),
        bucket("nx1", 5, None, 4),
    ]
    assert amounts(plan_draws(buckets, 28)) == [
        ("first", 10),
        ("second", 10),
        ("nx1", 5),
        ("nx2", 3),
    ]


def test_what_the_buckets_cannot_cover_is_drawn_on_the_credit_line() -> None:
    assert amounts(plan_draws([bucket("a", 4, 1, 1)], 10)) == [("a", 4), (None, 6)]
    assert amounts(plan_draws([], 3)) == [(None, 3)]


def test_empty_buckets_are_skipped() -> None:
    assert amounts(plan_draws([bucket("a", 0, 1, 1), bucket("b", 5, 2, 2)], 5)) == [("b", 5)]


def test_a_draw_remembers_its_bucket_so_tokens_can_go_back_after_it_ran_empty() -> None:
    (draw,) = plan_draws([bucket("a", 8, 3, 5)], 8)
    assert (draw.expires_at, draw.type, draw.bucket_amount, draw.seq) == (
        T0 + timedelta(days=3),
        "purchase",
        8,
        5,
    )


def test_split_cuts_a_straddling_draw_in_two_and_keeps_order() -> None:
    draws = [Draw("a", 5), Draw("b", 5), Draw(None, 5)]
    head, tail = split_draws(draws, 7)
    assert amounts(head) == [("a", 5), ("b", 2)]
    assert amounts(tail) == [("b", 3), (None, 5)]
    assert split_draws(draws, 0) == ([], draws)
    assert split_draws(draws, 15) == (draws, [])


def test_refunds_go_back_in_reverse_draw_order_skipping_what_was_refunded() -> None:
    draws = [Draw("soon", 5), Draw("late", 5), Draw(None, 5)]
    assert amounts(refund_restores(draws, 0, 7)) == [(None, 5), ("late", 2)]
    assert amounts(refund_restores(draws, 7, 6)) == [("late", 3), ("soon", 3)]
    assert amounts(refund_restores(draws, 13, 2)) == [("soon", 2)]
