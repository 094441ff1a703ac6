"""The ledger side by side with the baseline "mutable balance row" service.

Starts ``/work/shared/baseline/app.py`` (uvicorn, port 8100) and ``ledger serve``
(PostgreSQL + Redis, port 8101), each on a fresh PostgreSQL database, funds N
accounts on both, then in one run measures, alternating the two services:

- consumptions at a fixed concurrency over the N accounts: throughput and
  p50 / p99 latency;
- SSE delivery latency: from a write's response to the balance frame that
  shows it arriving on the account's balance stream.

Reports our figures as ratios to the baseline's (ours / baseline: below 1 is
better for latency, above 1 is better for throughput).

    PYTHONPATH=. .venv/bin/python -m benchmarks.baseline_compare
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from benchmarks._pg import fresh_database, percentile

ROOT = Path(__file__).resolve().parent.parent
BASELINE_DIR = Path(os.environ.get("BASELINE_DIR", ROOT.parent / "shared" / "baseline"))
RESULTS = Path(__file__).parent / "results" / "baseline_compare.json"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")
BIN = Path(sys.executable).parent


@dataclass
class Target:
    """One service under test and how to talk to it."""

    name: str
    base: str
    prefix: str
    headers: dict[str, str] = field(default_factory=dict)

    def write(self, account: str, kind: str) -> str:
        return f"{self.prefix}/accounts/{account}/{kind}"

    def stream(self, account: str) -> str:
        return f"{self.prefix}/accounts/{account}/balance/stream"

    @staticmethod
    def available(body: dict[str, Any]) -> int:
        balance = body["balance"]
        return int(balance["available"] if isinstance(balance, dict) else balance)


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def fund(client: httpx.AsyncClient, target: Target, accounts: list[str], amount: int) -> None:
    for account in accounts:
        response = await client.post(
            target.write(account, "purchases"), json={"amount": amount}, headers=target.headers
        )
        response.raise_for_status()


async def load(
    client: httpx.AsyncClient, target: Target, accounts: list[str], requests: int, concurrency: int
) -> dict[str, Any]:
    """``requests`` consumptions of 1 token by ``concurrency`` workers."""
    picks = itertools.cycle(accounts)
    left = itertools.count()
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        while next(left) < requests:
            account = next(picks)
            started = time.perf_counter()
            response = await client.post(
                target.write(account, "consumptions"), json={"amount": 1}, headers=target.headers
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = [v * 1000 for v in latencies]
    return {
        "requests": len(ms),
        "seconds": round(elapsed, 3),
        "throughput_rps": round(len(ms) / elapsed, 1),
        "p50_ms": round(percentile(ms, 0.5), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "statuses": statuses,
    }


async def sse_latency(
    client: httpx.AsyncClient, target: Target, account: str, writes: int
) -> dict[str, Any]:
    """Writes one consumption at a time and times the frame that shows it."""
    frames: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    connected = asyncio.Event()

    async def listen() -> None:
        async with aconnect_sse(
            client, "GET", target.stream(account), headers=target.headers, timeout=None
        ) as source:
            async for event in source.aiter_sse():
                if event.event == "balance" and event.data:
                    await frames.put((time.perf_counter(), json.loads(event.data)))
                    connected.set()

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(connected.wait(), 10)
        latencies: list[float] = []
        end_to_end: list[float] = []
        for _ in range(writes):
            sent = time.perf_counter()
            response = await client.post(
                target.write(account, "consumptions"), json={"amount": 1}, headers=target.headers
            )
            answered = time.perf_counter()
            response.raise_for_status()
            expected = target.available(response.json())
            while True:
                arrived, frame = await asyncio.wait_for(frames.get(), 10)
                if Target.available({"balance": frame.get("balance", frame)}) <= expected:
                    break
            # a frame may beat the response (then 0): what a client waits after the answer
            latencies.append(max(arrived - answered, 0.0))
            end_to_end.append(arrived - sent)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await listener
    ms = [v * 1000 for v in latencies]
    e2e = [v * 1000 for v in end_to_end]
    return {
        "writes": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "request_to_frame_p50_ms": round(percentile(e2e, 0.5), 3),
        "request_to_frame_p99_ms": round(percentile(e2e, 0.99), 3),
    }


async def compare(targets: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    accounts = [f"bench-{i:04d}" for i in range(args.accounts)]
    limits = httpx.Limits(
        max_connections=args.concurrency + 8, max_keepalive_connections=args.concurrency + 8
    )
    results: dict[str, Any] = {}
    clients = {
        t.name: httpx.AsyncClient(base_url=t.base, limits=limits, timeout=30) for t in targets
    }
    try:
        for target in targets:
            await fund(clients[target.name], target, [*accounts, "bench-sse"], 10**12)
            await load(clients[target.name], target, accounts, args.warmup, args.concurrency)
        runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for _ in range(args.rounds):  # alternate, so drift hits both alike
            for target in targets:
                runs[target.name].append(
                    await load(
                        clients[target.name], target, accounts, args.requests, args.concurrency
                    )
                )
        for target in targets:
            rounds = runs[target.name]
            results[target.name] = {
                "consumptions": {
                    "rounds": rounds,
                    "throughput_rps": round(
                        statistics.median(r["throughput_rps"] for r in rounds), 1
                    ),
                    "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 3),
                    "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 3),
                }
            }
        if args.sse_writes:
            for target in targets:
                results[target.name]["sse"] = await sse_latency(
                    clients[target.name], target, "bench-sse", args.sse_writes
                )
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def ratios(results: dict[str, Any]) -> dict[str, float]:
    ours, base = results["ledger"], results["baseline"]
    out = {
        f"consumption_{k}": round(ours["consumptions"][k] / base["consumptions"][k], 3)
        for k in ("throughput_rps", "p50_ms", "p99_ms")
    }
    if "sse" in ours and "sse" in base:
        for k in ("p50_ms", "p99_ms", "request_to_frame_p50_ms", "request_to_frame_p99_ms"):
            out[f"sse_{k}"] = round(ours["sse"][k] / max(base["sse"][k], 1e-3), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--sse-writes", type=int, default=100, help="0 to skip")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logs = Path(tempfile.gettempdir())  # the servers' output: baseline.log, ledger.log
    args.output.parent.mkdir(parents=True, exist_ok=True)

    with (
        fresh_database("ledger_bench_base") as base_db,
        fresh_database("ledger_bench_ours") as ours_db,
    ):
        baseline_cmd = [
            str(BIN / "uvicorn"),
            "app:app",
            "--app-dir",
            str(BASELINE_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            "8100",
            "--log-level",
            "warning",
        ]
        ours_cmd = [str(BIN / "ledger"), "serve", "--host", "127.0.0.1", "--port", "8101"]
        ours_env = {
            "LEDGER_DATABASE_URL": ours_db,
            "LEDGER_REDIS_URL": REDIS_URL,
            "LEDGER_ADMIN_API_KEY": ADMIN_KEY,
            "LEDGER_LOG_LEVEL": "warning",
        }
        with (
            server(
                baseline_cmd,
                {"BASELINE_DSN": base_db, "BASELINE_SCHEMA": "baseline"},
                logs / "baseline.log",
            ) as base_proc,
            server(ours_cmd, ours_env, logs / "ledger.log") as ours_proc,
        ):
            wait_until_up("http://127.0.0.1:8100/accounts/probe/balance", base_proc)
            wait_until_up("http://127.0.0.1:8101/healthz", ours_proc)
            targets = [
                Target(
                    "ledger",
                    "http://127.0.0.1:8101",
                    "/v1",
                    {"Authorization": f"Bearer {ADMIN_KEY}"},
                ),
                Target("baseline", "http://127.0.0.1:8100", ""),
            ]
            results = asyncio.run(compare(targets, args))

    report = {
        "benchmark": "baseline_compare",
        "recorded_at": datetime.now(UTC).isoformat(),
        "machine": platform.platform(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "ratios_ours_over_baseline": ratios(results),
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{'':10} {'rps':>9} {'p50 ms':>9} {'p99 ms':>9} {'sse p50':>9} {'sse p99':>9}"
        f" {'req>frame p50':>14} {'req>frame p99':>14}"
    )
    nan = float("nan")
    for name in ("ledger", "baseline"):
        c, s = results[name]["consumptions"], results[name].get("sse", {})
        print(
            f"{name:10} {c['throughput_rps']:>9.1f} {c['p50_ms']:>9.3f} {c['p99_ms']:>9.3f}"
            f" {s.get('p50_ms', nan):>9.3f} {s.get('p99_ms', nan):>9.3f}"
            f" {s.get('request_to_frame_p50_ms', nan):>14.3f}"
            f" {s.get('request_to_frame_p99_ms', nan):>14.3f}"
        )
    print("ours / baseline:", json.dumps(report["ratios_ours_over_baseline"]))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
