"""Server-Sent Events streams of balances and entries (WHATWG HTML, "Server-sent
events"; contract v1.1 "Streams").

Every stream registers a watch with the process's :class:`~projections.hub.
StreamHub` first, then reads its starting state, and sends only what is newer
than what it already sent (by position, or by version for entries), so a change
racing the connection is neither lost nor sent twice. An idle stream costs no
store query: the hub alone follows the bridge and, while it is down, polls the
balance table once per process. Frames carry ``id: <position>``; clients
resume with ``Last-Event-ID`` (or ``?last_event_id=``). The first frame is
``retry: 3000`` (milliseconds); a ``: ping`` comment follows every
``LEDGER_SSE_PING_SECONDS`` seconds, sent by the frame generator itself (no
extra task per stream), which is also where ``still_valid`` can end a stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Send

from projections.watches import Change, CoalescingWatch, Watch, encode_frame
from service.api.auth import Principal
from service.api.deps import AccountIdPath, AccountReader, Auditor, RuntimeDep
from service.api.schemas import MAX_POSITION, problems, sse_responses
from service.application.reads import rendered_entries
from service.application.rendering import render_balance
from service.domain.errors import Unavailable, ValidationFailed
from service.domain.values import Balance, account_uuid, is_valid_account_id
from service.runtime import Runtime

router = APIRouter(tags=["streams"])

RETRY_MS = 3000
RETRY = ServerSentEvent(retry=RETRY_MS, sep="\n").encode()
PING = ServerSentEvent(comment="ping", sep="\n").encode()
BATCH = 500
LAST = 2**62
"""A position after every stored one (``version_at_position``: the latest)."""
LastEventId = Annotated[
    int | None, Query(ge=0, le=MAX_POSITION, description="Resume after this position")
]
StillValid = Callable[[], bool] | None
"""Checked at every ping: ``False`` ends the stream (expired/revoked credentials)."""

STREAM_ERRORS = problems(
    401,
    403,
    422,
    503,
    notes={
        422: "`validation-error`: a bad account id, `last_event_id` or `Last-Event-ID`",
        503: "`unavailable`: this process holds `LEDGER_MAX_STREAMS` open streams, or a"
        " store is down",
    },
)
"""What a stream can answer instead of starting."""


def _stream_doc(event: str, data_schema: str) -> dict[str, Any]:
    """Route arguments documenting a stream: its ``text/event-stream`` frames
    (``Response``: no ``application/json`` body is added), its errors and the
    ``Last-Event-ID`` header (a position, like ``last_event_id``)."""
    last_event_id = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Resume after this position (SSE reconnection)",
        "schema": {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_POSITION},
                {"type": "string", "maxLength": 0, "description": "Empty: as if absent"},
            ]
        },
    }
    return {
        "response_class": Response,
        "responses": {**sse_responses(event, data_schema), **STREAM_ERRORS},
        "openapi_extra": {"parameters": [last_event_id]},
    }


def _resume_from(request: Request, last_event_id: int | None) -> int | None:
    """The position to resume after: the ``Last-Event-ID`` header (decimal
    digits; empty is as if absent, as a browser that saw no id would send),
    else ``?last_event_id=``, else ``None``.

    Raises:
        ValidationFailed: the header is not a position 0..2^63-1 (422); ``int``
            alone would take ``+5``, ``1_0`` or non-ASCII digits.
    """
    header = request.headers.get("last-event-id")
    if header is None or header.strip() == "":
        return last_event_id
    text = header.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValidationFailed.at(["header", "Last-Event-ID"], "must be a position")
    value = int(text)
    if value > MAX_POSITION:
        raise ValidationFailed.at(["header", "Last-Event-ID"], "must be a position (0..2^63-1)")
    return value


def credential_check(runtime: Runtime, principal: Principal) -> Callable[[], bool]:
    """What a stream asks at each ping (contract v1.1: a stream ends within one
    ping interval of its credential expiring or being revoked): the stream
    token has not expired, and the API key behind it (or used directly) has
    not been revoked here or, as the bridge told, elsewhere."""
    revoked, name, expires = runtime.key_cache.revoked, principal.name, principal.expires

    def still_valid() -> bool:
        if expires is not None and time.time() >= expires:
            return False
        return name not in revoked

    return still_valid


def _check_account(account_id: str) -> None:
    if not is_valid_account_id(account_id):
        raise ValidationFailed.at(["path", "account_id"], "invalid account id")


async def _counted(runtime: Runtime, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``frames``, counted among the hub's open streams while they run."""
    runtime.hub.open_streams += 1
    try:
        async for frame in frames:
            yield frame
    finally:
        runtime.hub.open_streams -= 1
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:  # end the stream's watch now, not at collection
            await aclose()


