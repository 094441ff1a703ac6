"""Contract v1.1 ``balance-limit-exceeded``: no balance counter or credit limit
above 2^53 - 1 tokens (the largest integer every JSON client reads exactly)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.domain.account import Account, RefundTarget
from service.domain.errors import BalanceLimitExceeded
from service.domain.values import MAX_AMOUNT, MAX_COUNTER

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_purchase_that_would_pass_the_limit_is_refused_and_records_nothing() -> None:
    account = Account(account_id="whale")
    for _ in range(MAX_COUNTER // MAX_AMOUNT):
        account.purchase(MAX_AMOUNT, expires_at=None, now=NOW)
    before = (account.version, account.available, account.purchased)
    with pytest.raises(BalanceLimitExceeded) as refused:
        account.purchase(MAX_AMOUNT, expires_at=None, now=NOW)
    assert refused.value.code == "balance-limit-exceeded"
    assert refused.value.context["counter"] == "available"
    assert (account.version, account.available, account.purchased) == before
    headroom = MAX_COUNTER - account.available
    account.purchase(headroom, expires_at=None, now=NOW)  # exactly to the limit is fine
    assert account.available == MAX_COUNTER


def test_consume_and_refund_cycles_cannot_grow_a_counter_past_the_limit() -> None:
    account = Account(account_id="cycler")
    account.grant(MAX_AMOUNT, expires_at=None, now=NOW, reason="seed")
    refused = None
    for _ in range(MAX_COUNTER // MAX_AMOUNT + 2):
        try:
            outcome = account.consume(MAX_AMOUNT, now=NOW)
        except BalanceLimitExceeded as error:
            refused = error
            break
        entry = outcome.entry
        target = RefundTarget(str(entry.originator_version), entry.amount, list(entry.draws))
        account.refund(target, None, now=NOW)
    assert refused is not None and refused.context["counter"] == "consumed"
    assert account.consumed <= MAX_COUNTER and account.refunded <= MAX_COUNTER
