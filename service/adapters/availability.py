"""Whether PostgreSQL answers: a circuit breaker in front of every blocking
call that needs it (contract v1.1, "Errors": while PostgreSQL is unreachable
every request that needs it is answered 503 ``unavailable`` within 5 seconds,
and service resumes by itself within 5 seconds of its return).

A call runs in a worker thread. When it fails with a store error, or has not
answered after :data:`PATIENCE` seconds, a *probe* (a new connection and
``SELECT 1``, bounded by :data:`PROBE_SECONDS`) decides: PostgreSQL down →
the call is abandoned (its thread finishes on its own) and answered
:class:`Unavailable`; up → the call is simply slow and is waited for. While
down, calls are refused at once, and a probe runs every :data:`RETRY_SECONDS`
until PostgreSQL answers again. Refused connections and black holes (a peer
that accepts and never answers) look the same from here: no answer in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
import psycopg

from service.domain.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

PATIENCE = 2.0
"""Seconds a call may take before a probe checks the database."""
PROBE_SECONDS = 1.5
"""Longest probe (connect and ``SELECT 1``), in seconds."""
RETRY_SECONDS = 0.5
"""Seconds between probes while the database is down."""
RETRY_AFTER = 1
"""``Retry-After`` of the 503 answers, in seconds."""


def store_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the database did not answer" (not a bad request)."""
    from eventsourcing.persistence import InterfaceError, OperationalError
    from psycopg_pool import PoolTimeout

    return (psycopg.OperationalError, PoolTimeout, OperationalError, InterfaceError, OSError)


class DatabaseGuard:
    """The circuit breaker of one process. ``conninfo`` is the PostgreSQL
    connection string for probes; ``None`` (SQLite) makes every check pass."""

    def __init__(self, conninfo: str | None) -> None:
        self.conninfo = conninfo
        self.up = True
        self.down_since: float | None = None
        self._probe: asyncio.Task[bool] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._errors = store_errors()

    def check(self) -> None:
        """Raises :class:`Unavailable` (503) at once while the database is down."""
        if not self.up:
            raise Unavailable("the ledger's database is unavailable; retry later", RETRY_AFTER)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread, answered within about
        ``PATIENCE + PROBE_SECONDS`` seconds when the database is down.

        A store error while the database answers a probe (a pooled connection
        broken by an outage that is over) is retried once, on a fresh
        connection: callers are reads and idempotent lookups.

        Raises :class:`Unavailable` when it is down (before or during the
        call), and whatever ``fn`` raises otherwise."""
        for attempt in (1, 2):
            try:
                return await self._call_once(fn, *args)
            except self._errors as error:
                if self.conninfo is None:
                    raise
                if not await self.probe():
                    raise Unavailable(
                        "the ledger's database is unavailable; retry later", RETRY_AFTER
                    ) from error
                if attempt == 2:
                    raise
                log.info("retrying a call after a store error: %s", type(error).__name__)
        raise AssertionError("unreachable")

    async def _call_once(self, fn: Callable[..., T], *args: Any) -> T:
        self.check()
        task = asyncio.ensure_future(
            anyio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)
        )
        done, _ = await asyncio.wait({task}, timeout=PATIENCE if self.conninfo else None)
        if not done and not await self.probe():
            task.cancel()
            self.check()
        return await task

    async def probe(self) -> bool:
        """Whether PostgreSQL answers now (one probe shared by concurrent
        callers); marks it down, or up again, accordingly."""
        if self.conninfo is None:
            return True
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._check_once())
        return await asyncio.shield(self._probe)

    def failed(self) -> None:
        """Someone saw the database fail: probe now (from the event loop)."""
        if self.conninfo is not None and (self._probe is None or self._probe.done()):
            self._probe = asyncio.ensure_future(self._check_once())

    async def close(self) -> None:
        for task in (self._probe, self._recovery):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _check_once(self) -> bool:
        attempt = asyncio.ensure_future(_select_one(self.conninfo or ""))
        done, _ = await asyncio.wait({attempt}, timeout=PROBE_SECONDS)
        answered = attempt in done and attempt.exception() is None
        if not done:
            attempt.cancel()  # finishes in the background: never waited for
        self._mark(answered)
        return answered

    def _mark(self, answered: bool) -> None:
        if answered and not self.up:
            log.warning("the database answers again; serving")
        if not answered and self.up:
            log.warning("the database does not answer; refusing requests that need it")
            self.down_since = time.monotonic()
            if self._recovery is None or self._recovery.done():
                self._recovery = asyncio.ensure_future(self._recover())
        self.up = answered
        if answered:
            self.down_since = None

    async def _recover(self) -> None:
        while not self.up:
            await asyncio.sleep(RETRY_SECONDS)
            await self.probe()


async def _select_one(conninfo: str) -> None:
    conn = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=2, autocommit=True)
    try:
        await conn.execute("SELECT 1")
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
