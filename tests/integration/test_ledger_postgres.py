"""The Ledger application and the balance projection on a real PostgreSQL.

A database of this module's own is created at 127.0.0.1:5432 and dropped
afterwards. Nothing is mocked; the projection is waited on by position.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.projection import ProjectionRunner

from projections.balances import BalanceProjection
from projections.views import PostgresBalanceView
from service.adapters.migrate import migrate
from service.application import commands
from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Ledger, WriteResult
from service.config import Settings
from service.domain.errors import IdempotencyKeyInFlight, InsufficientBalance
from service.domain.values import account_uuid
from tests.helpers.balances import FIELDS as COUNTERS
from tests.helpers.servers import fresh_postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    with fresh_postgres_database("ledger_it") as url:
        # small pools: the suite shares the server (max_connections) with other tests
        settings = Settings(database_url=url, database_pool_size=4)
        migrate(settings)
        yield settings


@pytest.fixture(scope="module")
def ledgers(settings: Settings) -> Iterator[list[Ledger]]:
    """Two application instances on one database, as two processes would be."""
    apps = [Ledger(env=settings.eventsourcing_env()) for _ in range(2)]
    yield apps
    for app in apps:
        app.close()


def new_account() -> str:
    return f"it-{uuid.uuid4().hex[:12]}"


def entry_count(ledger: Ledger, account_id: str) -> int:
    return len(ledger.ledger_recorder.select_entries(account_uuid(account_id), 0, 10**6))


def aggregate_balance(ledger: Ledger, account_id: str) -> dict[str, Any]:
    balance = ledger.get_account(account_id).balance()
    return {c: getattr(balance, c) for c in COUNTERS}


def projected_balance(view: PostgresBalanceView, account_id: str) -> dict[str, Any] | None:
    row = view.get_balance(account_id)
    return None if row is None else {c: row[c] for c in COUNTERS}


def test_fifty_threads_of_consumptions_never_overdraw_one_account(ledgers: list[Ledger]) -> None:
    account = new_account()
    ledgers[0].execute_write(commands.purchase(account, 1000, actor="it", idem=None))
    start = threading.Barrier(50)

    def worker(i: int) -> int:
        start.wait()
        accepted = 0
        for _ in range(4):
            try:
                ledgers[i % 2].execute_write(commands.consume(account, 7, actor="it", idem=None))
                accepted += 1
            except InsufficientBalance:
                pass
        return accepted

    with ThreadPoolExecutor(50) as pool:
        accepted = sum(pool.map(worker, range(50)))
    assert accepted == 1000 // 7
    balance = aggregate_balance(ledgers[1], account)
    assert balance["available"] == 1000 - 7 * accepted >= 0
    assert balance["consumed"] == 7 * accepted
    assert entry_count(ledgers[0], account) == 1 + accepted


def test_parallel_identical_idempotent_requests_store_one_entry(ledgers: list[Ledger]) -> None:
    account = new_account()
    ledgers[0].execute_write(commands.purchase(account, 100, actor="it", idem=None))
    key = IdempotencyRequest.of("same-key", "consume", account, {"amount": 9})
    start = threading.Barrier(20)

    def attempt(i: int) -> WriteResult | IdempotencyKeyInFlight:
        start.wait()
        try:
            return ledgers[i % 2].execute_write(commands.consume(account, 9, actor="it", idem=key))
        except IdempotencyKeyInFlight as error:
            return error

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    results = [o for o in outcomes if isinstance(o, WriteResult)]
    assert len([r for r in results if not r.replayed]) == 1
    assert len({str(r.body) for r in results}) == 1
    assert entry_count(ledgers[0], account) == 2
    assert aggregate_balance(ledgers[0], account)["available"] == 91
    again = ledgers[1].execute_write(commands.consume(account, 9, actor="it", idem=key))
    assert again.replayed and again.body == results[0].body


def write_mixed_history(ledger: Ledger, account: str, rounds: int) -> int:
    """Every kind of entry (nothing due to expire during the test); returns the
    last position written."""
    later = datetime.now(UTC) + timedelta(days=30)
    last = ledger.execute_write(commands.purchase(account, 1000, actor="it", idem=None)).position
    last = ledger.execute_write(
        commands.grant(account, 300, actor="it", idem=None, reason="promo", expires_at=later)
    ).position
    last = ledger.execute_write(
        commands.set_credit_limit(account, 50, actor="it", idem=None)
    ).position
    for i in range(rounds):
        spent = ledger.execute_write(commands.consume(account, 40 + i, actor="it", idem=None))
        hold = ledger.execute_write(commands.place_hold(account, 30, actor="it", idem=None))
        hold_id = uuid.UUID(hold.body["entry"]["hold_id"])
        if i % 2:
            last = ledger.execute_write(
                commands.capture_hold(ledger, account, hold_id, 10, actor="it", idem=None)
            ).position
        else:
            last = ledger.execute_write(
                commands.release_hold(ledger, account, hold_id, actor="it", idem=None)
            ).position
        last = ledger.execute_write(
            commands.refund(
                ledger, account, uuid.UUID(spent.body["entry"]["id"]), 5, actor="it", idem=None
            )
        ).position
        last = ledger.execute_write(
            commands.deduct(account, 1, actor="it", idem=None, reason="fee")
        ).position
    return last


def test_the_projection_yields_the_aggregates_balances_and_survives_a_restart(
    settings: Settings, ledgers: list[Ledger]
) -> None:
    env = settings.eventsourcing_env()
    accounts = [new_account() for _ in range(3)]
    ledger = ledgers[0]

    def runner() -> Any:
        return ProjectionRunner(
            application_class=Ledger,
            projection_class=BalanceProjection,
            view_class=PostgresBalanceView,
            env=env,
        )

    with runner() as first:
        last = max(write_mixed_history(ledger, a, 3) for a in accounts)
        first.wait(last, timeout=10)
        for account in accounts:
            assert projected_balance(first.view, account) == aggregate_balance(ledger, account)

    # written while no projection runs
    last = max(write_mixed_history(ledger, a, 2) for a in accounts)
    fresh = new_account()
    last = max(last, write_mixed_history(ledgers[1], fresh, 1))

    with runner() as second:
        second.wait(last, timeout=10)
        view: PostgresBalanceView = second.view
        for account in [*accounts, fresh]:
            # neither lost nor applied twice: every counter and the version agree
            assert projected_balance(view, account) == aggregate_balance(ledger, account)
        assert view.position() >= last
        row = view.get_balance(fresh)
        assert row is not None and row["position"] <= last


def test_a_restarted_projection_catches_up_with_writes_made_while_it_was_stopped(
    settings: Settings, ledgers: list[Ledger]
) -> None:
    env = settings.eventsourcing_env()
    account = new_account()
    kwargs: dict[str, Any] = {
        "application_class": Ledger,
        "projection_class": BalanceProjection,
        "view_class": PostgresBalanceView,
        "env": env,
    }
    with ProjectionRunner(**kwargs) as runner:
        last = (
            ledgers[0]
            .execute_write(commands.purchase(account, 500, actor="it", idem=None))
            .position
        )
        runner.wait(last, timeout=10)
        assert projected_balance(runner.view, account) == aggregate_balance(ledgers[0], account)
    for _ in range(25):
        last = (
            ledgers[1].execute_write(commands.consume(account, 3, actor="it", idem=None)).position
        )
    with ProjectionRunner(**kwargs) as runner:
        runner.wait(last, timeout=10)
        projected = projected_balance(runner.view, account)
        assert projected == aggregate_balance(ledgers[0], account)
        assert projected is not None and projected["available"] == 425
        assert projected["version"] == 26
