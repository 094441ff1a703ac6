"""The ledger side by side with the baseline service, load from wrk, reported as ratios.

One command, one run (issue 6 item 7): one fresh PostgreSQL database for both
services (the baseline in schema ``baseline``, the ledger in ``public``), the
baseline (``uvicorn app:app --workers 2``, port 8100) and ``ledger serve``
(``--workers 2`` when supported, port 8101), 1,000 funded accounts on both, then
these scenarios, alternating baseline and ledger:

=============  ==================================================================
consume        single consumptions of 1 token, wrk -c64 -t2, random account of 1,000
consume_c1     the same with one connection (wrk -c1 -t1): p50 / p99
balance        GET balance, wrk -c64 -t2, random account of 1,000
hot            consumptions, wrk -c64 -t2, all on ONE account
batch          ledger only: POST /v1/batch of 500 consumptions, wrk -c8 -t2
catchup        ledger only: after ``consume`` stops, seconds until projection lag is 0
idle_streams   N idle balance streams held 30 s: server RSS/stream, CPU %, PG xact/s, pings
sse_latency    1,000 streams on 100 accounts, 200 writes/s: write -> frame p50 / p99, lost
=============  ==================================================================

Results: ``benchmarks/results/compare.json`` and a table of ours / baseline /
ratio / target / met?. See benchmarks/README.md.

    PYTHONPATH=. .venv/bin/python -m benchmarks.compare
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import operator
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks._pg import fresh_database, percentile
from benchmarks._streams import cpu_seconds, pacer_worker, raise_nofile, stream_worker

ROOT = Path(__file__).resolve().parent.parent
BASELINE_DIR = Path(os.environ.get("BASELINE_DIR", ROOT.parent / "shared" / "baseline"))
RESULTS = Path(__file__).parent / "results" / "compare.json"
WRK_SCRIPT = Path(__file__).parent / "wrk" / "bench.lua"
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13")
BIN = Path(sys.executable).parent
ADMIN_KEY = "bench-admin-" + "0123456789abcdef" * 2
SECRET_KEY = "bench-secret-" + "fedcba9876543210" * 2
HOST = "127.0.0.1"
FUNDING = 10**12
PING_SECONDS = 15.0  # the baseline's (hard-coded) and the ledger's default ping interval
SCENARIOS = (
    "consume",
    "consume_c1",
    "balance",
    "hot",
    "batch",
    "catchup",
    "idle_streams",
    "sse_latency",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, "==": operator.eq}


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# -- services -----------------------------------------------------------------


@dataclass
class Service:
    """One service under test and how to talk to it."""

    name: str
    port: int
    prefix: str
    key: str | None = None
    workers: int = 1
    proc: subprocess.Popen[bytes] | None = None
    command: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def path(self, account: str, tail: str) -> str:
        return f"{self.prefix}/accounts/{account}/{tail}"

    @property
    def is_ledger(self) -> bool:
        return self.name == "ledger"


def state_of(balance: Any) -> int:
    """A number that grows with every write of an account: the ledger's
    ``version``; the baseline's balance negated (each write takes 1 token)."""
    if isinstance(balance, dict):
        if "version" in balance:
            return int(balance["version"])
        return -int(balance["balance"])
    return -int(balance)


def group_pids(pgid: int) -> list[int]:
    """Every process of process group ``pgid`` (the server and its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # state, ppid, pgrp, ...
            pids.append(int(entry))
    return sorted(pids)


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


class PgCounter:
    """Transactions (commits + rollbacks) of the bench database, from
    ``pg_stat_database``, over one connection opened at the start and kept (so a
    full ``max_connections`` later cannot stop the measurement). Each reading is
    its own autocommit transaction, so it sees fresh statistics; PostgreSQL
    flushes a backend's counts at most every second (an idle one within 10 s),
    so a rate is accurate over windows of tens of seconds."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.readings = 0

    def read(self) -> int:
        row = self.conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
        self.readings += 1
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


class Meter:
    """Server CPU (process group), PostgreSQL transactions and wall time over a window."""

    def __init__(self, service: Service, pg: PgCounter) -> None:
        assert service.proc is not None
        self.pg = pg
        self.pids = group_pids(service.proc.pid)
        self.ticks = cpu_ticks(self.pids)
        self.readings = pg.readings
        self.xacts = pg.read()
        self.started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        ticks = cpu_ticks(self.pids) - self.ticks
        own = self.pg.readings - self.readings  # this meter's own readings
        xacts = self.pg.read() - self.xacts - own
        return {
            "seconds": round(seconds, 3),
            "server_processes": len(self.pids),
            "server_cpu_pct_of_core": round(100 * ticks / CLK_TCK / seconds, 2),
            "pg_xact_per_s": round(xacts / seconds, 2),
        }


