"""The Account aggregate: counters, the overdraft rule and credit limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.account import Account, RefundTarget
from service.domain.errors import InsufficientBalance, ValidationFailed
from service.domain.events import LedgerEntry
from service.domain.values import Balance, EntryType, entry_id_for

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def invariant_holds(b: Balance) -> bool:
    return (
        b.available + b.held
        == b.purchased + b.granted + b.refunded - b.consumed - b.deducted - b.expired
        and b.available >= -b.credit_limit
    )


def entries(account: Account) -> list[LedgerEntry]:
    return [e for e in account.collect_events() if isinstance(e, LedgerEntry)]


def test_an_account_opens_at_version_zero_with_zero_balance() -> None:
    account = Account(account_id="user-1")
    assert account.version == 0
    assert account.balance() == Balance("user-1")


def test_purchase_grant_consume_and_deduct_move_their_counters() -> None:
    account = Account(account_id="user-1")
    account.purchase(1000, expires_at=None, now=NOW, payment_reference="pi_1")
    account.grant(200, expires_at=None, now=NOW, reason="promo")
    account.consume(300, now=NOW, operation="chat", model="gpt")
    outcome = account.deduct(50, now=NOW, reason="chargeback")
    b = outcome.balance
    assert (b.purchased, b.granted, b.consumed, b.deducted) == (1000, 200, 300, 50)
    assert (b.available, b.held, b.refunded, b.expired) == (850, 0, 0, 0)
    assert b == account.balance()
    assert invariant_holds(b)


def test_entry_versions_run_one_two_three() -> None:
    account = Account(account_id="user-1")
    account.purchase(10, expires_at=None, now=NOW)
    account.consume(1, now=NOW)
    account.consume(2, now=NOW)
    assert [(e.originator_version, e.entry_type) for e in entries(account)] == [
        (1, EntryType.PURCHASE),
        (2, EntryType.CONSUMPTION),
        (3, EntryType.CONSUMPTION),
    ]


def test_an_entry_records_its_fields_and_signed_delta() -> None:
    account = Account(account_id="user-1")
    account.purchase(10, expires_at=None, now=NOW)
    entry = account.consume(
        4,
        now=NOW,
        actor="chat-service",
        idempotency_key="k1",
        operation="chat.completion",
        model="gpt-4o",
        metadata={"trace": "t"},
    ).entry
    assert (entry.amount, entry.delta_available, entry.actor, entry.idempotency_key) == (
        4,
        -4,
        "chat-service",
        "k1",
    )
    assert (entry.operation, entry.model, entry.metadata) == (
        "chat.completion",
        "gpt-4o",
        {"trace": "t"},
    )
    assert entry.timestamp == NOW


def test_a_consumption_that_would_overdraw_is_refused() -> None:
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    entries(account)
    with pytest.raises(InsufficientBalance) as refused:
        account.consume(101, now=NOW)
    assert refused.value.code == "insufficient-balance"
    assert refused.value.context == {"available": 100, "requested": 101}
    assert account.balance().available == 100
    assert entries(account) == []


def test_a_consumption_of_exactly_the_available_balance_is_accepted() -> None:
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    assert account.consume(100, now=NOW).balance.available == 0
    with pytest.raises(InsufficientBalance):
        account.consume(1, now=NOW)


def test_a_deduction_that_would_overdraw_is_refused() -> None:
    account = Account(account_id="user-1")
    account.grant(5, expires_at=None, now=NOW)
    with pytest.raises(InsufficientBalance) as refused:
        account.deduct(6, now=NOW)
    assert refused.value.context == {"available": 5, "requested": 6}


def test_a_credit_limit_lets_available_go_down_to_minus_the_limit_and_no_further() -> None:
    account = Account(account_id="user-1")
    account.purchase(10, expires_at=None, now=NOW)
    outcome = account.set_credit_limit(50, now=NOW)
    assert outcome.entry.entry_type is EntryType.CREDIT_LIMIT_CHANGE
    assert (outcome.entry.amount, outcome.balance.credit_limit) == (50, 50)
    assert account.consume(60, now=NOW).balance.available == -50
    with pytest.raises(InsufficientBalance) as refused:
        account.consume(1, now=NOW)
    assert refused.value.context == {"available": -50, "requested": 1}
    assert invariant_holds(account.balance())


def test_a_credit_limit_cannot_be_set_below_the_current_debt() -> None:
    account = Account(account_id="user-1")
    account.set_credit_limit(100, now=NOW)
    account.consume(40, now=NOW)
    with pytest.raises(ValidationFailed) as refused:
        account.set_credit_limit(39, now=NOW)
    assert refused.value.code == "validation-error"
    assert account.set_credit_limit(40, now=NOW).balance.credit_limit == 40


def test_a_credit_limit_can_be_lowered_to_zero_when_nothing_is_owed() -> None:
    account = Account(account_id="user-1")
    account.set_credit_limit(100, now=NOW)
    account.purchase(5, expires_at=None, now=NOW)
    assert account.set_credit_limit(0, now=NOW).balance.credit_limit == 0


def test_a_purchase_repays_debt_before_it_forms_an_expiring_bucket() -> None:
    account = Account(account_id="user-1")
    account.set_credit_limit(100, now=NOW)
    account.consume(30, now=NOW)
    account.purchase(100, expires_at=NOW + timedelta(days=1), now=NOW)
    assert [(c.amount, c.remaining) for c in account.credits()] == [(100, 70)]
    account.settle(NOW + timedelta(days=2))
    b = account.balance()
    assert (b.available, b.expired) == (0, 70)
    assert invariant_holds(b)


def test_a_refunded_credit_line_draw_stays_free_credit_after_the_debt_was_repaid() -> None:
    # Regression: a negative debt was 'repaid' by the next expiring purchase,
    # whose bucket then swallowed (and expired) non-expiring credit.
    account = Account(account_id="user-1")
    account.set_credit_limit(100, now=NOW)
    debit = account.consume(100, now=NOW).entry
    account.purchase(100, expires_at=None, now=NOW)
    account.refund(
        RefundTarget(
            str(entry_id_for(account.id, debit.originator_version)), debit.amount, list(debit.draws)
        ),
        None,
        now=NOW,
    )
    account.consume(50, now=NOW)
    account.purchase(10, expires_at=NOW + timedelta(hours=1), now=NOW)
    assert [c.remaining for c in account.credits()] == [10]
    account.settle(NOW + timedelta(hours=2))
    b = account.balance()
    assert (b.available, b.expired) == (50, 10)
    assert invariant_holds(b)


def test_an_expires_at_in_the_past_is_refused() -> None:
    account = Account(account_id="user-1")
    with pytest.raises(ValidationFailed):
        account.purchase(10, expires_at=NOW, now=NOW)
    with pytest.raises(ValidationFailed):
        account.grant(10, expires_at=NOW - timedelta(seconds=1), now=NOW)
