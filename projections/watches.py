"""What a stream watches: one account's changes, or every account's, coalesced.

A :class:`Change` is one bridge message (or one row polled from the balance
table): an account's balance after a projection batch, its balance after each
of its entries, and those entries, with their SSE frames encoded once, on first
use, for every stream that sends them (WHATWG HTML, "Server-sent events").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from sse_starlette import ServerSentEvent

from projections.broker import Message


def encode_frame(event: str, payload: Mapping[str, Any]) -> bytes:
    """One SSE event block (WHATWG HTML, "Server-sent events", section
    "Interpreting an event stream"): ``id: <position>``, ``event:`` and one
    ``data:`` line of compact JSON, ended by a blank line (UTF-8 bytes)."""
    return ServerSentEvent(
        data=json.dumps(payload, separators=(",", ":")),
        event=event,
        id=str(payload["position"]),
        sep="\n",
    ).encode()


class Change:
    """One account's change: its balance after a projected batch (contract
    Balance with ``position``) and the batch's entries (contract Entries in
    version order), or ``entries=None`` when read from the balance table.
    Frames are encoded once, on first use, and shared by every stream."""

    __slots__ = (
        "_entry_frames",
        "_frame",
        "_frames",
        "account_id",
        "balance",
        "balances",
        "entries",
        "position",
    )

    def __init__(
        self,
        balance: dict[str, Any],
        entries: list[dict[str, Any]] | None,
        balances: list[dict[str, Any]] | None = None,
    ) -> None:
        self.balance = balance
        self.entries = entries
        self.balances = balances or [balance]
        """The balance after each entry, when the message has them (``"balances"``)."""
        self.account_id: str = balance["account_id"]
        self.position: int = balance["position"]
        self._frame: bytes | None = None
        self._frames: list[tuple[int, bytes]] | None = None
        self._entry_frames: list[tuple[int, bytes]] | None = None

    @classmethod
    def from_message(cls, message: Message) -> Change:
        """From a ``ledger:account:<id>`` message (``projections.channels``)."""
        return cls(message["balance"], list(message.get("entries") or ()), message.get("balances"))

    @property
    def version(self) -> int:
        """The account's version after the change."""
        return int(self.balance["version"])

    def balance_frame(self) -> bytes:
        """``event: balance`` frame of the balance (encoded once)."""
        if self._frame is None:
            self._frame = encode_frame("balance", self.balance)
        return self._frame

    def balance_frames(self) -> list[tuple[int, bytes]]:
        """``(position, event: balance frame)`` per balance of the batch (the
        final one only unless the message carried ``"balances"``)."""
        if self._frames is None:
            self._frames = [
                (int(balance["position"]), encode_frame("balance", balance))
                for balance in self.balances[:-1]
            ] + [(self.position, self.balance_frame())]
        return self._frames

    def entry_frames(self) -> list[tuple[int, bytes]]:
        """``(version, event: entry frame)`` per entry (encoded once)."""
        if self._entry_frames is None:
            self._entry_frames = [
                (int(entry["version"]), encode_frame("entry", entry))
                for entry in self.entries or ()
            ]
        return self._entry_frames


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Waker:
    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def _ready(self) -> bool:
        raise NotImplementedError

    def _notify(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)

    async def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a change; True if one is pending.
        Costs one future and one timer while waiting, nothing else."""
        if self._ready():
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._ready()


class Watch(_Waker):
    """One stream's pending changes of one account, in arrival (position)
    order. Past ``LIMIT`` pending the oldest is dropped: the latest is kept,
    and entries streams see the version gap and read the store."""

    __slots__ = ("pending",)
    LIMIT = 256

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Change] = []

    def _ready(self) -> bool:
        return bool(self.pending)

    def offer(self, change: Change) -> None:
        """Queues ``change`` (on the loop) and wakes the stream."""
        self.pending.append(change)
        if len(self.pending) > self.LIMIT:
            del self.pending[0]
        self._notify()

    def take(self) -> list[Change]:
        """The pending changes, oldest first; leaves none pending."""
        taken, self.pending = self.pending, []
        return taken


class CoalescingWatch(_Waker):
    """Every account's pending latest change: a newer change of an account
    replaces its pending one, so a slow reader skips intermediate balances
    but never an account's latest (contract v1.1)."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[str, Change] = {}

    def _ready(self) -> bool:
        return bool(self.pending)

    def offer(self, change: Change) -> None:
        """Keeps ``change`` as the account's pending one unless an older
        state; moves the account to the end (position order)."""
        older = self.pending.pop(change.account_id, None)
        if older is not None and older.position > change.position:
            change = older
        self.pending[change.account_id] = change
        self._notify()

    def take(self) -> list[Change]:
        """The pending changes in position order; leaves none pending."""
        taken = list(self.pending.values())
        self.pending.clear()
        return taken
