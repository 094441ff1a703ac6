"""The dispatcher on both databases: over a backlog bigger than its memory
every message arrives once, each account's in position order; idle endpoints
are read again only when the outbox grows; ended messages past retention go."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from service.adapters.leader import Leadership
from service.adapters.webhook_records import (
    Attempt,
    EndpointRecord,
    Key,
    OutboxTotals,
    PendingMessage,
)
from service.adapters.webhook_store import WebhookStore, open_webhook_store
from service.application import delivery_lanes, webhook_dispatcher
from service.application.webhook_dispatcher import WebhookDispatcher
from service.config import Settings
from service.domain.account import Account
from tests.helpers.outbox import project, projecting
from tests.helpers.receiver import webhook_receiver

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SECRET = "whsec_" + "A" * 32


def test_a_backlog_bigger_than_memory_arrives_once_and_in_order_per_account(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_lanes, "LANE_MESSAGES", 3)
    monkeypatch.setattr(delivery_lanes, "ENDPOINT_MESSAGES", 5)
    monkeypatch.setattr(webhook_dispatcher, "ENDPOINT_MESSAGES", 5)
    monkeypatch.setattr(webhook_dispatcher, "PAGE", 4)
    # Readers are woken when there is room or news, never by their safety net.
    monkeypatch.setattr(webhook_dispatcher, "NEWS_SECONDS", 60.0)
    store = open_webhook_store(settings)
    accounts = [Account(account_id=f"user-{n}") for n in range(3)]
    for account in accounts:
        account.purchase(1_000, expires_at=None, now=NOW)
        for _ in range(9):
            account.consume(1, now=NOW)
    with webhook_receiver() as receiver:
        record = EndpointRecord(
            "ep", receiver.url, ("entry.created",), None, None, "whsec_" + "A" * 32, "t"
        )
        store.add(record)
        assert project(settings, accounts, 0) == 30
        leadership = Leadership(None)
        leadership.start()
        dispatcher = WebhookDispatcher(store, [0.1], True, leadership)
        dispatcher.start()
        try:
            calls = receiver.wait_for(30)
            deadline = time.monotonic() + 10
            delivered = store.totals().delivered
            while delivered < 30 and time.monotonic() < deadline:
                time.sleep(0.02)  # the last outcomes are being committed
                delivered = store.totals().delivered
        finally:
            dispatcher.stop()
        assert len(receiver.calls) == 30
    assert store.totals() == OutboxTotals(0, 30, 0, 30)  # each sent once, none left
    store.close()
    bodies = [json.loads(call.body) for call in calls]
    assert len(bodies) == 30 and len({call.headers["webhook-id"] for call in calls}) == 30
    for account in accounts:
        positions = [
            b["data"]["entry"]["position"]
            for b in bodies
            if b["data"]["entry"]["account_id"] == account.account_id
        ]
        assert positions == sorted(positions) and len(positions) == 10


class CountingStore:
    """The real store, counting the dispatcher's reads of new messages and of
    the outbox's last position."""

    def __init__(self, store: WebhookStore) -> None:
        self.store, self.reads, self.watches = store, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def pending_after(self, key: Key, limit: int) -> list[PendingMessage]:
        self.reads += 1
        return self.store.pending_after(key, limit)

    def last_position(self) -> int:
        self.watches += 1
        return self.store.last_position()


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Returns once ``condition()`` holds (polled every 20 ms).

    Raises:
        AssertionError: it still does not after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_idle_endpoints_are_read_again_only_once_the_outbox_grows(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook_dispatcher, "NEWS_SECONDS", 60.0)  # no safety net
    store = CountingStore(open_webhook_store(settings))
    project = projecting(settings)
    account = Account(account_id="user-1")
    account.purchase(1_000, expires_at=None, now=NOW)
    with webhook_receiver() as receiver:
        for n in range(5):
            store.add(
                EndpointRecord(f"ep-{n}", receiver.url, ("entry.created",), None, None, SECRET, "t")
            )
        project([account])
        leadership = Leadership(None)
        leadership.start()
        dispatcher = WebhookDispatcher(store, [0.1], True, leadership)  # type: ignore[arg-type]
        dispatcher.start()
        try:
            receiver.wait_for(5)
            wait_until(lambda: store.totals().delivered == 5)
            reads, watches = store.reads, store.watches
            wait_until(lambda: store.watches >= watches + 20)  # about 2 s of watching
            assert store.reads == reads  # not one read per watch, nor per 0.1 s
            account.consume(1, now=NOW)
            project([account])  # nobody wakes the dispatcher: its watch sees it
            receiver.wait_for(10)
        finally:
            dispatcher.stop()
    store.close()


def test_the_leading_dispatcher_prunes_ended_messages_past_retention_and_keeps_pending_ones(
    settings: Settings,
) -> None:
    store = open_webhook_store(settings)
    project = projecting(settings)
    account = Account(account_id="user-1")
    account.purchase(1_000, expires_at=None, now=NOW)
    account.consume(1, now=NOW)
    with socket.socket() as closed:  # a port nobody listens on: every attempt fails
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    store.add(EndpointRecord("ep", url, ("entry.created",), None, None, "whsec_" + "A" * 32, "t"))
    project([account])
    store.record_attempts([Attempt((1, "ep", 0), "delivered", 204, None, None)])
    leadership = Leadership(None)
    leadership.start()
    an_hour_later = lambda: time.time() + 3600  # noqa: E731
    dispatcher = WebhookDispatcher(
        store, [3600], True, leadership, clock=an_hour_later, retention_seconds=60
    )
    dispatcher.start()
    try:  # the first message goes; the second, pending (retried in an hour), stays
        wait_until(lambda: [r["status"] for r in store.deliveries("ep", 10)] == ["pending"])
    finally:
        dispatcher.stop()
    totals = store.totals()
    assert (totals.pending, totals.delivered, totals.failed) == (1, 1, 0)
    store.close()


def test_a_sealed_secret_signs_once_opened_and_without_the_key_messages_wait(
    settings: Settings,
) -> None:
    keyed = settings.model_copy(update={"webhook_secrets_key": SecretStr("k" * 40)})
    sealing = open_webhook_store(keyed)
    project = projecting(settings)
    account = Account(account_id="user-1")
    account.purchase(1_000, expires_at=None, now=NOW)
    with webhook_receiver() as receiver:
        sealing.add(EndpointRecord("ep", receiver.url, ("entry.created",), None, None, SECRET, "t"))
        project([account])
        for store, key in ((CountingStore(open_webhook_store(settings)), False), (sealing, True)):
            leadership = Leadership(None)
            leadership.start()
            dispatcher = WebhookDispatcher(store, [3600], True, leadership)  # type: ignore[arg-type]
            dispatcher.start()
            try:
                if key:
                    (call,) = receiver.wait_for(1)
                    Webhook(SECRET).verify(call.body, call.headers)  # raises if not signed so
                    wait_until(lambda: sealing.totals().delivered == 1)
                else:  # no key opens it: not attempted, left pending for the key
                    assert isinstance(store, CountingStore)
                    wait_until(lambda s=store: s.watches >= 20)  # type: ignore[misc]
                    assert store.totals() == OutboxTotals(
                        pending=1, delivered=0, failed=0, attempts=0
                    )
                    assert receiver.calls == []
            finally:
                dispatcher.stop()
            store.close()
