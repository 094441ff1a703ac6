"""Issue 7, fault injection: a bounded load of writes (half with an
Idempotency-Key) and open entries streams, while the projection process is
killed with SIGKILL and started again, or Redis or PostgreSQL is cut and
restored through a TCP proxy the test owns (refuse and black-hole modes; the
machine's own servers are never stopped). Then ``check_ledger`` proves the log,
the balances and the streams right (see ``tests.faults.workload``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.workload import EntryFollower, Writers, check_ledger
from tests.helpers.processes import ledger_command, serve_environment, serving_ledgers
from tests.helpers.proxy import TcpProxy, tcp_proxy
from tests.helpers.servers import ADMIN_KEY, fresh_postgres_database, fresh_redis_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE, DURING, AFTER = 1.5, 2.0, 2.0
"""Seconds of load before the fault, during it, and after recovery."""
REPORT = Path(os.environ.get("FAULT_REPORT", "/tmp/tokenledger-faults.jsonl"))  # noqa: S108


class Projectors:
    """``ledger project`` processes run by the test (so it can kill them)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [*ledger_command(), "project"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process


@contextlib.contextmanager
def projectors(env: dict[str, str], log_path: Path) -> Iterator[Projectors]:
    running = Projectors(env, log_path)
    running.start()
    try:
        yield running
    finally:
        for process in running.processes:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize(
    "fault",
    [
        "projection-sigkill",
        "redis-refuse",
        "redis-blackhole",
        "postgres-refuse",
        "postgres-blackhole",
    ],
)
def test_writes_balances_and_streams_stay_exact_through_a_fault(fault: str, tmp_path: Path) -> None:
    with (
        fresh_postgres_database() as db_url,
        fresh_redis_database() as redis_url,
        tcp_proxy("127.0.0.1", 5432) as pg,
        tcp_proxy("127.0.0.1", 6379) as rd,
    ):
        database = db_url.rsplit("/", 1)[1]
        settings = {
            "LEDGER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg.port}/{database}",
            "LEDGER_REDIS_URL": f"redis://127.0.0.1:{rd.port}/{redis_url.rsplit('/', 1)[1]}",
            "LEDGER_ADMIN_API_KEY": ADMIN_KEY,
            "LEDGER_RUN_PROJECTION": "false",
            "LEDGER_SSE_PING_SECONDS": "1",
        }
        env = serve_environment(settings)
        with (
            serving_ledgers(settings, tmp_path) as (ledger,),
            projectors(env, tmp_path / "project.log") as projection,
        ):
            accounts = [f"fault-{uuid.uuid4().hex[:6]}-{i}" for i in range(4)]
            followers = [EntryFollower(ledger.url, ADMIN_KEY, a) for a in accounts]
            writers = Writers(ledger.url, ADMIN_KEY, accounts)
            try:
                wait_for_projection(ledger.url)
                time.sleep(BEFORE)  # load, not a wait for a result
                inject(fault, pg, rd, projection)
                time.sleep(AFTER)
            finally:
                writers.stop()
            writers.settle_keyed()
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            with httpx.Client(base_url=ledger.url, headers=headers, timeout=30) as client:
                counts = check_ledger(client, writers.writes, followers)
            for follower in followers:
                follower.stop()
            counts["stream_reconnects"] = sum(f.reconnects for f in followers)
            with REPORT.open("a") as report:
                report.write(json.dumps({"fault": fault, **counts}) + "\n")
            sys.stderr.write(f"{fault}: {counts}\n")
            assert counts["answered_201"] > 0


def wait_for_projection(url: str, timeout: float = 60.0) -> None:
    """Waits until the projector has applied a position (it started, migrated
    and leads), so the fault hits a running projection, not its start."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            checks = client.get("/readyz").json().get("checks", {})
            projection = checks.get("projection") or {}
            if projection.get("position", 0) > 0:
                return
            time.sleep(0.1)  # polls the position itself
    raise AssertionError(f"the projection applied nothing within {timeout} s")


def inject(fault: str, pg: TcpProxy, rd: TcpProxy, projection: Projectors) -> None:
    """Applies ``fault`` for ``DURING`` seconds under load, then ends it."""
    if fault == "projection-sigkill":
        killed = projection.processes[-1]
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        time.sleep(DURING)
        projection.start()
        return
    target, mode = fault.split("-")
    proxy = pg if target == "postgres" else rd
    proxy.set_mode("refuse" if mode == "refuse" else "blackhole")
    time.sleep(DURING)
    proxy.set_mode("pass")
