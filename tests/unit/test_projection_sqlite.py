"""The balance projection on SQLite: the view, its tracking, the expiry schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import InfrastructureFactory, IntegrityError, Tracking
from eventsourcing.utils import Environment

from projections.balances import BalanceProjection, expiry_schedule
from projections.batch import plan_batch
from projections.views import SQLiteBalanceView
from service.adapters.migrate import migrate
from service.application import commands
from service.application.ledger import Ledger
from service.config import APPLICATION_NAME, Settings
from service.domain.account import Account
from service.domain.events import LedgerEntry
from tests.helpers.balances import FIELDS as COUNTERS

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/l.db")
    migrate(settings)
    return settings


@pytest.fixture
def view(settings: Settings) -> SQLiteBalanceView:
    factory: InfrastructureFactory[Any] = InfrastructureFactory.construct(
        env=Environment("balances", settings.eventsourcing_env())
    )
    view = factory.tracking_recorder(SQLiteBalanceView)
    assert isinstance(view, SQLiteBalanceView)
    return view


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    app = Ledger(env=settings.eventsourcing_env(), clock=lambda: NOW)
    yield app
    app.close()


def entries_of(account: Account) -> list[LedgerEntry]:
    return [e for e in account.collect_events() if isinstance(e, LedgerEntry)]


def as_counters(balance: object) -> dict[str, int]:
    if isinstance(balance, dict):
        return {c: balance[c] for c in COUNTERS}
    return {c: getattr(balance, c) for c in COUNTERS}


def test_applying_entries_builds_the_aggregates_balance(view: SQLiteBalanceView) -> None:
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    account.set_credit_limit(20, now=NOW)
    account.consume(110, now=NOW)
    hold_id = account.place_hold(5, ttl_seconds=60, now=NOW).entry.hold_id
    assert hold_id is not None
    account.capture_hold(hold_id, 3, now=NOW)
    for position, entry in enumerate(entries_of(account), start=10):
        row = view.apply_entry(entry, Tracking(APPLICATION_NAME, position), expiry_schedule(entry))
        assert row is not None and row["position"] == position
    projected = view.get_balance("user-1")
    assert projected is not None
    assert as_counters(projected) == as_counters(account.balance())
    assert projected["updated_at"] == "2026-03-01T12:00:00.000000Z"
    assert view.position() == 14
    assert view.get_balance("nobody") is None


def test_an_entry_applied_twice_changes_nothing(view: SQLiteBalanceView) -> None:
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    (entry,) = entries_of(account)
    assert view.apply_entry(entry, Tracking(APPLICATION_NAME, 1), []) is not None
    with pytest.raises(IntegrityError):
        view.apply_entry(entry, Tracking(APPLICATION_NAME, 1), [])
    assert view.apply_entry(entry, Tracking(APPLICATION_NAME, 2), []) is None
    projected = view.get_balance("user-1")
    assert projected is not None and projected["available"] == 100
    assert projected["position"] == 1


def test_holds_and_expiring_credit_are_scheduled_until_they_close(view: SQLiteBalanceView) -> None:
    account = Account(account_id="user-1")
    account.grant(50, expires_at=NOW + timedelta(hours=1), now=NOW)
    hold_id = account.place_hold(10, ttl_seconds=60, now=NOW).entry.hold_id
    assert hold_id is not None
    positions = iter(range(1, 100))
    for entry in entries_of(account):
        view.apply_entry(entry, Tracking(APPLICATION_NAME, next(positions)), expiry_schedule(entry))
    assert view.due_accounts("2026-03-01T12:00:59.000000Z", 10) == []
    assert view.due_accounts("2026-03-01T12:01:00.000000Z", 10) == ["user-1"]
    account.release_hold(hold_id, now=NOW)
    for entry in entries_of(account):
        view.apply_entry(entry, Tracking(APPLICATION_NAME, next(positions)), expiry_schedule(entry))
    assert view.due_accounts("2026-03-01T12:30:00.000000Z", 10) == []
    assert view.due_accounts("2026-03-01T13:00:00.000000Z", 10) == ["user-1"]
    account.settle(NOW + timedelta(hours=2))
    for entry in entries_of(account):
        view.apply_entry(entry, Tracking(APPLICATION_NAME, next(positions)), expiry_schedule(entry))
    assert view.due_accounts("2026-03-02T00:00:00.000000Z", 10) == []
    projected = view.get_balance("user-1")
    assert projected is not None
    assert (projected["available"], projected["expired"]) == (0, 50)


def test_the_projection_follows_the_ledgers_notification_log(
    ledger: Ledger, view: SQLiteBalanceView
) -> None:
    ledger.execute_write(commands.purchase("user-1", 500, actor="t", idem=None))
    ledger.execute_write(commands.purchase("user-2", 70, actor="t", idem=None))
    spent = ledger.execute_write(commands.consume("user-1", 120, actor="t", idem=None))
    projection = BalanceProjection(view=view)

    def catch_up() -> None:
        for notification in ledger.recorder.select_notifications(
            start=view.position(), limit=1000, inclusive_of_start=False
        ):
            projection.process_event(
                ledger.mapper.to_domain_event(notification),
                Tracking(APPLICATION_NAME, notification.id),
            )

    catch_up()
    assert view.position() == spent.position
    catch_up()  # nothing new: nothing applied twice
    for account_id in ("user-1", "user-2"):
        projected = view.get_balance(account_id)
        assert projected is not None
        assert as_counters(projected) == as_counters(ledger.get_account(account_id).balance())
    assert view.get_balance("user-1")["available"] == 380  # type: ignore[index]


def test_one_batch_gives_each_entry_its_own_balance_and_one_row_per_account(
    view: SQLiteBalanceView,
) -> None:
    first, second = Account(account_id="user-1"), Account(account_id="user-2")
    first.purchase(100, expires_at=None, now=NOW)
    first.consume(30, now=NOW)
    outcomes = [
        first.set_credit_limit(50, now=NOW),
        first.consume(110, now=NOW),
        first.set_credit_limit(40, now=NOW),
    ]
    second.grant(7, expires_at=NOW + timedelta(days=1), now=NOW, reason="promo")
    entries = entries_of(first)
    prior = view.apply_batch(
        plan_batch([(e, i) for i, e in enumerate(entries[:2], start=1)]),
        Tracking(APPLICATION_NAME, 2),
        start=0,
    )
    assert prior is not None and [b["version"] for b in prior[0]] == [1, 2]
    batch = [(e, i) for i, e in enumerate(entries[2:] + entries_of(second), start=3)]
    states = view.apply_batch(plan_batch(batch), Tracking(APPLICATION_NAME, 6), start=2)
    assert states is not None
    by_account = {s[-1]["account_id"]: s for s in states}
    expected = [o.balance for o in outcomes]
    assert [as_counters(s) for s in by_account["user-1"]] == [as_counters(b) for b in expected]
    assert [s["credit_limit"] for s in by_account["user-1"]] == [50, 50, 40]
    assert [(s["version"], s["position"]) for s in by_account["user-1"]] == [(3, 3), (4, 4), (5, 5)]
    assert by_account["user-1"][-1] == view.get_balance("user-1")
    assert [s["granted"] for s in by_account["user-2"]] == [7]
    assert view.position() == 6


def test_a_batch_read_after_a_moved_position_writes_nothing(view: SQLiteBalanceView) -> None:
    account = Account(account_id="user-1")
    account.purchase(100, expires_at=None, now=NOW)
    (entry,) = entries_of(account)
    batch = plan_batch([(entry, 1)])
    assert view.apply_batch(batch, Tracking(APPLICATION_NAME, 1), start=0) is not None
    assert view.apply_batch(batch, Tracking(APPLICATION_NAME, 1), start=0) is None
    projected = view.get_balance("user-1")
    assert projected is not None and projected["available"] == 100
