"""One leader per deployment (PostgreSQL advisory lock), and a quick takeover."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from standardwebhooks import Webhook

from service.adapters.leader import DELIVERY_LOCK_KEY, Leadership
from tests.helpers.processes import serving_ledgers
from tests.helpers.receiver import webhook_receiver
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


def test_ledger_serve_delivers_webhooks_from_a_nicer_process_beside_its_projection(
    tmp_path: Path,
) -> None:
    admin = "leader-test-admin-key-0123456789"
    with fresh_postgres_database() as db_url, webhook_receiver() as receiver:
        settings = {
            "LEDGER_DATABASE_URL": db_url,
            "LEDGER_ADMIN_API_KEY": admin,
            "LEDGER_SECRET_KEY": "leader-test-secret-0123456789abcdef",
            "LEDGER_LOG_LEVEL": "warning",
            "LEDGER_WEBHOOK_ALLOW_INSECURE": "true",
        }
        with serving_ledgers(settings, tmp_path) as (serve,):
            (projector,) = _children(serve.process.pid)
            deliverer = _only_child_once_started(projector)
            assert "deliver" in Path(f"/proc/{deliverer}/cmdline").read_text()
            assert _delivery_leader(db_url) == deliverer  # it leads, so it has started
            assert _nice(deliverer) == _nice(projector) + 10  # LEDGER_WEBHOOK_NICENESS
            assert _policy(deliverer) == os.SCHED_IDLE != _policy(projector)
            autogroups = Path("/proc/sys/kernel/sched_autogroup_enabled")
            if autogroups.exists() and autogroups.read_text().strip() == "1":
                group = Path(f"/proc/{deliverer}/autogroup").read_text().split()
                assert group[-2:] == ["nice", "19"], group  # a weak group of its own
                assert group[0] != Path(f"/proc/{projector}/autogroup").read_text().split()[0]
            headers = {"Authorization": f"Bearer {admin}"}
            with httpx.Client(base_url=serve.url, headers=headers, timeout=10) as client:
                created = client.post(
                    "/v1/webhook-endpoints",
                    json={"url": receiver.url, "events": ["entry.created"]},
                )
                assert created.status_code == 201, created.text
                bought = client.post("/v1/accounts/acct-1/purchases", json={"amount": 7})
                assert bought.status_code == 201, bought.text
            (call,) = receiver.wait_for(1)
            payload = Webhook(created.json()["secret"]).verify(call.body, call.headers)
            assert payload["data"]["entry"]["id"] == bought.json()["entry"]["id"]
            metrics = _recorded_metrics(serve.url)  # the HTTP worker shows the deployment's
            assert 'ledger_webhook_attempts_recorded{result="success"} 1.0' in metrics
            assert "ledger_webhook_delivery_duration_seconds_count 1.0" in metrics
        _wait_gone(deliverer)


def _recorded_metrics(url: str) -> str:
    """The server's metrics once the deliverer's one attempt is recorded (it
    is, just after the receiver answered)."""
    deadline = time.monotonic() + 5
    recorded = 'ledger_webhook_messages{status="delivered"} 1.0'
    while recorded not in (text := httpx.get(f"{url}/metrics").text):
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    return text


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _only_child_once_started(pid: int) -> int:
    deadline = time.monotonic() + 15
    while not (children := _children(pid)):
        assert time.monotonic() < deadline, f"process {pid} started no child"
        time.sleep(0.05)
    (child,) = children
    return child


def _nice(pid: int) -> int:
    return _stat(pid, 19)


def _policy(pid: int) -> int:
    return _stat(pid, 41)


def _stat(pid: int, field: int) -> int:
    """Field ``field`` (1-based, proc(5)) of ``/proc/<pid>/stat``."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[field - 3])


def _delivery_leader(db_url: str) -> int:
    """The process id holding the delivery lock (its leader connection's
    ``application_name``), once one does."""
    query = """
        SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint) = %s"""
    deadline = time.monotonic() + 15
    with psycopg.connect(db_url, autocommit=True) as conn:
        while (row := conn.execute(query, (DELIVERY_LOCK_KEY,)).fetchone()) is None:
            assert time.monotonic() < deadline, "nobody leads webhook delivery"
            time.sleep(0.05)
    return int(row[0].rsplit(" ", 1)[1])


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and not _zombie(pid):
        assert time.monotonic() < deadline, f"process {pid} outlived its server"
        time.sleep(0.1)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True
