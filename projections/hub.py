"""The per-process stream hub: one bridge listener feeding every open stream.

The hub registers ONE prefix listener on the broker (which itself holds the
process's one Redis subscription). Each ``ledger:account:<id>`` message becomes
one :class:`Change`, handed to the :class:`Watch` of every stream watching that
account and to every all-accounts watch; its SSE frames are encoded once, on
first use, and shared by all of them. ``ledger:position`` messages advance
:attr:`StreamHub.position` and wake :meth:`StreamHub.wait_for_position`.

Idle streams cost no queries. The hub alone reads the balance table: every
``POLL_SECONDS`` while the bridge is down, once after it (re)connects or lost a
publish (Redis pub/sub does not keep messages), and every ``SAFETY_SECONDS``
otherwise (one query when nothing changed). A poll dispatches each account
changed since the hub's checkpoint as a balance-only :class:`Change`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio.to_thread

from projections.balances import BalanceView
from projections.broker import Broker, Message
from projections.channels import ACCOUNT_PREFIX, POSITIONS, PREFIX
from projections.latest import LatestBalances
from projections.watches import Change, CoalescingWatch, Watch

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""Polling interval of the balance table while the bridge is down."""
SAFETY_SECONDS = 10.0
"""Interval of the safety poll while the bridge is healthy."""
CONFIRM_SECONDS = 0.05
"""Re-check interval of a position the bridge announced but the table lacks."""
POLL_LIMIT = 1000
"""Rows per ``balances_after`` page."""
QUERY_SECONDS = 2.0
"""Longest wait for one poll of the balance table, in seconds."""


class StreamHub:
    """Per process: follows the bridge, fans changes out to streams.

    ``position`` is the highest projection position known (from the bridge or
    the balance table); :meth:`wait_for_position` waits for it.
    """

    def __init__(self, broker: Broker, view: BalanceView, ledger: Any) -> None:
        self.broker = broker
        self.view = view
        self.ledger = ledger
        self.position = 0
        self.queries = 0
        """Store queries made by the hub (for tests and metrics)."""
        self._checkpoint = 0  # polls read above it (advanced by polls only)
        self._synced_epoch = -1  # broker epoch of the last poll
        self._polling_from: int | None = None  # checkpoint of the poll in flight
        self._watches: dict[str, set[Watch]] = {}
        self._all: set[CoalescingWatch] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._remove: Any = None
        self.open_streams = 0
        """Streams this process serves now (``service.api.streams`` counts them)."""
        self.latest = LatestBalances(broker)
        """Every account's latest balance heard on the bridge (balance reads)."""

    async def start(self) -> None:
        """Registers the bridge listener and starts the poller (on the loop)."""
        self._remove = self.broker.add_prefix_listener(f"{PREFIX}:", self._on_message)
        self.position = self._checkpoint = await self._query(self.view.position)
        self._synced_epoch = self.broker.epoch if self.broker.healthy else -1
        self._task = asyncio.create_task(self._poll_forever(), name="stream-hub-poller")

    async def close(self) -> None:
        if self._remove is not None:
            self._remove()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # -- streams -------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self, account_id: str) -> Iterator[Watch]:
        """Changes of one account, from now until the block ends."""
        watch = Watch()
        self._watches.setdefault(account_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(account_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[account_id]

    @contextlib.contextmanager
    def watch_all(self) -> Iterator[CoalescingWatch]:
        """Every account's changes, coalesced per account, until the block ends."""
        watch = CoalescingWatch()
        self._all.add(watch)
        try:
            yield watch
        finally:
            self._all.discard(watch)

    def dispatch(self, change: Change) -> None:
        """Hands ``change`` to every stream watching its account (on the loop)."""
        self.latest.heard(change.balance)
        for watch in tuple(self._watches.get(change.account_id, ())):
            watch.offer(change)
        for every in tuple(self._all):
            every.offer(change)

    @property
    def floor(self) -> int:
        """No change at or below this position will be dispatched any more
        unless newer than what the bridge sent (polls read above it)."""
        if self._polling_from is None:
            return self._checkpoint
        return min(self._polling_from, self._checkpoint)

    # -- positions -------------------------------------------------------------

    async def wait_for_position(self, position: int, timeout: float) -> bool:
        """True once the balance table has applied ``position`` (waits up to
        ``timeout`` seconds; ``False`` when it was not reached).

        The bridge's ``ledger:position`` messages are trusted (the projection
        publishes them after its commit, on this deployment's channels), so a
        position already announced costs no query; otherwise the table is
        asked, then each announcement wakes the wait, and while the bridge is
        down the table is asked again every ``CONFIRM_SECONDS``."""
        if self.position >= position:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._advance(int(await self._query(self.view.position)))
            remaining = deadline - loop.time()
            if self.position >= position or remaining <= 0:
                return self.position >= position
            if not self.broker.healthy:  # no announcements: ask again soon
                await asyncio.sleep(min(remaining, CONFIRM_SECONDS))
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (position, waiter)
            self._waiters.append(entry)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            if self.position >= position:
                return True

    def _advance(self, position: int) -> None:
        if position <= self.position:
            return
        self.position = position
        if self._waiters:
            for wanted, waiter in self._waiters:
                if wanted <= position and not waiter.done():
                    waiter.set_result(None)

    # -- the bridge -------------------------------------------------------------

    def _on_message(self, channel: str, message: Message) -> None:
        if channel == POSITIONS:
            self._advance(int(message["position"]))
        elif channel.startswith(ACCOUNT_PREFIX):
            self.dispatch(Change.from_message(message))

    # -- polling ---------------------------------------------------------------

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            healthy = self.broker.healthy
            await asyncio.sleep(POLL_SECONDS if not healthy else 0.25)
            now = loop.time()
            lost = self.broker.epoch != self._synced_epoch
            if not healthy or lost or now - last >= SAFETY_SECONDS:
                last = now
                try:
                    await self.poll()
                except Exception as error:  # store down: retry next interval
                    log.warning("stream hub poll failed: %s", error)

    async def poll(self) -> int:
        """Reads every account changed since the checkpoint from the balance
        table and dispatches it; returns how many were dispatched."""
        epoch, healthy = self.broker.epoch, self.broker.healthy
        after = self._polling_from = self._checkpoint
        rows: list[dict[str, Any]] = []
        try:
            reached = await self._query(self.view.position)
            while reached > after:
                page = await self._query(self.view.balances_after, after, POLL_LIMIT)
                rows.extend(page)
                if len(page) < POLL_LIMIT:
                    break
                after = page[-1]["position"]
        finally:
            self._polling_from = None
        for row in rows:  # all pages at once: position order across the poll
            self.dispatch(Change(row, None))
        top = max([reached, *(row["position"] for row in rows)])
        self._checkpoint = max(self._checkpoint, top)
        self._synced_epoch = epoch if healthy else -1
        self._advance(top)
        return len(rows)

    async def _query(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in a worker thread, given up after
        ``QUERY_SECONDS`` (the thread is abandoned: a database that never
        answers must not stall every stream's poll)."""
        self.queries += 1
        call = partial(function, *args)
        return await asyncio.wait_for(
            anyio.to_thread.run_sync(call, abandon_on_cancel=True), QUERY_SECONDS
        )
