"""The same store code on both databases: the key store, the balance view and
the ledger recorder's reads, each run on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from projections.balances import BalanceProjection, BalanceView, tracking_at
from projections.batch import plan_batch
from projections.views import BALANCE_VIEWS
from service.adapters.keys import ApiKeyExists, open_key_store
from service.application import commands
from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Ledger
from service.config import Settings
from service.domain.account import Account
from service.domain.errors import NotFound
from service.domain.events import LedgerEntry
from service.domain.values import account_uuid

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def open_view(settings: Settings) -> BalanceView:
    """The balance view as the projector opens it."""
    env = Environment(BalanceProjection.name, settings.eventsourcing_env())
    factory: InfrastructureFactory[Any] = InfrastructureFactory.construct(env=env)
    view = factory.tracking_recorder(BALANCE_VIEWS[settings.backend])
    assert isinstance(view, BalanceView)
    return view


def entries_of(account: Account) -> list[LedgerEntry]:
    return [e for e in account.collect_events() if isinstance(e, LedgerEntry)]


def test_the_key_store(settings: Settings) -> None:
    store = open_key_store(settings)
    try:
        record, key = store.create("svc", ["read", "consume", "read"])
        assert record.scopes == ("read", "consume")
        assert store.authenticate(key) == record == store.get("svc")
        assert store.authenticate(key + "x") is None
        with pytest.raises(ApiKeyExists):
            store.create("svc", ["read"])
        store.create("another", ["admin"])
        assert [r.name for r in store.list()] == ["another", "svc"]
        assert store.count() == 2
        store.revoke("svc")
        assert store.authenticate(key) is None and store.get("svc") is None
        with pytest.raises(NotFound):
            store.revoke("svc")
    finally:
        store.close()


def test_the_balance_view(settings: Settings) -> None:
    view = open_view(settings)
    first, second = Account(account_id="user-1"), Account(account_id="user-2")
    first.purchase(100, expires_at=None, now=NOW)
    hold_id = first.place_hold(10, ttl_seconds=60, now=NOW).entry.hold_id
    first.set_credit_limit(50, now=NOW)
    second.grant(7, expires_at=NOW + timedelta(days=1), now=NOW, reason="promo")
    batch = [(e, p) for p, e in enumerate(entries_of(first) + entries_of(second), start=1)]
    states = view.apply_batch(plan_batch(batch), tracking_at(4), start=0)
    assert states is not None
    by_account = {s[-1]["account_id"]: s for s in states}
    assert [s["credit_limit"] for s in by_account["user-1"]] == [0, 0, 50]
    assert [s["held"] for s in by_account["user-1"]] == [0, 10, 10]
    assert by_account["user-2"][-1] == view.get_balance("user-2")
    assert view.apply_batch(plan_batch(batch), tracking_at(4), start=0) is None  # moved on
    assert view.position() == 4
    first.consume(5, now=NOW)
    first.set_credit_limit(20, now=NOW)
    batch = [(e, p) for p, e in enumerate(entries_of(first), start=5)]
    (changed,) = view.apply_batch(plan_batch(batch), tracking_at(6), start=4) or []
    assert [s["credit_limit"] for s in changed] == [50, 20]  # the limit stored before the batch
    assert [b["account_id"] for b in view.balances_after(0, 10)] == ["user-2", "user-1"]
    assert [b["position"] for b in view.balances_after(4, 10)] == [6]
    assert view.due_accounts("2026-03-01T12:01:00.000000Z", 10) == ["user-1"]
    view.clear_due("user-1", "2026-03-01T12:01:00.000000Z")
    assert view.due_accounts("2026-03-01T12:01:00.000000Z", 10) == []
    assert view.due_accounts("2026-03-03T00:00:00.000000Z", 10) == ["user-2"]
    assert hold_id is not None and view.get_balance("nobody") is None


def test_the_ledger_recorders_reads(settings: Settings) -> None:
    ledger = Ledger(env=settings.eventsourcing_env())
    try:
        recorder = ledger.ledger_recorder
        idem = IdempotencyRequest("k-1", "fingerprint")
        bought = ledger.execute_write(commands.purchase("user-1", 100, actor="t", idem=idem))
        ledger.execute_write(commands.purchase("user-2", 5, actor="t", idem=None))
        spent = ledger.execute_write(commands.consume("user-1", 30, actor="t", idem=None))
        record = recorder.idempotency_record("user-1", "k-1")
        assert record is not None
        assert (record.fingerprint, record.version) == ("fingerprint", 1)
        assert recorder.idempotency_record("user-1", "k-2") is None
        uuid = account_uuid("user-1")
        entries = recorder.select_entries(uuid, 0, 10)
        assert [(e.originator_version, e.id) for e in entries] == [
            (1, bought.position),
            (2, spent.position),
        ]
        assert all(e.originator_id == uuid and isinstance(e.state, bytes) for e in entries)
        assert [e.originator_version for e in recorder.select_entries(uuid, 1, 10)] == [2]
        assert recorder.version_at_position(uuid, spent.position - 1) == 1
        assert recorder.version_at_position(uuid, spent.position) == 2
        assert recorder.version_at_position(uuid, 0) == 0
        assert recorder.last_position(uuid) == spent.position
        assert recorder.last_position(account_uuid("nobody")) == 0
    finally:
        ledger.close()
