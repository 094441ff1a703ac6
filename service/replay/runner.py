"""The async driver of ``ledger replay``: fund, consume, check.

1. **Fund**: one purchase per account (``Idempotency-Key: <run_id>-fund``).
2. **Consume**: one consumption per row, in arrival order (``t_offset_s``, divided
   by ``speedup`` when it is > 0), at most ``concurrency`` in flight, over one
   keep-alive ``httpx.AsyncClient``; ``Idempotency-Key: <run_id>-<source>-<seq>``.
   Transport errors, 503 and 409 ``idempotency-key-in-flight`` are retried
   (bounded): the idempotency key makes a retry safe.
3. **Check**: for each account, wait for the projection to reach the highest
   position seen for it (``min_position`` + ``wait``) and compare ``available``
   and ``consumed`` with funding minus the accepted consumptions.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from service.replay.accounts import DEFAULT_EXPONENT, ReplayPlan, plan_replay
from service.replay.report import Mismatch, ReplaySummary, percentile
from service.replay.trace import TokenColumn, TraceRow, read_trace

MAX_ATTEMPTS = 5
"""Attempts of one request on transport errors, 503 and 409 in-flight."""
RETRY_BASE_SECONDS = 0.05
CHECK_WAIT_SECONDS = 10
CHECK_ATTEMPTS = 3


@dataclass(frozen=True)
class Answer:
    """A request's final outcome: ``status`` (HTTP, or 0 on a transport error),
    parsed JSON ``body`` (``{}`` when none), ``seconds`` from first send to answer,
    and how many ``retries`` it took."""

    status: int
    body: dict[str, Any]
    seconds: float
    retries: int

    @property
    def error_label(self) -> str:
        """``"transport"`` or the status as text."""
        return "transport" if self.status == 0 else str(self.status)


def _retryable(response: httpx.Response) -> bool:
    if response.status_code == 503:
        return True
    if response.status_code == 409:
        try:
            return bool(response.json().get("code") == "idempotency-key-in-flight")
        except ValueError:
            return False
    return False


async def _send(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    json: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Answer:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    started = time.perf_counter()
    retries = 0
    while True:
        try:
            response = await client.request(method, path, json=json, params=params, headers=headers)
        except httpx.RequestError:
            if retries + 1 >= MAX_ATTEMPTS:
                return Answer(0, {}, time.perf_counter() - started, retries)
        else:
            if not _retryable(response) or retries + 1 >= MAX_ATTEMPTS:
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                if not isinstance(body, dict):
                    body = {}
                return Answer(response.status_code, body, time.perf_counter() - started, retries)
        await asyncio.sleep(min(1.0, RETRY_BASE_SECONDS * 2**retries))
        retries += 1


def _position(body: dict[str, Any]) -> int:
    entry = body.get("entry")
    if isinstance(entry, dict) and isinstance(entry.get("position"), int):
        return int(entry["position"])
    return 0


async def _bounded(
    items: Sequence[Any], concurrency: int, work: Callable[[Any], Awaitable[None]]
) -> None:
    """Runs ``work(item)`` for every item, at most ``concurrency`` at a time."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await work(item)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(items))))))


class _Bar:
    """A rich progress bar, or nothing when disabled."""

    def __init__(self, enabled: bool, console: Console | None) -> None:
        self.progress: Progress | None = None
        if enabled:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )

    def __enter__(self) -> _Bar:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.progress.stop()

    def task(self, description: str, total: int) -> TaskID | None:
        return self.progress.add_task(description, total=total) if self.progress else None

    def advance(self, task: TaskID | None) -> None:
        if self.progress and task is not None:
            self.progress.advance(task)


