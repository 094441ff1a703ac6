"""The webhook outbox on both databases: the projection writes messages, the
dispatcher's store reads them in key order, per account, records
attempts in one transaction, and prunes ended messages past retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from service.adapters.webhook_records import Attempt, EndpointRecord, OutboxTotals
from service.adapters.webhook_store import WebhookStore, open_webhook_store
from service.application.outbox_retention import prune_once
from service.config import Settings
from service.domain.account import Account
from tests.helpers.outbox import project

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def store(settings: Settings) -> Iterator[WebhookStore]:
    store = open_webhook_store(settings)
    yield store
    store.close()


def endpoint(endpoint_id: str) -> EndpointRecord:
    return EndpointRecord(
        endpoint_id, "https://example.com/hook", ("entry.created",), None, None, "whsec_x", "t"
    )


def test_new_messages_are_read_in_key_order_and_per_account(
    settings: Settings, store: WebhookStore
) -> None:
    store.add(endpoint("ep-a"))
    store.add(endpoint("ep-b"))
    assert store.first_to_deliver("ep-a") == 1  # nothing yet: after every message
    first, second = Account(account_id="user-1"), Account(account_id="user-2")
    first.purchase(100, expires_at=None, now=NOW)
    second.purchase(50, expires_at=None, now=NOW)
    first.consume(10, now=NOW)
    last = project(settings, [first, second], 0)
    assert last == 3
    read = store.pending_after((0, "ep-a", 0), 100)
    assert [m.key for m in read] == [(1, "ep-a", 0), (2, "ep-a", 0), (3, "ep-a", 0)]
    assert [m.account_id for m in read] == ["user-1", "user-1", "user-2"]
    after = store.pending_after((1, "ep-b", 0), 1)
    assert [m.key for m in after] == [(2, "ep-b", 0)]
    end = (3, "ep-a", 0)
    of_user_1 = store.pending_of("ep-a", "user-1", (-1, "", -1), end, 10)
    assert [m.key[0] for m in of_user_1] == [1, 2]
    assert [m.key[0] for m in store.pending_of("ep-a", "user-1", (1, "ep-a", 0), end, 10)] == [2]
    assert [m.key[0] for m in store.pending_of("ep-a", "user-1", (-1, "", -1), (1, "", 0), 10)] == [
        1
    ]
    assert store.first_to_deliver("ep-b") == 1


def test_attempts_are_recorded_together_and_only_pending_ones_are_read_again(
    settings: Settings, store: WebhookStore
) -> None:
    store.add(endpoint("ep-a"))
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    account.consume(1, now=NOW)
    project(settings, [account], 0)
    store.record_attempts(
        [
            Attempt((1, "ep-a", 0), "delivered", 204, None, None, seconds=0.02),
            Attempt((2, "ep-a", 0), "pending", 500, "oops", 1234.5, seconds=3.0),
        ]
    )
    latency = store.totals().latency  # buckets ≤ 0.01, 0.025, … 5, 10 s, +Inf
    assert latency.buckets == (0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2)
    assert latency.sum == pytest.approx(3.02)
    (again,) = store.pending_after((0, "ep-a", 0), 10)
    assert (again.key, again.attempts, again.next_attempt_at) == ((2, "ep-a", 0), 1, 1234.5)
    assert store.first_to_deliver("ep-a") == 2
    rows = store.deliveries("ep-a", 10)
    assert [(r["status"], r["last_response_status"]) for r in rows] == [
        ("pending", 500),
        ("delivered", 204),
    ]
    store.record_attempts([Attempt((2, "ep-a", 0), "failed", 500, "oops", None)])
    assert store.pending_after((0, "ep-a", 0), 10) == []
    assert store.first_to_deliver("ep-a") == 3  # after every message
    assert store.totals() == OutboxTotals(pending=0, delivered=1, failed=1, attempts=3)


def test_pruning_walks_the_outbox_in_batches_and_deletes_only_ended_messages(
    settings: Settings, store: WebhookStore
) -> None:
    store.add(endpoint("ep-a"))
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    for _ in range(4):
        account.consume(1, now=NOW)
    assert store.last_position() == 0
    project(settings, [account], 0)
    assert store.last_position() == 5
    store.record_attempts(
        [
            Attempt((1, "ep-a", 0), "delivered", 204, None, None),
            Attempt((2, "ep-a", 0), "failed", 500, "oops", None),
            Attempt((3, "ep-a", 0), "pending", 500, "oops", 1234.5),
            Attempt((4, "ep-a", 0), "delivered", 204, None, None),
        ]
    )
    later = time.time() + 1
    assert store.prune(time.time() - 3600, 0, 100) == (0, None)  # all younger than an hour
    assert store.prune(later, 0, 2) == (2, 2)  # positions 1 and 2; more may follow
    assert store.prune(later, 2, 2) == (1, 4)  # 4 goes, 3 is pending and stays
    assert store.prune(later, 4, 2) == (0, None)  # 5 is pending, and the last
    assert [r["status"] for r in store.deliveries("ep-a", 10)] == ["pending", "pending"]
    assert [m.key[0] for m in store.pending_after((0, "ep-a", 0), 10)] == [3, 5]
    assert store.totals() == OutboxTotals(pending=2, delivered=2, failed=1, attempts=4)
    assert store.last_position() == 5


def test_pruning_stops_at_the_first_message_younger_than_the_retention(
    settings: Settings, store: WebhookStore
) -> None:
    store.add(endpoint("ep-a"))
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    account.consume(1, now=NOW)
    project(settings, [account], 0)
    cutoff = time.time()
    while time.time() <= cutoff:  # the next messages are strictly younger
        pass
    account.consume(1, now=NOW)
    account.consume(1, now=NOW)
    project(settings, [account], 2)
    ended = [Attempt((p, "ep-a", 0), "delivered", 204, None, None) for p in (1, 2, 3, 4)]
    store.record_attempts(ended)
    assert asyncio.run(prune_once(store, cutoff, batch=1)) == 2
    assert [r["status"] for r in store.deliveries("ep-a", 10)] == ["delivered", "delivered"]
    assert store.prune(cutoff, 0, 100) == (0, None)  # its first message is younger


def test_with_a_secrets_key_the_signing_secret_is_sealed_at_rest(settings: Settings) -> None:
    keyed = settings.model_copy(update={"webhook_secrets_key": SecretStr("k" * 40)})
    store = open_webhook_store(keyed)
    try:
        store.add(endpoint("ep-a"))
        rows, _ = store._db.execute("SELECT secret FROM ledger_webhook_endpoints", {})
        (stored,) = [row["secret"] for row in rows]
        assert stored.startswith("fernet:") and "whsec_x" not in stored
        opened = store.get("ep-a")
        assert opened is not None and opened.secret == "whsec_x"
    finally:
        store.close()
    unkeyed = open_webhook_store(settings)
    try:
        record = unkeyed.get("ep-a")  # listed, but its secret does not open
        assert record is not None and record.secret is None
    finally:
        unkeyed.close()
