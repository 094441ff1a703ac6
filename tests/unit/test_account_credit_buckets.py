"""The Account aggregate: expiring credit buckets and refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.account import Account, RefundTarget
from service.domain.errors import InsufficientBalance, RefundExceedsConsumption
from service.domain.events import LedgerEntry
from service.domain.values import Balance, EntryType, entry_id_for

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def target(account: Account, entry: LedgerEntry) -> RefundTarget:
    return RefundTarget(
        str(entry_id_for(account.id, entry.originator_version)), entry.amount, list(entry.draws)
    )


def remaining(account: Account) -> list[tuple[str, int]]:
    return [(c.type, c.remaining) for c in account.credits()]


def invariant_holds(b: Balance) -> bool:
    return (
        b.available + b.held
        == b.purchased + b.granted + b.refunded - b.consumed - b.deducted - b.expired
        and b.available >= -b.credit_limit
    )


def three_buckets() -> Account:
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    account.grant(50, expires_at=NOW + 30 * DAY, now=NOW)
    account.purchase(20, expires_at=NOW + 7 * DAY, now=NOW)
    return account


def test_credits_are_listed_in_draw_down_order() -> None:
    account = three_buckets()
    assert [(c.type, c.amount) for c in account.credits()] == [
        ("purchase", 20),
        ("grant", 50),
        ("purchase", 100),
    ]


def test_consumption_draws_expiring_credit_first_and_non_expiring_last() -> None:
    account = three_buckets()
    entry = account.consume(60, now=NOW).entry
    assert [d.amount for d in entry.draws] == [20, 40]
    assert remaining(account) == [("grant", 10), ("purchase", 100)]


def test_what_is_left_in_a_bucket_at_its_expiry_becomes_a_credit_expiry() -> None:
    account = three_buckets()
    account.consume(5, now=NOW)
    account.collect_events()
    (expiry,) = account.settle(NOW + 7 * DAY)
    assert (expiry.entry_type, expiry.amount, expiry.delta_available, expiry.actor) == (
        EntryType.CREDIT_EXPIRY,
        15,
        -15,
        "system",
    )
    assert expiry.expires_at == NOW + 7 * DAY
    b = account.balance()
    assert (b.available, b.expired) == (150, 15)
    assert invariant_holds(b)


def test_commands_see_expired_credit_gone_from_the_expiry_instant() -> None:
    account = Account(account_id="user-1")
    account.grant(50, expires_at=NOW + DAY, now=NOW)
    account.consume(50, now=NOW + DAY - timedelta(microseconds=1))
    account = Account(account_id="user-2")
    account.grant(50, expires_at=NOW + DAY, now=NOW)
    with pytest.raises(InsufficientBalance) as refused:
        account.consume(1, now=NOW + DAY)
    assert refused.value.context["available"] == 0


def test_a_bucket_used_up_before_its_expiry_leaves_no_expiry_entry() -> None:
    account = Account(account_id="user-1")
    account.grant(50, expires_at=NOW + DAY, now=NOW)
    account.consume(50, now=NOW)
    assert account.settle(NOW + 2 * DAY) == []


def test_expiries_are_settled_oldest_first() -> None:
    account = three_buckets()
    entries = account.settle(NOW + 60 * DAY)
    assert [(e.entry_type, e.amount) for e in entries] == [
        (EntryType.CREDIT_EXPIRY, 20),
        (EntryType.CREDIT_EXPIRY, 50),
    ]
    assert account.balance().available == 100


def test_a_refund_goes_back_to_where_the_consumption_drew_from_last_draw_first() -> None:
    account = three_buckets()
    consumption = account.consume(80, now=NOW).entry  # 20 + 50 + 10
    assert remaining(account) == [("purchase", 90)]
    outcome = account.refund(target(account, consumption), 15, now=NOW)
    assert outcome.entry.entry_type is EntryType.REFUND
    assert outcome.entry.refund_of == target(account, consumption).entry_id
    assert (outcome.balance.available, outcome.balance.refunded) == (105, 15)
    assert remaining(account) == [("grant", 5), ("purchase", 100)]
    account.refund(target(account, consumption), 60, now=NOW)
    assert remaining(account) == [("purchase", 15), ("grant", 50), ("purchase", 100)]


def test_a_refund_without_amount_refunds_what_is_still_unrefunded() -> None:
    account = three_buckets()
    consumption = account.consume(80, now=NOW).entry
    account.refund(target(account, consumption), 30, now=NOW)
    outcome = account.refund(target(account, consumption), None, now=NOW)
    assert outcome.entry.amount == 50
    assert outcome.balance.available == 170


def test_a_refund_never_exceeds_what_is_unrefunded() -> None:
    account = three_buckets()
    consumption = account.consume(80, now=NOW).entry
    with pytest.raises(RefundExceedsConsumption) as refused:
        account.refund(target(account, consumption), 81, now=NOW)
    assert refused.value.code == "refund-exceeds-consumption"
    account.refund(target(account, consumption), 80, now=NOW)
    with pytest.raises(RefundExceedsConsumption):
        account.refund(target(account, consumption), 1, now=NOW)
    with pytest.raises(RefundExceedsConsumption):
        account.refund(target(account, consumption), None, now=NOW)
    assert account.balance().refunded == 80


def test_a_hold_capture_can_be_refunded() -> None:
    account = three_buckets()
    hold_id = account.place_hold(30, ttl_seconds=60, now=NOW).entry.hold_id
    assert hold_id is not None
    capture = account.capture_hold(hold_id, 25, now=NOW).entry
    outcome = account.refund(target(account, capture), None, now=NOW)
    assert outcome.entry.amount == 25
    assert outcome.balance.available == 170


def test_a_refund_into_an_already_expired_bucket_expires_it() -> None:
    account = three_buckets()
    consumption = account.consume(20, now=NOW).entry  # all of the 7-day purchase
    later = NOW + 10 * DAY
    outcome = account.refund(target(account, consumption), None, now=later)
    assert outcome.balance.available == 170  # right after the refund
    events = [e for e in account.collect_events() if isinstance(e, LedgerEntry)]
    assert [(e.entry_type, e.amount) for e in events[-2:]] == [
        (EntryType.REFUND, 20),
        (EntryType.CREDIT_EXPIRY, 20),
    ]
    b = account.balance()
    assert (b.available, b.refunded, b.expired) == (150, 20, 20)
    assert invariant_holds(b)