@contextlib.contextmanager
def server(
    name: str, cmd: list[str], env: dict[str, str], logs: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs ``cmd`` in its own process group; stops the whole group at the end."""
    path = logs / f"{name}.log"
    with path.open("wb") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            log(f"stopping {name} (process group {proc.pid})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            # workers that outlived their parent
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_until_up(service: Service, path: str, timeout: float = 90) -> None:
    assert service.proc is not None
    deadline = time.monotonic() + timeout
    ok = 0
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited ({service.proc.returncode}); see its log")
        try:
            status = httpx.get(service.base + path, headers=service.headers, timeout=2).status_code
        except httpx.HTTPError:
            status = 0
        ok = ok + 1 if status == 200 else 0
        if ok >= 20:  # every worker is likely up
            return
        time.sleep(0.05 if ok else 0.25)
    raise RuntimeError(f"{service.name} did not come up on {path} in {timeout} s")


def ledger_command(src: Path) -> tuple[list[str], dict[str, str]]:
    """How to run the ``ledger`` command from source tree ``src``: the venv's
    ``ledger`` script for this repository, else ``python -m service.cli`` with
    ``PYTHONPATH=src`` (e.g. a ``git archive`` of a commit)."""
    if src.resolve() == ROOT:
        return [str(BIN / "ledger")], {}
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", "service.cli"], {"PYTHONPATH": path}


def ledger_supports_workers(src: Path) -> bool:
    cmd, env = ledger_command(src)
    out = subprocess.run(
        [*cmd, "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=src,
        env={**os.environ, **env, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
        check=False,
    )
    return "--workers" in out.stdout + out.stderr


# -- funding ------------------------------------------------------------------


async def fund(service: Service, accounts: list[str], amount: int) -> dict[str, int]:
    statuses: dict[str, int] = {}
    queue = list(accounts)

    async with httpx.AsyncClient(base_url=service.base, headers=service.headers, timeout=60) as c:

        async def worker() -> None:
            while queue:
                account = queue.pop()
                response = await c.post(service.path(account, "purchases"), json={"amount": amount})
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code != 201:
                    raise RuntimeError(
                        f"{service.name}: funding {account} answered {response.status_code}:"
                        f" {response.text[:300]}"
                    )

        await asyncio.gather(*(worker() for _ in range(16)))
    return statuses


# -- wrk ----------------------------------------------------------------------


def run_wrk(
    service: Service,
    *,
    mode: str,
    connections: int,
    threads: int,
    seconds: int,
    ids: str,
    accounts: int,
    hot: str = "",
    batch: int = 500,
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        service.base,
        "--",
        f"mode={mode}",
        f"prefix={service.prefix}",
        f"ids={ids}",
        f"accounts={accounts}",
        f"batch={batch}",
    ]
    if hot:
        cmd.append(f"hot={hot}")
    if service.key:
        cmd.append(f"auth={service.key}")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 120)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    lat = raw["latency_us"]
    duration = raw["duration_us"] / 1e6
    statuses = {k: int(v) for k, v in sorted(raw["statuses"].items())}
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    errors = {k: int(v) for k, v in raw["errors"].items()}
    return {
        "command": shlex.join([c if not c.startswith("auth=") else "auth=***" for c in cmd]),
        "seconds": round(duration, 3),
        "requests": int(raw["requests"]),
        "rps": round(raw["requests"] / duration, 1),
        "ok_rps": round(ok / duration, 1),
        "p50_ms": round(lat["p50"] / 1000, 3),
        "p90_ms": round(lat["p90"] / 1000, 3),
        "p99_ms": round(lat["p99"] / 1000, 3),
        "p999_ms": round(lat["p999"] / 1000, 3),
        "mean_ms": round(lat["mean"] / 1000, 3),
        "max_ms": round(lat["max"] / 1000, 3),
        "statuses": statuses,
        "non_2xx": sum(n for code, n in statuses.items() if not code.startswith("2")),
        "refused_402": statuses.get("402", 0),
        "socket_errors": errors,
        "ok_ops": int(raw.get("ok_ops", 0)),
        "refused_ops": int(raw.get("refused_ops", 0)),
    }


# -- scenario context ---------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    pg: PgCounter
    services: list[Service]  # baseline first (when present), then the ledger
    ids: str
    accounts: int
    hot: str
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def ledger(self) -> Service:
        return next(s for s in self.services if s.is_ledger)

    def wrk(self, service: Service, **kw: Any) -> dict[str, Any]:
        kw.setdefault("ids", self.ids)
        kw.setdefault("accounts", self.accounts)
        if self.args.warmup > 0:
            run_wrk(service, seconds=self.args.warmup, **kw)
        return run_wrk(service, seconds=self.args.duration, **kw)


def measure_catchup(service: Service, timeout: float = 60) -> dict[str, Any]:
    """Polls /readyz (then /metrics) until the projection lag is 0."""
    started = time.monotonic()
    first: int | None = None
    peak = 0
    polls = 0
    with httpx.Client(base_url=service.base, timeout=5) as client:
        while time.monotonic() - started < timeout:
            lag = projection_lag(client)
            polls += 1
            if lag is None:
                return {"error": "no projection lag in /readyz or /metrics"}
            first = lag if first is None else first
            peak = max(peak, lag)
            if lag == 0:
                return {
                    "seconds": round(time.monotonic() - started, 3),
                    "lag_at_first_poll": first,
                    "peak_lag": peak,
                    "polls": polls,
                }
            time.sleep(0.01)
    return {"seconds": None, "error": f"lag not 0 after {timeout} s", "peak_lag": peak}


def projection_lag(client: httpx.Client) -> int | None:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
        body = client.get("/readyz").json()
        return int(body["checks"]["projection"]["lag"])
    with contextlib.suppress(httpx.HTTPError, ValueError):
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("ledger_projection_lag"):
                return int(float(line.split()[-1]))
    return None


# -- scenarios ----------------------------------------------------------------


def scenario_consume(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for service in run.services:
        log(f"consume: {service.name}")
        out[service.name] = run.wrk(service, mode="consume", connections=64, threads=2)
        if service.is_ledger and "catchup" in run.args.only:
            run.results["catchup"] = {"ledger": measure_catchup(service)}
    return out


def scenario_consume_c1(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for service in run.services:
        log(f"consume_c1: {service.name}")
        out[service.name] = run.wrk(service, mode="consume", connections=1, threads=1)
    return out


def scenario_balance(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for service in run.services:
        log(f"balance: {service.name}")
        out[service.name] = run.wrk(service, mode="balance", connections=64, threads=2)
    return out


def scenario_hot(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for service in run.services:
        log(f"hot: {service.name}")
        out[service.name] = run.wrk(service, mode="hot", connections=64, threads=2, hot=run.hot)
    return out


def scenario_batch(run: Run) -> dict[str, Any]:
    ledger = run.ledger
    size = run.args.batch_size
    operations = [
        {"op": "consume", "account_id": f"{run.ids}{i % run.accounts:04d}", "amount": 1}
        for i in range(size)
    ]
    response = httpx.post(
        f"{ledger.base}/v1/batch",
        json={"operations": operations},
        headers=ledger.headers,
        timeout=60,
    )
    if response.status_code in (404, 405):
        log(f"batch: POST /v1/batch answered {response.status_code}: not available")
        return {"ledger": {"available": False, "sample_status": response.status_code}}
    check: dict[str, Any] = {"sample_status": response.status_code}
    try:
        results = response.json()["results"]
        codes: dict[str, int] = {}
        for item in results:
            codes[str(item.get("status"))] = codes.get(str(item.get("status")), 0) + 1
        check["sample_result_statuses"] = codes
        check["sample_ok"] = (
            response.status_code == 200 and len(results) == size and codes == {"201": size}
        )
    except (ValueError, KeyError, TypeError):
        check["sample_ok"] = False
        check["sample_body"] = response.text[:500]
    if not check["sample_ok"]:
        log(f"batch: sample check failed: {check}")
        return {"ledger": {"available": True, **check, "error": "sample check failed"}}
    log("batch: ledger")
    result = run.wrk(ledger, mode="batch", connections=8, threads=2, batch=size)
    ops_per_s = result["ok_ops"] / result["seconds"]
    return {
        "ledger": {
            "available": True,
            **check,
            **result,
            "batch_size": size,
            "consumptions_per_s": round(ops_per_s, 1),
            "requests_x_size_per_s": round(result["ok_rps"] * size, 1),
        }
    }


def scenario_catchup(run: Run) -> dict[str, Any]:
    if "catchup" in run.results:  # measured right after the ledger's consume run
        return dict(run.results["catchup"])
    log("catchup: ledger (consume load first)")
    run.wrk(run.ledger, mode="consume", connections=64, threads=2)
    return {"ledger": measure_catchup(run.ledger)}


def _spawn(target: Callable[..., None], spec: dict[str, Any], procs: list[Any]) -> Connection:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, spec), daemon=True)
    proc.start()
    procs.append(proc)
    return parent


def _expect(pipe: Connection, kind: str, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise RuntimeError(f"client process: no {kind!r} after {timeout} s")
    got, payload = pipe.recv()
    if got == "error":
        raise RuntimeError(f"client process failed: {payload}")
    if got != kind:
        raise RuntimeError(f"client process: expected {kind!r}, got {got!r}")
    return payload


def _stop_procs(procs: list[Any]) -> None:
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def _open_streams(
    service: Service,
    streams: list[tuple[int, str, bool]],
    processes: int,
    keep_frames: bool,
    procs: list[Any],
) -> tuple[list[Connection], dict[str, Any]]:
    pipes = []
    for i in range(processes):
        spec = {
            "host": HOST,
            "port": service.port,
            "path": service.path("{account}", "balance/stream"),
            "headers": service.headers,
            "streams": streams[i::processes],
            "keep_frames": keep_frames,
            "connect_concurrency": 64,
            "open_timeout": 300,
        }
        pipes.append(_spawn(stream_worker, spec, procs))
    opened = [_expect(p, "opened", 360) for p in pipes]
    summary = {
        "client_processes": processes,
        "opened": sum(o["opened"] for o in opened),
        "failed": sum(o["failed"] for o in opened),
        "open_seconds": max(o["open_seconds"] for o in opened),
        "errors": sorted({e for o in opened for e in o["errors"]})[:5],
    }
    return pipes, summary


def scenario_idle_streams(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = run.args.streams
    hold = run.args.idle_seconds
    for service in run.services:
        log(f"idle_streams: {service.name}: {n} streams, held {hold} s")
        assert service.proc is not None
        pids = group_pids(service.proc.pid)
        time.sleep(run.args.idle_settle)  # the earlier load's statistics reach pg_stat
        rss_before = rss_kb(pids)
        reference = Meter(service, run.pg)
        time.sleep(min(10.0, hold))
        no_streams = reference.stop()
        sample_every = max(1, n // 100)
        streams = [(k, f"{run.ids}{k % run.accounts:04d}", k % sample_every == 0) for k in range(n)]
        processes = max(2, min(8, math.ceil(n / 2500)))
        procs: list[Any] = []
        try:
            pipes, opened = _open_streams(service, streams, processes, False, procs)
            log(f"idle_streams: {service.name}: {opened}")
            time.sleep(run.args.idle_settle)
            for pipe in pipes:
                pipe.send("start")
            meter = Meter(service, run.pg)
            rss_start = rss_kb(group_pids(service.proc.pid))
            client_cpu_start = cpu_seconds()
            time.sleep(hold)
            window = meter.stop()
            rss_with = rss_kb(group_pids(service.proc.pid))
            client_cpu = cpu_seconds() - client_cpu_start
            for pipe in pipes:
                pipe.send("stop")
            results = [_expect(p, "result", 120) for p in pipes]
        finally:
            _stop_procs(procs)
        held = sum(r["alive"] for r in results)
        pings = _ping_report(results, hold)
        client_cpu += sum(r["cpu_seconds"] for r in results)
        out[service.name] = {
            "streams": n,
            **opened,
            "alive_at_end": held,
            "stream_errors": sorted({e for r in results for e in r["errors"]})[:5],
            "data_frames_in_window": sum(r["frames_in_window"] for r in results),
            "server_processes": len(group_pids(service.proc.pid)),
            "rss_before_kb": rss_before,
            "rss_with_streams_kb": rss_with,
            "rss_at_window_start_kb": rss_start,
            "kb_per_stream": round((rss_with - rss_before) / max(opened["opened"], 1), 2),
            **{k: v for k, v in window.items() if k != "server_processes"},
            "no_streams_reference": no_streams,
            "client_cpu_pct_of_core": round(100 * client_cpu / window["seconds"], 2),
            "pings": pings,
        }
        log(f"idle_streams: {service.name}: {json.dumps(out[service.name])}")
    return out


def _ping_report(results: list[dict[str, Any]], hold: float) -> dict[str, Any]:
    """Pings of the sampled streams in the window: the longest silence (window
    start, pings, window end) of each; on time when at most interval + 20 %."""
    allowed = PING_SECONDS * 1.2
    silences = []
    counts = []
    for r in results:
        start, end = r["window"]
        for times in r["pings"].values():
            marks = [start, *[t for t in times if start <= t <= end], end]
            counts.append(len(marks) - 2)
            silences.append(max(b - a for a, b in itertools.pairwise(marks)))
    if not silences:
        return {"sampled_streams": 0}
    late = sum(1 for s in silences if s > allowed)
    return {
        "interval_s": PING_SECONDS,
        "sampled_streams": len(silences),
        "pings_per_stream_median": statistics.median(counts),
        "pings_per_stream_min": min(counts),
        "longest_silence_s": round(max(silences), 3),
        "late_streams": late,
        "on_time": late == 0 and hold >= PING_SECONDS,
    }


def scenario_sse_latency(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_accounts = min(run.args.sse_accounts, run.accounts)
    per_account = run.args.sse_streams_per_account
    accounts = [f"{run.ids}{i:04d}" for i in range(n_accounts)]
    for service in run.services:
        log(
            f"sse_latency: {service.name}: {n_accounts * per_account} streams,"
            f" {run.args.sse_rate}/s writes for {run.args.duration} s"
        )
        streams = [
            (a * per_account + j, accounts[a], False)
            for a in range(n_accounts)
            for j in range(per_account)
        ]
        procs: list[Any] = []
        try:
            pipes, opened = _open_streams(
                service, streams, run.args.sse_reader_processes, True, procs
            )
            log(f"sse_latency: {service.name}: {opened}")
            pacer = _spawn(
                pacer_worker,
                {
                    "host": HOST,
                    "port": service.port,
                    "path": service.path("{account}", "consumptions"),
                    "headers": service.headers,
                    "rate": run.args.sse_rate,
                    "seconds": run.args.duration,
                    "accounts": accounts,
                    "connections": 16,
                },
                procs,
            )
            _expect(pacer, "ready", 60)
            for pipe in pipes:
                pipe.send("start")
            meter = Meter(service, run.pg)
            pacer.send("start")
            paced = _expect(pacer, "result", run.args.duration + 120)
            time.sleep(run.args.sse_grace)
            window = meter.stop()
            for pipe in pipes:
                pipe.send("stop")
            results = [_expect(p, "result", 120) for p in pipes]
        finally:
            _stop_procs(procs)
        out[service.name] = {
            "accounts": n_accounts,
            "streams": len(streams),
            **opened,
            **_frame_report(paced, results, window["seconds"]),
            "server_cpu_pct_of_core": window["server_cpu_pct_of_core"],
            "pg_xact_per_s": window["pg_xact_per_s"],
        }
        log(f"sse_latency: {service.name}: {json.dumps(out[service.name])}")
    return out


def _frame_report(
    paced: dict[str, Any], readers: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    """Matches every write to the first frame on each stream of its account that
    shows a state at least as new (ledger: version; baseline: balance)."""
    writes = [w for w in paced["writes"] if w.get("status") == 201]
    by_account: dict[str, list[tuple[int, float, float]]] = {}
    for w in writes:
        by_account.setdefault(w["account"], []).append(
            (state_of(w["balance"]), w["sent"], w["answered"])
        )
    for items in by_account.values():
        items.sort()
    from_send: list[float] = []
    from_answer: list[float] = []
    lost = 0
    out_of_order = 0
    frames_total = 0
    for reader in readers:
        for account, frames in reader["frames"].values():
            parsed = []
            for t, data in frames:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    parsed.append((t, state_of(json.loads(data))))
            frames_total += len(parsed)
            best = -math.inf  # running newest state, so a later older frame is skipped
            i = 0
            for target, sent, answered in by_account.get(account, []):
                while i < len(parsed) and max(best, parsed[i][1]) < target:
                    if parsed[i][1] < best:
                        out_of_order += 1
                    best = max(best, parsed[i][1])
                    i += 1
                if i == len(parsed):
                    lost += 1
                    continue
                arrival = parsed[i][0]
                from_send.append((arrival - sent) * 1000)
                from_answer.append(max(arrival - answered, 0.0) * 1000)
    reader_cpu = sum(r["cpu_seconds"] for r in readers)
    expected = sum(
        len(by_account.get(account, [])) for r in readers for account, _ in r["frames"].values()
    )
    statuses: dict[str, int] = {}
    for w in paced["writes"]:
        key = str(w.get("status", "error"))
        statuses[key] = statuses.get(key, 0) + 1
    report: dict[str, Any] = {
        "writes": len(paced["writes"]),
        "write_statuses": statuses,
        "refused_402": statuses.get("402", 0),
        "write_rate_per_s": round(len(paced["writes"]) / paced["seconds"], 1),
        "writes_scheduled_late_50ms": paced["scheduled_late_50ms"],
        "frames_received": frames_total,
        "frames_expected": expected,
        "frames_lost": lost,
        "older_after_newer": out_of_order,
        "client_cpu_pct_of_core": {
            "readers": round(100 * reader_cpu / seconds, 2),
            "writer": round(100 * paced["cpu_seconds"] / seconds, 2),
        },
    }
    if from_send:
        report.update(
            p50_ms=round(percentile(from_send, 0.5), 3),
            p99_ms=round(percentile(from_send, 0.99), 3),
            max_ms=round(max(from_send), 3),
            after_answer_p50_ms=round(percentile(from_answer, 0.5), 3),
            after_answer_p99_ms=round(percentile(from_answer, 0.99), 3),
            within_100ms_pct=round(100 * sum(1 for v in from_send if v <= 100) / len(from_send), 3),
            within_200ms_pct=round(100 * sum(1 for v in from_send if v <= 200) / len(from_send), 3),
        )
    return report


RUNNERS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "consume": scenario_consume,
    "consume_c1": scenario_consume_c1,
    "balance": scenario_balance,
    "hot": scenario_hot,
    "batch": scenario_batch,
    "catchup": scenario_catchup,
    "idle_streams": scenario_idle_streams,
    "sse_latency": scenario_sse_latency,
}


# -- the table ----------------------------------------------------------------


def _get(results: dict[str, Any], scenario: str, service: str, key: str) -> Any:
    value: Any = results.get(scenario, {}).get(service, {})
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows: scenario, metric, ours, baseline, ratio (ours / baseline), target, met."""
    # (scenario, metric key, label, kind of target, bound): "ratio>=" / "ratio<=" bound the
    # ratio, "<=" / ">=" / "==" bound ours, None: reported only
    spec: list[tuple[str, str, str, str | None, Any]] = [
        ("consume", "rps", "requests/s", "ratio>=", 1.2),
        ("consume", "p50_ms", "p50 ms", None, None),
        ("consume", "p99_ms", "p99 ms", "ratio<=", 1.5),
        ("consume", "refused_402", "402 answers", "==", 0),
        ("consume_c1", "rps", "requests/s", None, None),
        ("consume_c1", "p50_ms", "p50 ms", None, None),
        ("consume_c1", "p99_ms", "p99 ms", None, None),
        ("balance", "rps", "requests/s", None, None),
        ("balance", "p50_ms", "p50 ms", None, None),
        ("balance", "p99_ms", "p99 ms", None, None),
        ("hot", "rps", "requests/s", None, None),
        ("hot", "p50_ms", "p50 ms", None, None),
        ("hot", "p99_ms", "p99 ms", None, None),
        ("hot", "refused_402", "402 answers", "==", 0),
        ("batch", "consumptions_per_s", "consumptions/s", ">=", 6000),
        ("batch", "p99_ms", "p99 ms per request", None, None),
        ("batch", "refused_ops", "402 results", "==", 0),
        ("catchup", "seconds", "seconds to lag 0", "<", 1.0),
        ("idle_streams", "opened", "streams opened", None, None),
        ("idle_streams", "kb_per_stream", "KB RSS / stream", "<=", 60),
        ("idle_streams", "server_cpu_pct_of_core", "server CPU % of a core", "<=", 5),
        ("idle_streams", "pg_xact_per_s", "PostgreSQL xact/s", "<=", 10),
        ("idle_streams", "pings.on_time", "pings on time", "==", True),
        ("idle_streams", "client_cpu_pct_of_core", "client CPU %", None, None),
        ("sse_latency", "p50_ms", "write->frame p50 ms", None, None),
        ("sse_latency", "p99_ms", "write->frame p99 ms", "<=", 100),
        ("sse_latency", "frames_lost", "frames lost", "==", 0),
        ("sse_latency", "refused_402", "402 answers", "==", 0),
        ("sse_latency", "client_cpu_pct_of_core.readers", "client CPU % (readers)", None, None),
    ]
    rows: list[dict[str, Any]] = []
    for scenario, key, label, kind, bound in spec:
        if scenario not in results:
            continue
        ours = _get(results, scenario, "ledger", key)
        base = _get(results, scenario, "baseline", key)
        if ours is None and base is None:
            unavailable = _get(results, scenario, "ledger", "available") is False
            if scenario == "batch" and unavailable and key == "consumptions_per_s":
                rows.append(
                    {
                        "scenario": scenario,
                        "metric": label,
                        "ours": "not available",
                        "baseline": None,
                        "ratio": None,
                        "target": f"{kind} {bound}",
                        "met": None,
                    }
                )
            continue
        ratio = None
        numeric = isinstance(ours, int | float) and not isinstance(ours, bool)
        if numeric and isinstance(base, int | float) and not isinstance(base, bool) and base:
            ratio = round(ours / base, 3)
        met: bool | None = None
        target = None
        if kind == "ratio>=":
            target, met = f">= {bound}x", None if ratio is None else ratio >= bound
        elif kind == "ratio<=":
            target, met = f"<= {bound}x", None if ratio is None else ratio <= bound
        elif kind is not None and ours is not None:
            target = f"{kind} {bound}"
            met = bool(COMPARE[kind](ours, bound))
        rows.append(
            {
                "scenario": scenario,
                "metric": label,
                "ours": ours,
                "baseline": base,
                "ratio": ratio,
                "target": target,
                "met": met,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    header = ("scenario", "metric", "ours", "baseline", "ratio", "target", "met?")
    body = [
        (
            r["scenario"],
            r["metric"],
            cell(r["ours"]),
            cell(r["baseline"]),
            cell(r["ratio"]),
            cell(r["target"]),
            cell(r["met"]),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *body]:
        print(
            "  ".join(
                v.ljust(w) if i < 2 else v.rjust(w)
                for i, (v, w) in enumerate(zip(line, widths, strict=True))
            )
        )


# -- machine, git -------------------------------------------------------------


def machine_info(dsn: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_kb"] = int(line.split()[1])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        info["wrk"] = (out.stdout + out.stderr).splitlines()[0]
    with contextlib.suppress(psycopg.Error), psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        info["postgresql"] = row[0] if row else None
    with contextlib.suppress(Exception):
        import redis

        info["redis"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    return info


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


# -- main ---------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before each run")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"scenarios to run, of: {' '.join(SCENARIOS)}",
    )
    parser.add_argument("--streams", type=int, default=10_000, help="idle_streams: streams")
    parser.add_argument("--idle-seconds", type=float, default=30, help="idle_streams: hold")
    parser.add_argument(
        "--idle-settle",
        type=float,
        default=11,
        help="idle_streams: quiet seconds before each window (PostgreSQL statistics settle)",
    )
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--sse-accounts", type=int, default=100)
    parser.add_argument("--sse-streams-per-account", type=int, default=10)
    parser.add_argument("--sse-rate", type=float, default=200, help="writes/s")
    parser.add_argument("--sse-grace", type=float, default=2.0, help="seconds after the writes")
    parser.add_argument("--sse-reader-processes", type=int, default=4)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--webhook-sink",
        action="store_true",
        help="subscribe a local sink to entry.created on the ledger; report the outbox"
        " depth when the load stops and how long it takes to drain",
    )
    parser.add_argument(
        "--webhook-sink-paused",
        action="store_true",
        help="with --webhook-sink: pause the sink (SIGSTOP) during the load, so the write path"
        " pays for recording the outbox but not for deliveries; resume it for the drain",
    )
    parser.add_argument(
        "--webhook-sink-remote",
        action="store_true",
        help="with --webhook-sink: run the sink under SCHED_IDLE, in a session of its own,"
        " standing in for a receiver on another machine: its CPU then comes out of the idle"
        " time, not out of the write path's",
    )
    parser.add_argument("--ledger-workers", type=int, default=2)
    parser.add_argument("--baseline-workers", type=int, default=2)
    parser.add_argument("--ledger-port", type=int, default=8101)
    parser.add_argument("--baseline-port", type=int, default=8100)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="after the run, leave both servers up (for profiling) until Ctrl-C",
    )
    parser.add_argument(
        "--ledger-src",
        type=Path,
        default=ROOT,
        help="run the ledger from this source tree (e.g. a `git archive` of a commit)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def start_services(
    args: argparse.Namespace, dsn: str, logs: Path, stack: contextlib.ExitStack
) -> list[Service]:
    services: list[Service] = []
    for port in ([] if args.skip_baseline else [args.baseline_port]) + [args.ledger_port]:
        if not port_free(port):
            raise RuntimeError(f"port {port} is in use")
    if not args.skip_baseline:
        base = Service("baseline", args.baseline_port, "", workers=args.baseline_workers)
        cmd = [
            str(BIN / "uvicorn"), "app:app", "--app-dir", str(BASELINE_DIR),
            "--host", HOST, "--port", str(base.port),
            "--workers", str(base.workers), "--log-level", "warning",
        ]  # fmt: skip
        base.proc = stack.enter_context(
            server("baseline", cmd, {"BASELINE_DSN": dsn, "BASELINE_SCHEMA": "baseline"}, logs)
        )
        base.command = shlex.join(cmd)
        services.append(base)
    ledger = Service("ledger", args.ledger_port, "/v1", key=ADMIN_KEY)
    env = {
        "LEDGER_DATABASE_URL": dsn,
        "LEDGER_REDIS_URL": REDIS_URL,
        "LEDGER_ADMIN_API_KEY": ADMIN_KEY,
        "LEDGER_SECRET_KEY": SECRET_KEY,
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_SSE_PING_SECONDS": str(PING_SECONDS),
    }
    if args.webhook_sink:
        env["LEDGER_WEBHOOK_ALLOW_INSECURE"] = "true"
    src = args.ledger_src
    launcher, launch_env = ledger_command(src)
    env.update(launch_env)
    migrated = subprocess.run(
        [*launcher, "migrate"],
        env={**os.environ, **env},
        cwd=src,
        capture_output=True,
        text=True,
        check=False,
    )
    (logs / "ledger-migrate.log").write_text(migrated.stdout + migrated.stderr)
    if migrated.returncode != 0:
        raise RuntimeError(f"ledger migrate failed: {migrated.stderr[-500:]}")
    cmd = [*launcher, "serve", "--host", HOST, "--port", str(ledger.port)]
    if ledger_supports_workers(src):
        ledger.workers = args.ledger_workers
        cmd += ["--workers", str(ledger.workers)]
    else:
        ledger.notes.append("`ledger serve` has no --workers option yet: ran ONE process")
        log(f"NOTE: {ledger.notes[-1]}")
    ledger.proc = stack.enter_context(server("ledger", cmd, env, logs, cwd=src))
    ledger.command = shlex.join(cmd)
    services.append(ledger)
    if not args.skip_baseline:
        wait_until_up(services[0], "/accounts/probe/balance")
    wait_until_up(ledger, "/readyz")
    for service in services:
        assert service.proc is not None
        log(f"{service.name} up on {service.base}: pids {group_pids(service.proc.pid)}")
    return services


SINK_PORT = 8199


def start_sink(
    ledger: Service, stack: contextlib.ExitStack, remote: bool = False
) -> subprocess.Popen[str]:
    """Starts ``benchmarks._sink`` and subscribes it to ``entry.created``;
    ``remote``: with the idle priority ``ledger deliver`` takes
    (:func:`service.background.take_idle_priority`), so it takes only CPU
    time the machine leaves idle, as a receiver elsewhere would."""
    from service.background import take_idle_priority

    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._sink", str(SINK_PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=take_idle_priority if remote else None,
    )
    stack.callback(sink.kill)
    assert sink.stdout is not None
    assert sink.stdout.readline().strip() == "ready"
    body = {"url": f"http://127.0.0.1:{SINK_PORT}/hook", "events": ["entry.created"]}
    url = f"{ledger.base}{ledger.prefix}/webhook-endpoints"
    created = httpx.post(url, json=body, headers=ledger.headers)
    created.raise_for_status()
    log(f"webhook sink on port {SINK_PORT} subscribed to entry.created")
    return sink


def _sink_count(sink: subprocess.Popen[str]) -> int:
    assert sink.stdin is not None and sink.stdout is not None
    sink.stdin.write("\n")
    sink.stdin.flush()
    return int(sink.stdout.readline())


def _outbox_depth(client: httpx.Client) -> int | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("ledger_webhook_outbox_depth"):
            return int(float(line.split()[-1]))
    return None


def measure_drain(
    ledger: Service, sink: subprocess.Popen[str], timeout: float = 600
) -> dict[str, Any]:
    """The outbox depth when the load stopped, and the seconds until it is 0."""
    started = time.monotonic()
    with httpx.Client(base_url=f"http://{HOST}:{ledger.port}", timeout=10) as client:
        first = _outbox_depth(client)
        depth = first
        while depth and time.monotonic() - started < timeout:
            time.sleep(0.5)  # each reading counts the outbox: not too often
            depth = _outbox_depth(client)
        seconds = round(time.monotonic() - started, 2)
    return {
        "ledger": {
            "outbox_depth_when_load_stopped": first,
            "drain_seconds": seconds if depth == 0 else None,
            "delivered_to_sink": _sink_count(sink),
        }
    }


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    nofile = raise_nofile()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed")
    logs = Path(tempfile.mkdtemp(prefix="ledger-compare-"))
    log(f"server logs in {logs}  (RLIMIT_NOFILE {nofile})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:6]
    ids = f"cmp{run_id}-"
    report: dict[str, Any] = {
        "benchmark": "compare",
        "recorded_at": datetime.now(UTC).isoformat(),
        "command": shlex.join(
            [Path(sys.executable).name, "-m", "benchmarks.compare", *sys.argv[1:]]
        ),
        "git": git_info(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "logs": str(logs),
    }
    results: dict[str, Any] = {}
    with fresh_database("ledger_bench_cmp") as dsn, contextlib.ExitStack() as stack:
        pg = PgCounter(dsn)
        stack.callback(pg.close)
        report["machine"] = machine_info(dsn)
        report["redis_url"] = REDIS_URL
        services = start_services(args, dsn, logs, stack)
        report["servers"] = {
            s.name: {"workers": s.workers, "port": s.port, "command": s.command, "notes": s.notes}
            for s in services
        }
        accounts = [f"{ids}{i:04d}" for i in range(args.accounts)]
        hot = f"{ids}hot"
        for service in services:
            log(f"funding {len(accounts) + 1} accounts on {service.name} with {FUNDING:,} tokens")
            asyncio.run(fund(service, [*accounts, hot], FUNDING))
        run = Run(args, pg, services, ids, args.accounts, hot, results)
        sink = (
            start_sink(run.ledger, stack, args.webhook_sink_remote) if args.webhook_sink else None
        )
        if sink is not None and args.webhook_sink_paused:
            os.kill(sink.pid, signal.SIGSTOP)
            stack.callback(os.kill, sink.pid, signal.SIGCONT)
        try:
            for name in SCENARIOS:
                if name not in args.only:
                    continue
                started = time.monotonic()
                try:
                    results[name] = RUNNERS[name](run)
                except Exception as exc:
                    log(f"{name} FAILED: {exc}")
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc()
                results[name]["wall_seconds"] = round(time.monotonic() - started, 1)
            if sink is not None:
                if args.webhook_sink_paused:
                    os.kill(sink.pid, signal.SIGCONT)
                results["webhooks"] = measure_drain(run.ledger, sink)
        finally:
            report["scenarios"] = results
            report["table"] = table(results)
            args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print()
        print_table(report["table"])
        for service in services:
            for note in service.notes:
                print(f"note: {service.name}: {note}")
        print(f"\nwritten to {args.output}; server logs in {logs}")
        if args.keep:
            log("--keep: servers stay up; Ctrl-C to stop them and drop the database")
            for service in services:
                assert service.proc is not None
                log(f"  {service.name}: {service.base}, pids {group_pids(service.proc.pid)}")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


if __name__ == "__main__":
    main()
