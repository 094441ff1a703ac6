"""The Account aggregate: holds (reserve, capture, release, expiry)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.account import Account
from service.domain.errors import HoldNotFound, InsufficientBalance, ValidationFailed
from service.domain.events import LedgerEntry
from service.domain.values import EntryType, entry_version_of

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def funded(amount: int = 1000) -> Account:
    account = Account(account_id="user-1")
    account.purchase(amount, expires_at=None, now=NOW)
    return account


def types_of(account: Account) -> list[EntryType]:
    return [e.entry_type for e in account.collect_events() if isinstance(e, LedgerEntry)]


def test_a_hold_reduces_available_and_increases_held() -> None:
    account = funded()
    outcome = account.place_hold(300, ttl_seconds=900, now=NOW, operation="chat")
    assert outcome.entry.entry_type is EntryType.HOLD
    assert outcome.entry.delta_available == -300
    assert outcome.entry.expires_at == NOW + timedelta(seconds=900)
    assert (outcome.balance.available, outcome.balance.held) == (700, 300)


def test_a_hold_is_named_by_its_own_entry_id() -> None:
    account = funded()
    entry = account.place_hold(1, ttl_seconds=60, now=NOW).entry
    assert entry.hold_id is not None
    assert entry_version_of(account.id, uuid.UUID(entry.hold_id)) == entry.originator_version


def test_a_hold_placed_when_an_expiry_is_due_is_still_named_by_its_own_entry() -> None:
    # Regression: the hold id was computed before settling, so it named the
    # expiry entry recorded just before the hold.
    account = funded()
    account.grant(10, expires_at=NOW + timedelta(minutes=1), now=NOW)
    later = NOW + timedelta(minutes=2)
    entry = account.place_hold(5, ttl_seconds=60, now=later).entry
    assert entry.hold_id is not None
    assert entry_version_of(account.id, uuid.UUID(entry.hold_id)) == entry.originator_version
    assert account.capture_hold(entry.hold_id, None, now=later).balance.held == 0


def test_a_hold_that_would_overdraw_is_refused() -> None:
    account = funded(100)
    with pytest.raises(InsufficientBalance) as refused:
        account.place_hold(101, ttl_seconds=60, now=NOW)
    assert refused.value.context == {"available": 100, "requested": 101}


def test_a_partial_capture_consumes_that_much_and_releases_the_rest() -> None:
    account = funded()
    hold_id = account.place_hold(300, ttl_seconds=900, now=NOW).entry.hold_id
    assert hold_id is not None
    outcome = account.capture_hold(hold_id, 120, now=NOW)
    assert outcome.entry.entry_type is EntryType.HOLD_CAPTURE
    assert (outcome.entry.amount, outcome.entry.delta_available) == (120, 180)
    b = outcome.balance
    assert (b.available, b.held, b.consumed) == (880, 0, 120)
    assert account.holds == {}


def test_a_capture_without_amount_consumes_the_whole_hold() -> None:
    account = funded()
    hold_id = account.place_hold(300, ttl_seconds=900, now=NOW).entry.hold_id
    assert hold_id is not None
    b = account.capture_hold(hold_id, None, now=NOW).balance
    assert (b.available, b.held, b.consumed) == (700, 0, 300)


def test_capturing_more_than_is_held_is_a_validation_error() -> None:
    account = funded()
    hold_id = account.place_hold(300, ttl_seconds=900, now=NOW).entry.hold_id
    assert hold_id is not None
    with pytest.raises(ValidationFailed) as refused:
        account.capture_hold(hold_id, 301, now=NOW)
    assert refused.value.code == "validation-error"
    assert (account.balance().available, account.balance().held) == (700, 300)


def test_a_release_gives_back_all_of_the_hold() -> None:
    account = funded()
    hold_id = account.place_hold(300, ttl_seconds=900, now=NOW).entry.hold_id
    assert hold_id is not None
    outcome = account.release_hold(hold_id, now=NOW)
    assert outcome.entry.entry_type is EntryType.HOLD_RELEASE
    assert (outcome.balance.available, outcome.balance.held, outcome.balance.consumed) == (
        1000,
        0,
        0,
    )


def test_a_closed_hold_cannot_be_captured_or_released_again() -> None:
    account = funded()
    hold_id = account.place_hold(300, ttl_seconds=900, now=NOW).entry.hold_id
    assert hold_id is not None
    account.release_hold(hold_id, now=NOW)
    with pytest.raises(HoldNotFound):
        account.capture_hold(hold_id, None, now=NOW)
    with pytest.raises(HoldNotFound):
        account.release_hold(hold_id, now=NOW)


def test_an_expired_hold_is_settled_before_the_next_command_and_its_tokens_are_free() -> None:
    account = funded(1000)
    hold_id = account.place_hold(1000, ttl_seconds=60, now=NOW).entry.hold_id
    assert hold_id is not None
    types_of(account)
    with pytest.raises(InsufficientBalance):
        account.consume(1, now=NOW + timedelta(seconds=59))
    at_expiry = NOW + timedelta(seconds=60)
    outcome = account.consume(1000, now=at_expiry)
    assert types_of(account) == [EntryType.HOLD_EXPIRY, EntryType.CONSUMPTION]
    assert outcome.entry.originator_version == 4
    b = outcome.balance
    assert (b.available, b.held, b.consumed) == (0, 0, 1000)


def test_a_hold_expiry_is_recorded_by_the_system_with_the_hold_expiry_time() -> None:
    account = funded()
    hold_id = account.place_hold(10, ttl_seconds=60, now=NOW).entry.hold_id
    (expiry,) = account.settle(NOW + timedelta(hours=1))
    assert (expiry.entry_type, expiry.hold_id, expiry.actor) == (
        EntryType.HOLD_EXPIRY,
        hold_id,
        "system",
    )
    assert expiry.expires_at == NOW + timedelta(seconds=60)
    assert (expiry.delta_available, expiry.delta_held) == (10, -10)
    assert account.settle(NOW + timedelta(hours=2)) == []


def test_an_expired_hold_can_no_longer_be_captured() -> None:
    account = funded()
    hold_id = account.place_hold(10, ttl_seconds=60, now=NOW).entry.hold_id
    assert hold_id is not None
    with pytest.raises(HoldNotFound):
        account.capture_hold(hold_id, None, now=NOW + timedelta(seconds=60))


def test_a_released_hold_gives_tokens_back_to_the_buckets_it_drew_from() -> None:
    account = Account(account_id="user-1")
    account.grant(100, expires_at=NOW + timedelta(days=1), now=NOW)
    account.purchase(100, expires_at=None, now=NOW)
    hold_id = account.place_hold(150, ttl_seconds=60, now=NOW).entry.hold_id
    assert hold_id is not None
    assert [c.remaining for c in account.credits()] == [50]
    account.capture_hold(hold_id, 120, now=NOW)
    # 100 came from the grant and 20 from the purchase: 30 go back to the purchase
    assert [(c.type, c.remaining) for c in account.credits()] == [("purchase", 80)]


def test_a_hold_release_into_an_expired_bucket_expires_those_tokens() -> None:
    account = Account(account_id="user-1")
    account.grant(100, expires_at=NOW + timedelta(minutes=5), now=NOW)
    hold_id = account.place_hold(60, ttl_seconds=3600, now=NOW).entry.hold_id
    assert hold_id is not None
    later = NOW + timedelta(minutes=10)
    released = account.release_hold(hold_id, now=later).balance
    assert (released.available, released.held) == (60, 0)  # right after the release
    b = account.balance()  # and after the expiry that follows it
    assert (b.available, b.held, b.expired) == (0, 0, 100)
