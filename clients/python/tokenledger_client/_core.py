"""What the synchronous and the asynchronous clients share: the retry policy,
idempotency keys, request descriptions, answer parsing and stream resumption."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import httpx

from tokenledger_client import operations as ops
from tokenledger_client.errors import ApiError, error_from_response
from tokenledger_client.types import BatchResult, WriteResult

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Per attempt: 5 s to connect, 10 s for each read, write and pool wait."""
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own default: each open stream holds one of the 100 connections."""
DEFAULT_STREAM_TIMEOUT = 45.0
"""Seconds a stream may stay silent before it is taken for dead and resumed:
three pings of the service's default ``LEDGER_SSE_PING_SECONDS`` (15)."""
MAX_KEY_LENGTH = 255

RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
"""Transport failures worth another attempt (not e.g. an unsupported URL scheme)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a request is retried after a transport error, a retryable status
    (``statuses``: 502, 503, 504) or 409 ``idempotency-key-in-flight``.

    Attributes:
        max_attempts: attempts of one request in all, the first included (≥ 1).
        backoff: seconds before the first retry, doubled before each next one,
            at most ``max_backoff``; each delay is drawn in ``[d/2, d]``
            (jitter, so that many clients do not retry in step).
        max_backoff: the longest computed delay, in seconds.
        max_retry_after: the longest ``Retry-After`` obeyed, in seconds (a
            longer one is cut to this).
        statuses: HTTP statuses that are retried.

    A write is sent with the same ``Idempotency-Key`` on every attempt, so a
    retry never records it twice. Streams reconnect with the same delays,
    counting failures since the last frame received.
    """

    max_attempts: int = 5
    backoff: float = 0.1
    max_backoff: float = 5.0
    max_retry_after: float = 30.0
    statuses: frozenset[int] = field(default=frozenset({502, 503, 504}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            msg = f"max_attempts must be >= 1, got {self.max_attempts}"
            raise ValueError(msg)
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            msg = "backoff, max_backoff and max_retry_after must be >= 0"
            raise ValueError(msg)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1-based):
        the server's ``retry_after`` when given (at most ``max_retry_after``),
        else the jittered exponential backoff."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** max(failures - 1, 0))
        return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 (jitter, not security)

    def retryable(self, error: ApiError) -> bool:
        """Whether an error answer is worth another attempt."""
        return error.status in self.statuses or error.code == "idempotency-key-in-flight"


@dataclass(frozen=True)
class RetryEvent:
    """Told to ``on_retry`` before the client waits ``delay`` seconds and
    tries again (a request's next attempt, or a stream's reconnection).

    ``attempt`` is the number of failures in a row so far (1-based); ``status``
    is the HTTP status of a retryable answer (``None`` for a transport error
    or a stream that ended); ``error`` is the :class:`ApiError` or
    ``httpx.TransportError`` (``None`` when a stream ended by itself).
    """

    method: str
    path: str
    attempt: int
    delay: float
    status: int | None
    error: BaseException | None
    idempotency_key: str | None = None


OnRetry = Callable[[RetryEvent], None]


def new_idempotency_key() -> str:
    """A fresh random ``Idempotency-Key`` (a UUID4, 36 characters)."""
    return str(uuid.uuid4())


def derived_key(key: str, suffix: str) -> str:
    """A key derived from ``key`` for a follow-up write (``"<key>:capture"``),
    hashed when that would pass 255 characters."""
    derived = f"{key}:{suffix}"
    if len(derived) <= MAX_KEY_LENGTH:
        return derived
    return f"{hashlib.sha256(key.encode()).hexdigest()}:{suffix}"


@dataclass(frozen=True)
class Call:
    """One request: ``method`` and ``path`` (under the base URL), JSON body,
    query ``params``, ``Idempotency-Key``, and seconds added to the read
    timeout (a balance read that waits on the server)."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    idempotency_key: str | None = None
    extra_read_seconds: float = 0.0

    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        if not self.extra_read_seconds or base.read is None:
            return base
        return httpx.Timeout(
            connect=base.connect,
            read=base.read + self.extra_read_seconds,
            write=base.write,
            pool=base.pool,
        )


def write_call(operation: ops.Operation) -> Call:
    """The single write of a batch-style ``operation``, with a new key when it has none."""
    path, body, key = ops.single_write(operation)
    return Call("POST", path, json=body, idempotency_key=key or new_idempotency_key())


def credit_limit_call(account_id: str, credit_limit: int, idempotency_key: str | None) -> Call:
    return Call(
        "PATCH",
        f"/v1/accounts/{ops.segment(account_id)}",
        json={"credit_limit": credit_limit},
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


def batch_call(operations: Iterable[Mapping[str, Any]], keys: bool) -> Call:
    """``POST /v1/batch`` of copies of ``operations``; with ``keys``, each one
    without an ``idempotency_key`` gets a new one (the same on every retry)."""
    body = []
    for operation in operations:
        copy = dict(operation)
        if keys and copy.get("idempotency_key") is None:
            copy["idempotency_key"] = new_idempotency_key()
        if "expires_at" in copy and copy["expires_at"] is not None:
            copy["expires_at"] = ops.rfc3339(copy["expires_at"])
        body.append(copy)
    return Call("POST", "/v1/batch", json={"operations": body})


def balance_call(
    account_id: str,
    *,
    min_position: int | None,
    wait: float | None,
    as_of: datetime | str | None,
    as_of_version: int | None,
) -> Call:
    params: dict[str, Any] = {}
    if min_position is not None:
        params["min_position"] = min_position
    if wait is not None:
        params["wait"] = wait
    if as_of is not None:
        params["as_of"] = ops.rfc3339(as_of)
    if as_of_version is not None:
        params["as_of_version"] = as_of_version
    return Call(
        "GET",
        f"/v1/accounts/{ops.segment(account_id)}/balance",
        params=params or None,
        extra_read_seconds=float(wait or 0.0),
    )


def account_path(account_id: str, tail: str) -> str:
    return f"/v1/accounts/{ops.segment(account_id)}/{tail}"


def parse_write(response: httpx.Response) -> WriteResult:
    """A write's answer, marked ``idempotent_replayed`` when the server said so."""
    result = cast(WriteResult, response.json())
    if response.headers.get("idempotent-replayed", "").lower() == "true":
        result["idempotent_replayed"] = True
    return result


def parse_batch(response: httpx.Response) -> list[BatchResult]:
    return cast(list[BatchResult], response.json()["results"])


def check(response: httpx.Response) -> ApiError | None:
    """``None`` for a success (2xx, 304), else the answer's :class:`ApiError`
    (the body must have been read)."""
    if response.status_code < 400:
        return None
    return error_from_response(response)


def transport_retryable(error: Exception) -> bool:
    return isinstance(error, RETRYABLE_TRANSPORT_ERRORS)


def is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.partition(";")[0].strip() == "text/event-stream"


@dataclass
class Resume:
    """Where a stream stands: the position of the last data frame delivered
    (``last_event_id``, sent as ``Last-Event-ID`` on reconnection) and the
    reconnection delay the server asked for (``retry:``, milliseconds).

    :meth:`accept` decides whether a frame is delivered: frames of another
    event type, without data, or at a position at or before one already
    delivered (seen before a disconnection) are skipped.
    """

    event: str
    last_event_id: int | None = None
    retry_ms: int = 3000
    skipped: int = 0
    reconnects: int = 0

    def headers(self) -> dict[str, str]:
        if self.last_event_id is None:
            return {}
        return {"Last-Event-ID": str(self.last_event_id)}

    def accept(self, event: str, data: str, event_id: str, retry: int | None) -> Any | None:
        """The decoded data of a frame to deliver, else ``None`` (and the
        frame's ``retry`` remembered)."""
        if retry is not None:
            self.retry_ms = retry
        if event != self.event or not data:
            return None
        text = event_id.strip()
        if text.isdigit():
            position = int(text)
            if self.last_event_id is not None and position <= self.last_event_id:
                self.skipped += 1
                return None
            self.last_event_id = position
        return json.loads(data)

    def reconnect_delay(
        self, policy: RetryPolicy, failures: int, retry_after: float | None
    ) -> float:
        """Seconds before the next connection: the policy's delay, at most the
        server's ``retry:`` unless the server sent ``Retry-After``."""
        delay = policy.delay(failures, retry_after)
        if retry_after is None:
            delay = min(delay, self.retry_ms / 1000)
        return delay
