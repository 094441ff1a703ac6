"""The expiry sweeper on real PostgreSQL, as several processes would run it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from service.adapters.migrate import migrate
from service.application import commands, reads
from service.application.ledger import Ledger
from service.application.projector import ProjectionService, open_balance_view
from service.application.sweeper import Sweeper
from service.config import Settings
from service.domain.hashing import rfc3339
from tests.helpers.servers import fresh_postgres_database

pytestmark = pytest.mark.integration


class Clock:
    """A shared fake clock: every Ledger (process) sees the same time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings() -> Iterator[Settings]:
    with fresh_postgres_database() as db_url:
        settings = Settings(database_url=db_url)
        migrate(settings)
        yield settings


def test_two_sweepers_racing_record_each_expiry_once(settings: Settings) -> None:
    clock = Clock()
    ledgers = [Ledger(env=settings.eventsourcing_env(), clock=clock) for _ in range(2)]
    view = open_balance_view(settings)
    projection = ProjectionService(settings, None, ledgers[0])
    projection.start()
    accounts = [f"sweep-{uuid.uuid4().hex[:8]}-{n}" for n in range(20)]
    try:
        last = 0
        for account in accounts:
            ledgers[0].execute_write(commands.purchase(account, 1000, actor="it", idem=None))
            ledgers[0].execute_write(
                commands.grant(
                    account,
                    50,
                    actor="it",
                    idem=None,
                    reason="promo",
                    expires_at=clock.now + timedelta(seconds=30),
                )
            )
            last = (
                ledgers[0]
                .execute_write(
                    commands.place_hold(account, 300, actor="it", idem=None, ttl_seconds=10)
                )
                .position
            )
        view.wait("Ledger", last, timeout=15)
        clock.now += timedelta(seconds=31)

        sweepers = [Sweeper(ledger, open_balance_view(settings), 1.0) for ledger in ledgers]
        recorded = [0, 0]
        barrier = threading.Barrier(2)

        def sweep(n: int) -> None:
            barrier.wait()
            recorded[n] = sweepers[n].sweep_once()

        threads = [threading.Thread(target=sweep, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        assert sum(recorded) == 2 * len(accounts)
        for account in accounts:
            entries = reads.account_entries(ledgers[1], account, 0, 100)["entries"]
            types = [e["type"] for e in entries]
            assert types.count("hold_expiry") == 1
            assert types.count("credit_expiry") == 1
            balance = reads.current_balance(ledgers[1], account)
            assert (balance.available, balance.held, balance.expired) == (1000, 0, 50)
        assert view.due_accounts(rfc3339(clock.now) or "", 100) == []
    finally:
        projection.stop()
        for ledger in ledgers:
            ledger.close()
