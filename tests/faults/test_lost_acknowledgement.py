"""Issue 7, item 7: a write whose commit succeeded but whose acknowledgement
was lost is answered as committed, and recorded once — even without an
Idempotency-Key. The committer ends the server session that received the
group, then finds its entries by their command ids (in the stored state)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from service.adapters.migrate import migrate
from service.application import commands
from service.application.ledger import Ledger
from service.config import Settings
from service.domain.errors import LedgerError
from tests.helpers.proxy import TcpProxy, tcp_proxy
from tests.helpers.servers import fresh_postgres_database

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def funded_ledger_behind_a_proxy() -> Iterator[tuple[Ledger, TcpProxy, str]]:
    """A PostgreSQL ledger reached through a proxy, with one funded account."""
    with fresh_postgres_database() as db_url, tcp_proxy("127.0.0.1", 5432) as proxy:
        database = db_url.rsplit("/", 1)[1]
        settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}")
        migrate(settings)
        ledger = Ledger(env=settings.eventsourcing_env())
        account = f"ack-{uuid.uuid4().hex[:8]}"
        try:
            ledger.execute_write(commands.purchase(account, 100, actor="t", idem=None))
            yield ledger, proxy, account
        finally:
            ledger.close()


def test_a_commit_whose_answer_was_lost_is_answered_201_and_recorded_once() -> None:
    with funded_ledger_behind_a_proxy() as (ledger, proxy, account):
        proxy.set_mode("lose-answers")  # the next group commits; its answer is lost
        restore = threading.Timer(0.5, proxy.set_mode, args=("pass",))
        restore.start()
        started = time.monotonic()
        result = ledger.execute_write(commands.consume(account, 30, actor="t", idem=None))
        restore.join()
        assert not result.replayed, result.body
        assert time.monotonic() - started < 5
        entries = ledger.ledger_recorder.select_entries(ledger.get_account(account).id, 0, 10)
        assert [e.originator_version for e in entries] == [1, 2]
        assert ledger.get_account(account).available == 70
        assert result.body["entry"]["version"] == 2


def test_a_group_that_never_reached_the_database_is_answered_503_and_left_nothing() -> None:
    with funded_ledger_behind_a_proxy() as (ledger, proxy, account):
        proxy.set_mode("blackhole")  # nothing reaches the server
        restore = threading.Timer(0.5, proxy.set_mode, args=("pass",))
        restore.start()
        result = asyncio.run(_consume(ledger, account))
        restore.join()
        assert result == "unavailable"
        assert ledger.get_account(account).version == 1


async def _consume(ledger: Ledger, account: str) -> str:
    """``"written"``, or the code of the ledger error the write was refused with."""
    try:
        await ledger.submit_write(commands.consume(account, 30, actor="t", idem=None))
    except LedgerError as error:
        return error.code
    return "written"