class _EventStream(EventSourceResponse):
    """sse-starlette's response without a per-frame cancel scope: no send
    timeout is set, and ``anyio.move_on_after(None)`` around every frame and
    ping was the largest part of an idle stream's cost."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is not None:
            await super()._send_with_timeout(send, message)
        else:
            await send(message)


async def _store_answers(runtime: Runtime) -> None:
    """Before a stream starts (while a 503 can still be answered): raises
    :class:`Unavailable` within 5 s when the database does not answer (one
    read of the projection's position; contract v1.1, "Errors")."""
    await runtime.guard.call(runtime.balances.position)


def _response(runtime: Runtime, frames: AsyncIterator[bytes]) -> EventSourceResponse:
    """The SSE response of ``frames``.

    Raises:
        Unavailable: this process already holds ``LEDGER_MAX_STREAMS`` open
            streams (503, ``Retry-After``).
    """
    if runtime.hub.open_streams >= runtime.settings.max_streams:
        raise Unavailable("too many open streams in this process; retry later", retry_after=5)
    # ping=0: sse-starlette starts no ping task; the generators ping themselves.
    return _EventStream(
        _counted(runtime, frames),
        ping=0,
        sep="\n",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


class _Pulse:
    """Wakes a stream when changes are pending (returns them) or when a ping
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


@router.get(
    "/v1/accounts/{account_id}/balance/stream",
    summary="Stream an account's balance",
    **_stream_doc("balance", "BalancePublic"),
)
async def balance_stream(
    account_id: AccountIdPath,
    request: Request,
    principal: AccountReader,
    runtime: RuntimeDep,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """``event: balance`` frames: the current balance first (zeros at version 0
    for an account without entries) unless resuming at the current position,
    then every change in position order."""
    _check_account(account_id)
    resume = _resume_from(request, last_event_id)
    still_valid = credential_check(runtime, principal)
    await _store_answers(runtime)
    return _response(runtime, balance_frames(runtime, account_id, resume, still_valid))


async def balance_frames(
    runtime: Runtime, account_id: str, resume: int | None, still_valid: StillValid = None
) -> AsyncIterator[bytes]:
    """The frames of one account's balance stream (bytes, UTF-8)."""
    with runtime.hub.watch(account_id) as watch:
        pulse = _Pulse(watch, runtime.settings.sse_ping_seconds, still_valid)
        yield RETRY
        row = await runtime.guard.call(runtime.balances.get_balance, account_id)
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


@router.get(
    "/v1/accounts/{account_id}/entries/stream",
    summary="Stream an account's entries",
    **_stream_doc("entry", "EntryPublic"),
)
async def entries_stream(
    account_id: AccountIdPath,
    request: Request,
    principal: AccountReader,
    runtime: RuntimeDep,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """``event: entry`` frames. With a Last-Event-ID (``?last_event_id=0`` for
    all history) every entry after it is replayed from the ledger, then live
    ones follow, none missing, none twice; without one, live entries only."""
    _check_account(account_id)
    resume = _resume_from(request, last_event_id)
    still_valid = credential_check(runtime, principal)
    await _store_answers(runtime)
    return _response(runtime, entry_frames(runtime, account_id, resume, still_valid))


async def entry_frames(
    runtime: Runtime, account_id: str, resume: int | None, still_valid: StillValid = None
) -> AsyncIterator[bytes]:
    """The frames of one account's entries stream. Entries come from the
    bridge while their versions follow on; on a gap (dropped or lost message,
    or a balance-only change polled from the table) from the ledger store."""
    ledger = runtime.ledger
    recorder = ledger.ledger_recorder
    originator = account_uuid(account_id)
    with runtime.hub.watch(account_id) as watch:
        pulse = _Pulse(watch, runtime.settings.sse_ping_seconds, still_valid)
        at = LAST if resume is None else resume
        version = await runtime.guard.call(recorder.version_at_position, originator, at)
        yield RETRY  # watching from here: live entries follow
        read_store = resume is not None
        while True:
            while read_store:
                notifications = await runtime.guard.call(
                    recorder.select_entries, originator, version, BATCH
                )
                entries, _ = rendered_entries(ledger, notifications, BATCH)
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


@router.get(
    "/v1/balances/stream",
    summary="Stream every account's balance (audit)",
    **_stream_doc("balance", "BalancePublic"),
)
async def all_balances_stream(
    request: Request, principal: Auditor, runtime: RuntimeDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """``event: balance`` frames for every account, in position order; with a
    Last-Event-ID, first each account's latest balance changed after it. A slow
    reader skips intermediate balances, never an account's latest."""
    resume = _resume_from(request, last_event_id)
    await _store_answers(runtime)
    return _response(
        runtime, all_balance_frames(runtime, resume, credential_check(runtime, principal))
    )


async def all_balance_frames(
    runtime: Runtime, resume: int | None, still_valid: StillValid = None
) -> AsyncIterator[bytes]:
    """The frames of the all-accounts stream. ``sent`` remembers each
    account's last sent position (pruned below the hub's poll floor, under
    which no older state can arrive any more)."""
    hub = runtime.hub
    with hub.watch_all() as watch:
        pulse = _Pulse(watch, runtime.settings.sse_ping_seconds, still_valid)
        yield RETRY  # watching from here: live balances follow
        sent: dict[str, int] = {}
        after = resume
        while after is not None:
            rows = await runtime.guard.call(runtime.balances.balances_after, after, BATCH)
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
