"""The async driver of ``ledger replay``: fund, consume, check.

1. **Fund**: one purchase per account (``Idempotency-Key: <run_id>-fund``).
2. **Consume**: one consumption per row, in arrival order (``t_offset_s``, divided
   by ``speedup`` when it is > 0), at most ``concurrency`` in flight, over one
   :class:`tokenledger_client.AsyncLedgerClient` (keep-alive connections);
   ``Idempotency-Key: <run_id>-<source>-<seq>``. The client retries transport
   errors, 503 and 409 ``idempotency-key-in-flight`` (bounded): the
   idempotency key makes a retry safe.
3. **Check**: for each account, wait for the projection to reach the highest
   position seen for it (``min_position`` + ``wait``) and compare ``available``
   and ``consumed`` with funding minus the accepted consumptions.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from tokenledger_client import (
    ApiError,
    AsyncLedgerClient,
    InsufficientBalance,
    RetryEvent,
    RetryPolicy,
    TokenLedgerError,
)

from tokenledger_replay.accounts import DEFAULT_EXPONENT, ReplayPlan, plan_replay
from tokenledger_replay.report import Mismatch, ReplaySummary, percentile
from tokenledger_replay.trace import TokenColumn, TraceRow, read_trace

MAX_ATTEMPTS = 5
"""Attempts of one request on transport errors, 503 and 409 in-flight."""
RETRY_BASE_SECONDS = 0.05
RETRY_MAX_SECONDS = 1.0
CHECK_WAIT_SECONDS = 10
CHECK_ATTEMPTS = 3


def _label(error: TokenLedgerError) -> str:
    """``"transport"`` (no answer) or the HTTP status of ``error`` as text."""
    return str(error.status) if isinstance(error, ApiError) else "transport"


def _position(result: Mapping[str, Any]) -> int:
    entry = result.get("entry")
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
    :func:`tokenledger_replay.accounts.compute_funding`. ``run_id`` (default: random
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
    policy = RetryPolicy(
        max_attempts=MAX_ATTEMPTS, backoff=RETRY_BASE_SECONDS, max_backoff=RETRY_MAX_SECONDS
    )

    def count_retry(event: RetryEvent) -> None:
        summary.retries += 1

    started = time.perf_counter()
    async with AsyncLedgerClient(
        url,
        key,
        timeout=httpx.Timeout(30.0),  # a balance read's ``wait`` is added by the client
        retry=policy,
        on_retry=count_retry,
        limits=limits,
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
        client: AsyncLedgerClient,
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
            try:
                result = await self.client.purchase(
                    account,
                    self.plan.funding[account],
                    payment_reference=f"replay-{run_id}",
                    metadata={"replay": run_id},
                    idempotency_key=f"{run_id}-fund",
                )
            except TokenLedgerError as error:
                self._error(f"purchase {_label(error)}")
            else:
                self.funded[account] = self.plan.funding[account]
                self.max_position[account] = max(self.max_position[account], _position(result))
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
                sent = time.perf_counter()
                try:
                    result = await self.client.consume(
                        account,
                        amount,
                        model=row.model or row.source,
                        operation=row.source,
                        metadata={"seq": row.seq},
                        idempotency_key=f"{plan.run_id}-{row.source}-{row.seq}",
                    )
                except InsufficientBalance:
                    self.summary.refused += 1
                except TokenLedgerError as error:
                    self._error(_label(error))
                else:
                    self.summary.accepted += 1
                    self.summary.accepted_tokens += amount
                    self.accepted[account] += amount
                    self.max_position[account] = max(self.max_position[account], _position(result))
                self.latencies.append(time.perf_counter() - sent)
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

    async def _read_balance(self, account: str, wait: int) -> tuple[str, Mapping[str, Any]]:
        """``("200", balance)``, waited for up to ``CHECK_ATTEMPTS`` times while
        stale, or the error's label and ``{}``."""
        body: Mapping[str, Any] = {}
        for _ in range(CHECK_ATTEMPTS):
            try:
                body = await self.client.balance(
                    account, min_position=self.max_position[account], wait=wait
                )
            except TokenLedgerError as error:
                return _label(error), {}
            if not body.get("stale"):
                break
        return "200", body

    async def check(self, wait: int) -> None:
        task = self.bar.task("balance check", len(self.plan.funding))

        async def check_one(account: str) -> None:
            expected_consumed = self.accepted[account]
            expected_available = self.funded[account] - expected_consumed
            status, body = await self._read_balance(account, wait)
            available = body.get("available")
            consumed = body.get("consumed")
            nothing_expected = expected_available == 0 and expected_consumed == 0
            if (status == "404" and nothing_expected) or (
                status == "200"
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
                        detail="" if status == "200" else f"HTTP {status}",
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
