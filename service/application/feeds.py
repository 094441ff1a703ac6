"""Live feeds of balances and entries: the frames of the Server-Sent Events
streams (WHATWG HTML, "Server-sent events"; contract v1.1 "Streams").

Every feed registers a watch with the process's :class:`~projections.hub.
StreamHub` first, then reads its starting state, and yields only what is newer
than what it already yielded (by position, or by version for entries), so a
change racing the connection is neither lost nor sent twice. An idle feed costs
no store query: the hub alone follows the bridge and, while it is down, polls
the balance table once per process. Frames carry ``id: <position>``; the first
is ``retry: 3000`` (milliseconds); a ``: ping`` comment follows every
``ping_seconds``, yielded by the feed itself (no extra task per stream), which
is also where ``still_valid`` ends a feed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from sse_starlette import ServerSentEvent

from projections.balances import BalanceView
from projections.hub import StreamHub
from projections.watches import Change, CoalescingWatch, Watch, encode_frame
from service.adapters.availability import DatabaseGuard
from service.application.ledger import Ledger
from service.application.reads import rendered_entries
from service.domain.published import render_balance
from service.domain.values import Balance, account_uuid

RETRY_MS = 3000
RETRY = ServerSentEvent(retry=RETRY_MS, sep="\n").encode()
PING = ServerSentEvent(comment="ping", sep="\n").encode()
BATCH = 500
"""Entries or balances read from the store per query."""
LAST = 2**62
"""A position after every stored one (``version_at_position``: the latest)."""
StillValid = Callable[[], bool] | None
"""Checked at every ping: ``False`` ends the feed (expired/revoked credentials)."""


class _Pulse:
    """Wakes a feed when changes are pending (returns them) or when a ping
    is due (returns ``None``: pings every ``seconds``, however busy)."""

    __slots__ = ("_next_ping", "seconds", "still_valid", "watch")

    def __init__(self, watch: Watch | CoalescingWatch, seconds: float, still_valid: StillValid):
        self.watch, self.seconds, self.still_valid = watch, seconds, still_valid
        self._next_ping = asyncio.get_running_loop().time() + seconds

    async def next(self) -> list[Change] | None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if now >= self._next_ping:
                self._next_ping = max(self._next_ping + self.seconds, now + self.seconds / 2)
                return None
            if await self.watch.wait(self._next_ping - now):
                return self.watch.take()

    def valid(self) -> bool:
        return self.still_valid is None or self.still_valid()


class LiveFeeds:
    """The frames (UTF-8 bytes) of the balance, entries and all-balances streams."""

    def __init__(
        self,
        ledger: Ledger,
        balances: BalanceView,
        hub: StreamHub,
        guard: DatabaseGuard,
        ping_seconds: float,
    ) -> None:
        self.ledger, self.balances, self.hub = ledger, balances, hub
        self.guard, self.ping_seconds = guard, ping_seconds

    @property
    def open_streams(self) -> int:
        """Feeds running in this process."""
        return self.hub.open_streams

    async def counted(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``frames``, counted among the open streams while they run."""
        self.hub.open_streams += 1
        try:
            async for frame in frames:
                yield frame
        finally:
            self.hub.open_streams -= 1
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:  # end the feed's watch now, not at collection
                await aclose()

    async def balance(
        self, account_id: str, resume: int | None, still_valid: StillValid = None
    ) -> AsyncIterator[bytes]:
        """``event: balance`` frames of one account: its current balance first
        (zeros at version 0 without entries) unless resuming at its position,
        then every change in position order."""
        with self.hub.watch(account_id) as watch:
            pulse = _Pulse(watch, self.ping_seconds, still_valid)
            yield RETRY
            row = await self.guard.call(self.balances.get_balance, account_id)
            snapshot = row or render_balance(Balance(account_id), 0)
            sent = -1 if resume is None else resume
            if resume is None or snapshot["position"] > sent:
                yield encode_frame("balance", snapshot)
                sent = snapshot["position"]
            while True:
                changes = await pulse.next()
                if changes is None:
                    if not pulse.valid():
                        return
                    yield PING
                    continue
                for change in changes:
                    for position, frame in change.balance_frames():
                        if position > sent:
                            yield frame
                            sent = position

    async def entries(
        self, account_id: str, resume: int | None, still_valid: StillValid = None
    ) -> AsyncIterator[bytes]:
        """``event: entry`` frames of one account. After ``resume`` (a
        position) every entry is replayed from the store, then live ones
        follow, none missing, none twice; without it, live entries only.
        Entries come from the bridge while their versions follow on; on a gap
        (a dropped or lost message, or a balance-only change polled from the
        table) from the store."""
        recorder = self.ledger.ledger_recorder
        originator = account_uuid(account_id)
        with self.hub.watch(account_id) as watch:
            pulse = _Pulse(watch, self.ping_seconds, still_valid)
            at = LAST if resume is None else resume
            version = await self.guard.call(recorder.version_at_position, originator, at)
            yield RETRY  # watching from here: live entries follow
            read_store = resume is not None
            while True:
                while read_store:
                    notifications = await self.guard.call(
                        recorder.select_entries, originator, version, BATCH
                    )
                    entries, _ = rendered_entries(self.ledger, notifications, BATCH)
                    for entry in entries:
                        yield encode_frame("entry", entry)
                        version = entry["version"]
                    read_store = len(notifications) == BATCH
                changes = await pulse.next()
                if changes is None:
                    if not pulse.valid():
                        return
                    yield PING
                    continue
                for change in changes:
                    for entry_version, frame in change.entry_frames():
                        if entry_version == version + 1:
                            yield frame
                            version = entry_version
                    if change.version > version:  # a gap: the store has them all
                        read_store = True
                        break

    async def all_balances(
        self, resume: int | None, still_valid: StillValid = None
    ) -> AsyncIterator[bytes]:
        """``event: balance`` frames of every account in position order; after
        ``resume``, first each account's latest balance changed after it. A slow
        reader skips intermediate balances, never an account's latest.
        ``sent`` remembers each account's last sent position (pruned below the
        hub's poll floor, under which no older state can arrive any more)."""
        hub = self.hub
        with hub.watch_all() as watch:
            pulse = _Pulse(watch, self.ping_seconds, still_valid)
            yield RETRY  # watching from here: live balances follow
            sent: dict[str, int] = {}
            after = resume
            while after is not None:
                rows = await self.guard.call(self.balances.balances_after, after, BATCH)
                for row in rows:
                    yield encode_frame("balance", row)
                    sent[row["account_id"]] = row["position"]
                after = rows[-1]["position"] if len(rows) == BATCH else None
            while True:
                changes = await pulse.next()
                if changes is None:
                    if not pulse.valid():
                        return
                    floor = hub.floor
                    sent = {account: at for account, at in sent.items() if at > floor}
                    yield PING
                    continue
                for change in changes:
                    if change.position > sent.get(change.account_id, -1):
                        yield change.balance_frame()
                        sent[change.account_id] = change.position
