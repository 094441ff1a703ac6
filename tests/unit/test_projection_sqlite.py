"""The balance projection on SQLite: the view, its tracking, the expiry schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import InfrastructureFactory, IntegrityError, Tracking
from eventsourcing.utils import Environment

from projections.balances import BalanceProjection, expiry_schedule
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
    factory = InfrastructureFactory.construct(
        env=Environment("balances", settings.eventsourcing_env())
    )
    return factory.tracking_recorder(SQLiteBalanceView)


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
