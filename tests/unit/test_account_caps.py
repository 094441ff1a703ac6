"""Issue 7, unbounded work: an account holds at most 1,000 active holds and
1,000 credit buckets with tokens left; one more is refused with 422 and
records nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.account import Account
from service.domain.errors import ValidationFailed
from service.domain.values import MAX_ACTIVE_HOLDS, MAX_CREDIT_BUCKETS

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_the_thousand_and_first_active_hold_is_refused_until_one_closes() -> None:
    account = Account(account_id="holder")
    account.purchase(10 * MAX_ACTIVE_HOLDS, expires_at=None, now=NOW)
    holds = [account.place_hold(1, ttl_seconds=600, now=NOW) for _ in range(MAX_ACTIVE_HOLDS)]
    version = account.version
    with pytest.raises(ValidationFailed) as refused:
        account.place_hold(1, ttl_seconds=600, now=NOW)
    assert refused.value.code == "validation-error"
    assert "1000 active holds" in refused.value.context["errors"][0]["msg"]
    assert account.version == version and len(account.holds) == MAX_ACTIVE_HOLDS
    first = holds[0].entry.hold_id
    assert first is not None
    account.release_hold(first, now=NOW)
    account.place_hold(1, ttl_seconds=600, now=NOW)
    assert len(account.holds) == MAX_ACTIVE_HOLDS


def test_a_credit_opening_the_thousand_and_first_expiring_bucket_is_refused() -> None:
    account = Account(account_id="collector")
    later = NOW + timedelta(days=30)
    for _ in range(MAX_CREDIT_BUCKETS):
        account.purchase(5, expires_at=later, now=NOW)
    version = account.version
    with pytest.raises(ValidationFailed):
        account.purchase(5, expires_at=later, now=NOW)
    with pytest.raises(ValidationFailed):
        account.grant(5, expires_at=later, now=NOW, reason="gift")
    assert account.version == version and account.available == 5 * MAX_CREDIT_BUCKETS
    account.consume(5, now=NOW)  # empties the bucket that expires first: room for one more
    account.purchase(5, expires_at=later, now=NOW)
    assert len(account.credits()) == MAX_CREDIT_BUCKETS


def test_credits_that_never_expire_are_always_accepted() -> None:
    account = Account(account_id="saver")
    later = NOW + timedelta(days=30)
    for _ in range(MAX_CREDIT_BUCKETS):
        account.purchase(5, expires_at=later, now=NOW)
    for _ in range(3):
        account.purchase(5, expires_at=None, now=NOW)  # a valid purchase gets 201
    assert account.available == 5 * (MAX_CREDIT_BUCKETS + 3)
