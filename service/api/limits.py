"""Request body size limit (contract: bodies over 64 KiB → 413; 1 MiB for
``POST /v1/batch``).

A pure ASGI middleware: a ``Content-Length`` above the limit is refused before
the body is read; a body streamed without one (or longer than it claims) is
counted as it arrives and refused as soon as it passes the limit.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import PROBLEM_JSON, problem, status_of
from service.domain.errors import PayloadTooLarge

MAX_BODY_BYTES = 64 * 1024
BATCH_BODY_BYTES = 1024 * 1024
"""``POST /v1/batch`` takes up to 1 MiB (contract v1.1)."""
PATH_LIMITS = {"/v1/batch": BATCH_BODY_BYTES}


class BodyTooLarge(PayloadTooLarge):
    """Raised from ``receive`` when the streamed body passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request bodies are limited to {limit} bytes")


class BodyLimitMiddleware:
    """Refuses HTTP request bodies longer than ``max_bytes`` with 413."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        path_limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.default_bytes = max_bytes
        self.path_limits = PATH_LIMITS if path_limits is None else path_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope.get("path", ""), self.default_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await _refuse(send, BodyTooLarge(max_bytes))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as error:
            if started:
                raise
            await _refuse(send, error)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, error: PayloadTooLarge) -> None:
    body = json.dumps(problem(error)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status_of(error),
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
