"""One leader per deployment (PostgreSQL advisory lock), and a quick takeover."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.adapters.leader import Leadership
from tests.helpers.processes import serving_ledgers
from tests.helpers.servers import fresh_postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture
def conninfo() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def test_of_two_processes_exactly_one_leads_and_the_other_takes_over_within_5_s(
    conninfo: str,
) -> None:
    first = Leadership(conninfo, interval=0.2)
    second = Leadership(conninfo, interval=0.2)
    first.start()
    assert first.is_leader.wait(5)
    second.start()
    try:
        assert not second.is_leader.wait(1.0)  # several tries, all refused
        started = time.monotonic()
        first.stop()  # the leader dies: its session ends, the lock is released
        assert second.is_leader.wait(5)
        assert time.monotonic() - started < 5
        assert not first.is_leader.is_set()
    finally:
        first.stop()
        second.stop()


def test_a_standby_process_waits_before_it_competes(conninfo: str) -> None:
    standby = Leadership(conninfo, interval=0.1, standby=1.0)
    standby.start()
    try:
        assert not standby.is_leader.wait(0.5)
        assert standby.is_leader.wait(5)
    finally:
        standby.stop()


def test_the_projection_process_of_ledger_serve_ends_with_it(tmp_path: Path) -> None:
    with fresh_postgres_database() as db_url:
        settings = {
            "LEDGER_DATABASE_URL": db_url,
            "LEDGER_ADMIN_API_KEY": "leader-test-admin-key-0123456789",
            "LEDGER_SECRET_KEY": "leader-test-secret-0123456789abcdef",
            "LEDGER_LOG_LEVEL": "warning",
        }
        with serving_ledgers(settings, tmp_path) as (serve,):
            pid = serve.process.pid
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            assert len(children) == 1, children
            projector = int(children[0])
            assert "project" in Path(f"/proc/{projector}/cmdline").read_text()
        deadline = time.monotonic() + 5
        while Path(f"/proc/{projector}").exists() and not _zombie(projector):
            assert time.monotonic() < deadline, "the projection process outlived its server"
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True
