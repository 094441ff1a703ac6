"""Latency of one consumption against the length of the account's history (issue 3).

Builds accounts with 10, 10,000 and 100,000 prior entries in a fresh PostgreSQL
database (many entries per ``save()``), then times single consumptions through
the :class:`~service.application.ledger.Ledger` application, the accounts
interleaved round-robin so drift in the machine's load hits every case alike:

- ``warm``: the aggregate cache on (the service's default), so a load is a cache
  hit plus a fast-forward query for newer entries;
- ``cold``: the aggregate cache off, so every load reads the latest snapshot and
  the entries after it: this shows that snapshots alone keep loading constant;
- ``no-snapshots`` (contrast, few samples): cache and snapshots off, every load
  replays the whole history.

Target: p50 and p99 of the 100,000 case within 1.2x of the 10 case.

    PYTHONPATH=. .venv/bin/python -m benchmarks.history_latency
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._pg import fresh_database, percentile
from service.adapters.migrate import migrate
from service.application import commands
from service.application.ledger import Ledger
from service.config import Settings

RESULTS = Path(__file__).parent / "results" / "history_latency.json"
TARGET_RATIO = 1.2
BATCH = 1000


def build_history(ledger: Ledger, account_id: str, entries: int) -> None:
    """Writes ``entries`` entries (one purchase, then consumptions of 1 token),
    ``BATCH`` per save; snapshots are taken as the service takes them."""
    account = ledger.load_or_open(account_id)
    account.purchase(10**15, expires_at=None, now=datetime.now(UTC), actor="bench")
    written = 1
    while written < entries:
        for _ in range(min(BATCH, entries - written)):
            account.consume(1, now=datetime.now(UTC), actor="bench")
            written += 1
        ledger.save(account)
    ledger.save(account)
    assert ledger.get_account(account_id).version == entries


def consume_once(ledger: Ledger, account_id: str) -> float:
    """Seconds taken by one consumption through the application."""
    started = time.perf_counter()
    ledger.execute_write(
        commands.consume(account_id, 1, actor="bench", idem=None, operation="bench")
    )
    return time.perf_counter() - started


def measure(
    ledger: Ledger, accounts: dict[int, str], warmup: int, samples: int
) -> dict[int, list[float]]:
    """``samples`` latencies per case after ``warmup`` calls, round-robin."""
    cases = list(accounts)
    for _ in range(warmup):
        for n in cases:
            consume_once(ledger, accounts[n])
    latencies: dict[int, list[float]] = {n: [] for n in cases}
    for i in range(samples):
        order = cases[i % len(cases) :] + cases[: i % len(cases)]
        for n in order:
            latencies[n].append(consume_once(ledger, accounts[n]))
    return latencies


def summarize(latencies: dict[int, list[float]]) -> dict[str, Any]:
    cases = {}
    for n, values in latencies.items():
        ms = [v * 1000 for v in values]
        cases[str(n)] = {
            "samples": len(ms),
            "p50_ms": round(percentile(ms, 0.50), 3),
            "p99_ms": round(percentile(ms, 0.99), 3),
            "mean_ms": round(statistics.fmean(ms), 3),
            "max_ms": round(max(ms), 3),
        }
    smallest, largest = str(min(latencies)), str(max(latencies))
    ratios = {
        q: round(cases[largest][f"{q}_ms"] / cases[smallest][f"{q}_ms"], 3) for q in ("p50", "p99")
    }
    return {"cases": cases, f"ratio_{largest}_over_{smallest}": ratios}


def print_table(title: str, summary: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(f"{'prior entries':>14} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'max ms':>9}")
    for n, row in summary["cases"].items():
        print(
            f"{int(n):>14,} {row['p50_ms']:>9.3f} {row['p99_ms']:>9.3f}"
            f" {row['mean_ms']:>9.3f} {row['max_ms']:>9.3f}"
        )
    for key, ratios in summary.items():
        if key.startswith("ratio_"):
            verdict = (
                "ok"
                if max(ratios.values()) <= TARGET_RATIO
                else f"above the {TARGET_RATIO}x target"
            )
            print(f"{key}: p50 {ratios['p50']:.3f}x, p99 {ratios['p99']:.3f}x ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 10_000, 100_000])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--contrast-samples",
        type=int,
        default=5,
        help="samples of the no-snapshots contrast (0 to skip)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    with fresh_database("ledger_bench") as url:
        settings = Settings(database_url=url)
        migrate(settings)
        warm = Ledger(env=settings.eventsourcing_env())
        cold = Ledger(env=Settings(database_url=url, aggregate_cache_size=0).eventsourcing_env())
        accounts = {n: f"history-{n}" for n in args.sizes}
        for n, account_id in accounts.items():
            started = time.perf_counter()
            build_history(warm, account_id, n)
            print(f"built {n:,} entries in {time.perf_counter() - started:.1f} s")

        results: dict[str, Any] = {
            "benchmark": "history_latency",
            "recorded_at": datetime.now(UTC).isoformat(),
            "machine": platform.platform(),
            "database": "postgresql",
            "snapshot_interval": settings.snapshot_interval,
            "aggregate_cache_size": settings.aggregate_cache_size,
            "samples_per_case": args.samples,
            "warmup_per_case": args.warmup,
            "target_ratio": TARGET_RATIO,
        }
        for phase, ledger in (("warm", warm), ("cold", cold)):
            summary = summarize(measure(ledger, accounts, args.warmup, args.samples))
            results[phase] = summary
            print_table(
                f"{phase}: aggregate cache {'on' if phase == 'warm' else 'off'}, snapshots on",
                summary,
            )
        if args.contrast_samples:
            env = Settings(database_url=url, aggregate_cache_size=0).eventsourcing_env()
            env["IS_SNAPSHOTTING_ENABLED"] = "n"
            plain = Ledger(env=env)
            summary = summarize(measure(plain, accounts, 1, args.contrast_samples))
            results["no_snapshots_contrast"] = summary
            print_table("contrast: aggregate cache off, snapshots off", summary)
        for ledger in (warm, cold):
            ledger.close()

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
