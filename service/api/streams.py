"""Server-Sent Events routes of balances and entries (WHATWG HTML, "Server-sent
events"; contract v1.1 "Streams"): credentials, ``Last-Event-ID`` and the
response; the frames come from :class:`~service.application.feeds.LiveFeeds`.

Clients resume with ``Last-Event-ID`` (or ``?last_event_id=``). A stream is
refused with 503 before it starts when the database does not answer or this
process already holds ``LEDGER_MAX_STREAMS`` streams.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.types import Message, Send

from service.api.auth import Principal
from service.api.deps import AccountIdPath, AccountReader, Auditor, RuntimeDep
from service.api.schemas import MAX_POSITION, problems, sse_responses
from service.domain.errors import Unavailable, ValidationFailed
from service.domain.values import is_valid_account_id
from service.runtime import Runtime

router = APIRouter(tags=["streams"])

LastEventId = Annotated[
    int | None, Query(ge=0, le=MAX_POSITION, description="Resume after this position")
]

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


class _EventStream(EventSourceResponse):
    """sse-starlette's response without a per-frame cancel scope: no send
    timeout is set, and ``anyio.move_on_after(None)`` around every frame and
    ping was the largest part of an idle stream's cost."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is not None:
            await super()._send_with_timeout(send, message)
        else:
            await send(message)


def _response(runtime: Runtime, frames: AsyncIterator[bytes]) -> EventSourceResponse:
    """The SSE response of ``frames``.

    Raises:
        Unavailable: this process already holds ``LEDGER_MAX_STREAMS`` open
            streams (503, ``Retry-After``).
    """
    if runtime.feeds.open_streams >= runtime.settings.max_streams:
        raise Unavailable("too many open streams in this process; retry later", retry_after=5)
    # ping=0: sse-starlette starts no ping task; the generators ping themselves.
    return _EventStream(
        runtime.feeds.counted(frames),
        ping=0,
        sep="\n",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


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
    await runtime.queries.store_answers()
    return _response(runtime, runtime.feeds.balance(account_id, resume, still_valid))


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
    await runtime.queries.store_answers()
    return _response(runtime, runtime.feeds.entries(account_id, resume, still_valid))


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
    await runtime.queries.store_answers()
    return _response(
        runtime, runtime.feeds.all_balances(resume, credential_check(runtime, principal))
    )