async def replay(
    trace: Path | str | Sequence[TraceRow],
    *,
    url: str,
    key: str,
    accounts: int = 1000,
    seed: int = 42,
    concurrency: int = 32,
    speedup: float = 0.0,
    limit: int | None = None,
    funding: int | None = None,
    column: TokenColumn = "total_tokens",
    run_id: str | None = None,
    exponent: float = DEFAULT_EXPONENT,
    progress: bool = False,
    console: Console | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    check_wait: int = CHECK_WAIT_SECONDS,
) -> ReplaySummary:
    """Replays ``trace`` (a path or rows) against the ledger at ``url`` with API key ``key``.

    ``key`` needs scopes ``purchase``, ``consume`` and ``read`` (or ``admin``).
    ``speedup`` 0 posts as fast as ``concurrency`` allows; otherwise row ``i`` is
    sent no earlier than ``t_offset_s / speedup`` seconds after the start.
    ``funding`` is tokens per account, or ``None`` for the seeded auto rule of
    :func:`service.replay.accounts.compute_funding`. ``run_id`` (default: random
    8 hex digits) prefixes every account id and idempotency key; reusing it
    replays idempotently. ``transport`` replaces the network (tests).

    Returns:
        The :class:`ReplaySummary`; its ``ok`` says whether every balance matched
        and no request failed with anything but 201/402.

    Raises:
        ValueError: ``concurrency < 1``, ``speedup < 0`` or ``accounts < 1``.
        FileNotFoundError, TraceFormatError: the trace cannot be read.
    """
    if concurrency < 1:
        msg = f"concurrency must be >= 1, got {concurrency}"
        raise ValueError(msg)
    if speedup < 0:
        msg = f"speedup must be >= 0, got {speedup}"
        raise ValueError(msg)
    rows = read_trace(trace, limit) if isinstance(trace, Path | str) else list(trace)[:limit]
    run_id = run_id or secrets.token_hex(4)
    plan = plan_replay(
        rows,
        run_id=run_id,
        n_accounts=accounts,
        seed=seed,
        column=column,
        funding=funding,
        exponent=exponent,
    )
    summary = ReplaySummary(
        run_id=run_id,
        rows=len(rows),
        skipped=plan.skipped,
        accounts=len(plan.funding),
        funded_tokens=sum(plan.funding.values()),
    )
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(30.0 + check_wait)
    started = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=timeout,
        transport=transport,
    ) as client:
        with _Bar(progress, console) as bar:
            driver = _Driver(client, plan, summary, concurrency, bar)
            await driver.fund()
            await driver.consume(speedup)
            await driver.check(check_wait)
    summary.funding_by_account = driver.funded
    summary.accepted_by_account = driver.accepted
    summary.wall_seconds = time.perf_counter() - started
    return summary


