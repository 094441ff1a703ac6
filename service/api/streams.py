"""Server-Sent Events streams of balances and entries (WHATWG HTML, "Server-sent
events"; contract v1 "Streams").

Each stream subscribes to the bridge first, then reads its starting state, and
sends only what is newer than what it already sent (by position), so a change
racing the connection is neither lost nor sent twice. When no message arrives
for a while (or the bridge is down) the stream reads the store itself, so it
keeps delivering without the bridge and catches up when it returns. Frames carry
``id: <position>``; clients resume with ``Last-Event-ID`` (or ``?last_event_id=``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from projections.channels import ALL_BALANCES, balance_channel, entries_channel
from service.api.deps import AccountReader, Auditor, RuntimeDep
from service.application.reads import rendered_entries
from service.application.rendering import render_balance
from service.domain.errors import ValidationFailed
from service.domain.values import Balance, account_uuid, is_valid_account_id
from service.runtime import Runtime

router = APIRouter(tags=["streams"])

RETRY_MS = 3000
BATCH = 500
LastEventId = Annotated[int | None, Query(ge=0, description="Resume after this position")]


def _resume_from(request: Request, last_event_id: int | None) -> int | None:
    header = request.headers.get("last-event-id")
    if header is None or header.strip() == "":
        return last_event_id
    try:
        value = int(header)
    except ValueError:
        raise ValidationFailed.at(["header", "Last-Event-ID"], "must be a position") from None
    if value < 0:
        raise ValidationFailed.at(["header", "Last-Event-ID"], "must be a position")
    return value


def _check_account(account_id: str) -> None:
    if not is_valid_account_id(account_id):
        raise ValidationFailed.at(["path", "account_id"], "invalid account id")


def _frame(event: str, payload: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(payload, separators=(",", ":")),
        event=event,
        id=str(payload["position"]),
        sep="\n",
    )


def _response(runtime: Runtime, frames: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(
        frames,
        ping=runtime.settings.sse_ping_seconds,
        sep="\n",
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _poll_timeout(runtime: Runtime) -> float:
    return 5.0 if runtime.broker.healthy else 1.0


@router.get("/v1/accounts/{account_id}/balance/stream", summary="Stream an account's balance")
async def balance_stream(
    account_id: str,
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
    return _response(runtime, _balance_frames(runtime, account_id, resume))


async def _balance_frames(
    runtime: Runtime, account_id: str, resume: int | None
) -> AsyncIterator[ServerSentEvent]:
    async with runtime.broker.subscribe(balance_channel(account_id)) as subscription:
        yield ServerSentEvent(retry=RETRY_MS, sep="\n")
        row = await run_in_threadpool(runtime.balances.get_balance, account_id)
        snapshot = row or render_balance(Balance(account_id), 0)
        sent = -1 if resume is None else resume
        if resume is None or snapshot["position"] > sent:
            yield _frame("balance", snapshot)
            sent = snapshot["position"]
        while True:
            message = await subscription.get(_poll_timeout(runtime))
            if message is None:
                message = await run_in_threadpool(runtime.balances.get_balance, account_id)
            if message is not None and message["position"] > sent:
                yield _frame("balance", message)
                sent = message["position"]


@router.get("/v1/accounts/{account_id}/entries/stream", summary="Stream an account's entries")
async def entries_stream(
    account_id: str,
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
    return _response(runtime, _entry_frames(runtime, account_id, resume))


async def _entry_frames(
    runtime: Runtime, account_id: str, resume: int | None
) -> AsyncIterator[ServerSentEvent]:
    ledger = runtime.ledger
    recorder = ledger.ledger_recorder
    originator = account_uuid(account_id)
    async with runtime.broker.subscribe(entries_channel(account_id)) as subscription:
        if resume is None:
            version = (await run_in_threadpool(ledger.load_or_open, account_id)).version
        else:
            version = await run_in_threadpool(recorder.version_at_position, originator, resume)
        yield ServerSentEvent(retry=RETRY_MS, sep="\n")  # first frame: subscribed from here
        while True:
            notifications = await run_in_threadpool(
                recorder.select_entries, originator, version, BATCH
            )
            entries, _ = rendered_entries(ledger, notifications, BATCH)
            for entry in entries:
                yield _frame("entry", entry)
                version = entry["version"]
            if len(notifications) == BATCH:
                continue
            message = await subscription.get(_poll_timeout(runtime))
            while message is not None and message["version"] == version + 1:
                yield _frame("entry", message)
                version += 1
                message = None if subscription.queue.empty() else subscription.queue.get_nowait()


@router.get("/v1/balances/stream", summary="Stream every account's balance (audit)")
async def all_balances_stream(
    request: Request, principal: Auditor, runtime: RuntimeDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """``event: balance`` frames for every account, in position order; with a
    Last-Event-ID, first each account's latest balance changed after it."""
    resume = _resume_from(request, last_event_id)
    return _response(runtime, _all_balance_frames(runtime, resume))


async def _all_balance_frames(
    runtime: Runtime, resume: int | None
) -> AsyncIterator[ServerSentEvent]:
    async with runtime.broker.subscribe(ALL_BALANCES) as subscription:
        sent = resume
        if sent is None:
            sent = await run_in_threadpool(runtime.balances.position)
        yield ServerSentEvent(retry=RETRY_MS, sep="\n")  # first frame: subscribed from here
        catch_up = resume is not None
        while True:
            if catch_up:
                rows = await run_in_threadpool(runtime.balances.balances_after, sent, BATCH)
                for row in rows:
                    yield _frame("balance", row)
                    sent = row["position"]
                if len(rows) == BATCH:
                    continue
            message = await subscription.get(_poll_timeout(runtime))
            catch_up = message is None
            if message is not None and message["position"] > sent:
                yield _frame("balance", message)
                sent = message["position"]
