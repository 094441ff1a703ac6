"""How fast the webhook dispatcher drains a backlog, alone on the machine.

A fresh PostgreSQL database gets ``--messages`` pending ``entry.created``
messages over ``--accounts`` accounts for one endpoint (the local sink,
``benchmarks._sink``, answering 204), written by the projection's own outbox
code. The dispatcher then runs in this process until the outbox is empty;
the report gives messages per second and the CPU seconds per 1,000 messages
of this process (the dispatcher), of the sink and of the PostgreSQL backends.

    PYTHONPATH=. .venv/bin/python -m benchmarks.webhook_drain --messages 20000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._pg import fresh_database
from projections.outbox import INSERT_MESSAGES_POSTGRES, OUTBOX
from projections.webhook_messages import encode_body, webhook_id
from service.adapters.leader import Leadership
from service.adapters.migrate import migrate
from service.adapters.webhook_records import EndpointRecord
from service.adapters.webhook_store import open_webhook_store
from service.application.webhook_dispatcher import WebhookDispatcher
from service.config import Settings

SINK_PORT = 8198
RESULTS = Path(__file__).parent / "results" / "webhook_drain.json"


def fill(settings: Settings, messages: int, accounts: int) -> None:
    """Writes the backlog with the projection's PostgreSQL insert."""
    import psycopg

    from service.adapters.dialect import PostgresDialect

    insert = PostgresDialect(settings.database_schema).statement(
        INSERT_MESSAGES_POSTGRES, outbox=OUTBOX
    )
    body = {  # about the size of a real entry.created message
        "entry": {
            "id": "00000000-0000-4000-8000-000000000000",
            "account_id": "user-0000",
            "type": "consumption",
            "amount": 1234,
            "idempotency_key": "req-" + "0" * 32,
            "metadata": {"model": "gpt-4o-mini", "request_id": "0" * 32},
            "created_at": "2026-11-22T00:00:00.000000Z",
            "position": 1,
            "hash": "0" * 64,
        },
        "balance": {"account_id": "user-0000", "available": 1, "held": 0, "position": 1},
    }
    with psycopg.connect(settings.postgres_conninfo()) as conn:
        for start in range(0, messages, 1000):
            positions = list(range(start + 1, min(messages, start + 1000) + 1))
            conn.execute(
                insert,
                {
                    "position": positions,
                    "endpoint_id": ["ep"] * len(positions),
                    "ordinal": [0] * len(positions),
                    "webhook_id": [webhook_id("ep", p, "entry.created") for p in positions],
                    "account_id": [f"user-{p % accounts}" for p in positions],
                    "type": ["entry.created"] * len(positions),
                    "body": [encode_body("entry.created", "t", body) for _ in positions],
                    "now": time.time(),
                },
            )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds(url: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to ``url``'s
    database (read from ``/proc``: the benchmark runs beside the server)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    total = 0.0
    for (pid,) in rows:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._sink", str(SINK_PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    try:
        with fresh_database("ledger_bench_drain") as url:
            settings = Settings(database_url=url, webhook_allow_insecure=True)
            migrate(settings)
            store = open_webhook_store(settings)
            hook = f"http://127.0.0.1:{SINK_PORT}/hook"
            store.add(
                EndpointRecord("ep", hook, ("entry.created",), None, None, "whsec_" + "A" * 32, "t")
            )
            fill(settings, args.messages, args.accounts)
            leadership = Leadership(None)
            leadership.start()
            dispatcher = WebhookDispatcher(store, [1.0], True, leadership)
            started, cpu, sink_cpu = time.monotonic(), time.process_time(), cpu_seconds(sink.pid)
            database_cpu = database_cpu_seconds(url)
            dispatcher.start()
            while not leadership.is_leader.is_set() or store.totals().pending:
                time.sleep(0.25)
            seconds = time.monotonic() - started
            cpu, sink_cpu = time.process_time() - cpu, cpu_seconds(sink.pid) - sink_cpu
            database_cpu = database_cpu_seconds(url) - database_cpu
            dispatcher.stop()
            store.close()
    finally:
        sink.kill()
    report = {
        "benchmark": "webhook_drain",
        "command": " ".join(["python -m benchmarks.webhook_drain", *sys.argv[1:]]),
        "messages": args.messages,
        "accounts": args.accounts,
        "seconds": round(seconds, 2),
        "messages_per_s": round(args.messages / seconds, 1),
        "dispatcher_cpu_s_per_1000": round(1000 * cpu / args.messages, 3),
        "sink_cpu_s_per_1000": round(1000 * sink_cpu / args.messages, 3),
        "postgres_cpu_s_per_1000": round(1000 * database_cpu / args.messages, 3),
    }
    print(json.dumps(report, indent=2))
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