class _Driver:
    """The three phases of one replay, sharing per-account tallies."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        plan: ReplayPlan,
        summary: ReplaySummary,
        concurrency: int,
        bar: _Bar,
    ) -> None:
        self.client = client
        self.plan = plan
        self.summary = summary
        self.concurrency = concurrency
        self.bar = bar
        self.funded: dict[str, int] = dict.fromkeys(plan.funding, 0)
        self.accepted: dict[str, int] = dict.fromkeys(plan.funding, 0)
        self.max_position: dict[str, int] = dict.fromkeys(plan.funding, 0)
        self.latencies: list[float] = []

    def _error(self, label: str) -> None:
        self.summary.errors[label] = self.summary.errors.get(label, 0) + 1

    async def fund(self) -> None:
        task = self.bar.task("funding", len(self.plan.funding))
        run_id = self.plan.run_id

        async def purchase(account: str) -> None:
            answer = await _send(
                self.client,
                "POST",
                f"/v1/accounts/{account}/purchases",
                json={
                    "amount": self.plan.funding[account],
                    "payment_reference": f"replay-{run_id}",
                    "metadata": {"replay": run_id},
                },
                idempotency_key=f"{run_id}-fund",
            )
            self.summary.retries += answer.retries
            if answer.status == 201:
                self.funded[account] = self.plan.funding[account]
                self.max_position[account] = max(self.max_position[account], _position(answer.body))
            else:
                self._error(f"purchase {answer.error_label}")
            self.bar.advance(task)

        await _bounded(list(self.plan.funding), self.concurrency, purchase)

    async def consume(self, speedup: float) -> None:
        plan = self.plan
        order = sorted(range(len(plan.rows)), key=lambda i: (plan.rows[i].t_offset_s, i))
        task = self.bar.task("consumptions", len(order))
        gate = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()

        async def consume_one(i: int) -> None:
            try:
                row, account, amount = plan.rows[i], plan.accounts[i], plan.amounts[i]
                answer = await _send(
                    self.client,
                    "POST",
                    f"/v1/accounts/{account}/consumptions",
                    json={
                        "amount": amount,
                        "model": row.model or row.source,
                        "operation": row.source,
                        "metadata": {"seq": row.seq},
                    },
                    idempotency_key=f"{plan.run_id}-{row.source}-{row.seq}",
                )
                self.summary.retries += answer.retries
                self.latencies.append(answer.seconds)
                if answer.status == 201:
                    self.summary.accepted += 1
                    self.summary.accepted_tokens += amount
                    self.accepted[account] += amount
                    self.max_position[account] = max(
                        self.max_position[account], _position(answer.body)
                    )
                elif answer.status == 402:
                    self.summary.refused += 1
                else:
                    self._error(answer.error_label)
                self.bar.advance(task)
            finally:
                gate.release()

        started = loop.time()
        tasks: set[asyncio.Task[None]] = set()
        for i in order:
            if speedup > 0:
                delay = started + plan.rows[i].t_offset_s / speedup - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await gate.acquire()
            t = asyncio.create_task(consume_one(i))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        self.summary.consume_seconds = loop.time() - started
        ms = [s * 1000.0 for s in self.latencies]
        self.summary.latency_p50_ms = percentile(ms, 50)
        self.summary.latency_p99_ms = percentile(ms, 99)

    async def check(self, wait: int) -> None:
        task = self.bar.task("balance check", len(self.plan.funding))

        async def check_one(account: str) -> None:
            expected_consumed = self.accepted[account]
            expected_available = self.funded[account] - expected_consumed
            params = {"min_position": self.max_position[account], "wait": wait}
            answer = Answer(0, {}, 0.0, 0)
            for _ in range(CHECK_ATTEMPTS):
                answer = await _send(
                    self.client, "GET", f"/v1/accounts/{account}/balance", params=params
                )
                if answer.status != 200 or not answer.body.get("stale"):
                    break
            body = answer.body
            available = body.get("available") if answer.status == 200 else None
            consumed = body.get("consumed") if answer.status == 200 else None
            nothing_expected = expected_available == 0 and expected_consumed == 0
            if (answer.status == 404 and nothing_expected) or (
                answer.status == 200
                and not body.get("stale")
                and available == expected_available
                and consumed == expected_consumed
            ):
                self.summary.balances_ok += 1
            else:
                self.summary.balances_mismatched += 1
                self.summary.mismatches.append(
                    Mismatch(
                        account_id=account,
                        expected_available=expected_available,
                        available=available if isinstance(available, int) else None,
                        expected_consumed=expected_consumed,
                        consumed=consumed if isinstance(consumed, int) else None,
                        stale=bool(body.get("stale")),
                        detail="" if answer.status == 200 else f"HTTP {answer.error_label}",
                    )
                )
            self.bar.advance(task)

        await _bounded(sorted(self.plan.funding), self.concurrency, check_one)


def run_replay(trace: Path | str | Sequence[TraceRow], **options: Any) -> ReplaySummary:
    """Synchronous :func:`replay` (runs its own event loop); same arguments and result.

    Raises:
        RuntimeError: called from a running event loop (use ``await replay(...)``).
    """
    return asyncio.run(replay(trace, **options))
