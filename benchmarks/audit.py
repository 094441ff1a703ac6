"""Audit speed and memory (issue 8): ``ledger export``, ``ledger audit
verify`` and ``ledger audit rebuild`` on PostgreSQL, at two log sizes.

For each size a fresh database gets that many entries (consumptions and
purchases over 1,000 accounts, through the ledger's own group commit, so the
hash chain is real), the projection catches up, then each command runs as a
child process: wall time, entries per second and peak RSS (``wait4``).

    PYTHONPATH=. .venv/bin/python -m benchmarks.audit --sizes 100000 1000000

Targets: verify >= 50,000 entries/s, export >= 100,000 entries/s, rebuild
>= 50,000 entries/s; peak RSS flat between the sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service.adapters.migrate import migrate
from service.application import commands
from service.application.ledger import Ledger
from service.application.projector import ProjectionService, open_balance_view
from service.config import Settings
from tests.helpers.processes import ledger_command, serve_environment
from tests.helpers.servers import fresh_postgres_database

ACCOUNTS = 1000
CHUNK = 2000


async def fill(ledger: Ledger, entries: int) -> None:
    """``entries`` writes: a purchase per account, then consumptions."""
    written = 0
    while written < entries:
        writes = []
        for i in range(min(CHUNK, entries - written)):
            account = f"acct-{(written + i) % ACCOUNTS}"
            if written + i < ACCOUNTS:
                writes.append(commands.purchase(account, 10**12, actor="bench", idem=None))
            else:
                write = commands.consume(
                    account, 1 + i % 97, actor="bench", idem=None, model="gpt-4o",
                    metadata={"req": str(i)},
                )  # fmt: skip
                writes.append(write)
        await ledger.submit_many(writes)
        written += len(writes)


def timed(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Runs ``command``; its wall seconds, peak RSS (MiB) and exit code."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return {
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit": os.waitstatus_to_exitcode(status),
    }


def measure(size: int) -> dict[str, Any]:
    with fresh_postgres_database("ledger_audit_bench") as url:
        settings = Settings(database_url=url)
        migrate(settings)
        ledger = Ledger(env=settings.eventsourcing_env())
        started = time.monotonic()
        asyncio.run(fill(ledger, size))
        fill_seconds = time.monotonic() - started
        view = open_balance_view(settings)  # before the projection's thread opens it too
        projection = ProjectionService(settings, None, ledger)
        projection.start()
        head = ledger.recorder.max_notification_id() or 0
        while view.position() < head:  # waits on the projection's position
            time.sleep(0.1)
        projection.stop()
        ledger.close()
        env = serve_environment({"LEDGER_DATABASE_URL": url})
        cli = ledger_command()
        result: dict[str, Any] = {"entries": size, "fill_seconds": round(fill_seconds, 1)}
        for name, args in (
            ("export", ["export", "--output", "/dev/null"]),
            ("verify", ["audit", "verify"]),
            ("rebuild", ["audit", "rebuild"]),
            ("verify_after_rebuild", ["audit", "verify"]),
        ):
            run = timed([*cli, *args], env)
            run["entries_per_second"] = round(size / run["seconds"])
            result[name] = run
            print(f"{size:>9} {name:<22} {run}", file=sys.stderr, flush=True)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/audit.json"))
    args = parser.parse_args()
    results = [measure(size) for size in args.sizes]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
