"""The dispatcher over a backlog bigger than its memory: every message
arrives once, each account's in position order, on both databases."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from projections.balances import tracking_at
from projections.batch import plan_batch
from projections.outbox import Outbox
from projections.views import BalanceTable
from service.adapters.leader import Leadership
from service.adapters.webhook_store import EndpointRecord, OutboxTotals, open_webhook_store
from service.application import delivery_lanes, webhook_dispatcher
from service.application.projector import open_balance_view
from service.application.webhook_dispatcher import WebhookDispatcher
from service.config import Settings
from service.domain.account import Account
from service.domain.events import LedgerEntry
from tests.helpers.receiver import webhook_receiver

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_backlog_bigger_than_memory_arrives_once_and_in_order_per_account(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery_lanes, "LANE_MESSAGES", 3)
    monkeypatch.setattr(delivery_lanes, "ENDPOINT_MESSAGES", 5)
    monkeypatch.setattr(webhook_dispatcher, "ENDPOINT_MESSAGES", 5)
    monkeypatch.setattr(webhook_dispatcher, "PAGE", 4)
    store = open_webhook_store(settings)
    view = open_balance_view(settings)
    assert isinstance(view, BalanceTable)
    view.outbox = Outbox(view.dialect)
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
        entries = [e for a in accounts for e in a.collect_events() if isinstance(e, LedgerEntry)]
        batch = [(e, p) for p, e in enumerate(entries, start=1)]
        assert view.apply_batch(plan_batch(batch), tracking_at(len(batch)), 0) is not None
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
