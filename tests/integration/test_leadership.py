"""One leader per deployment (PostgreSQL advisory lock), and a quick takeover."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from service.adapters.leader import Leadership
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
