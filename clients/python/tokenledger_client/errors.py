"""Exceptions raised by the clients.

Every answer of the service that is not a success is an :class:`ApiError`
subclass chosen by the problem's ``code`` (else by HTTP ``status``); it
carries the ``status``, the ``code``, the ``detail`` and the whole problem
object, with the code's extra members as attributes (``available`` and
``requested`` of :class:`InsufficientBalance`, ``errors`` of
:class:`ValidationError`, …). A request that never got an answer, after every
retry, is a :class:`ConnectionFailed`. Both derive from
:class:`TokenLedgerError`.

Every error raised by a write carries the write's ``idempotency_key``: sending
the same write again with that key later is safe (it is recorded at most once).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tokenledger_client.types import BatchResult, Problem

__all__ = [
    "AccountNotFound",
    "ApiError",
    "BalanceLimitExceeded",
    "Conflict",
    "ConnectionFailed",
    "EntryNotFound",
    "Forbidden",
    "HoldNotActive",
    "HoldNotFound",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "InsufficientBalance",
    "MalformedRequest",
    "NotFound",
    "PayloadTooLarge",
    "RefundExceedsConsumption",
    "ServerError",
    "TokenLedgerError",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "ValidationError",
    "batch_error",
    "error_from_problem",
    "error_from_response",
]


class TokenLedgerError(Exception):
    """Base of every error the clients raise.

    Attributes:
        idempotency_key: the ``Idempotency-Key`` of the write that failed
            (``None`` for reads); resend the write with it to stay exactly-once.
    """

    idempotency_key: str | None = None


class ConnectionFailed(TokenLedgerError):
    """No answer: every attempt failed in transport (refused, reset, timed
    out). ``attempts`` is how many were made; ``__cause__`` is the last
    ``httpx.TransportError``. A write may or may not have been recorded: send
    it again with ``idempotency_key``."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class ApiError(TokenLedgerError):
    """The service answered with an error (RFC 9457 problem).

    Attributes:
        status: HTTP status (e.g. 402).
        code: the problem's ``code`` (e.g. ``"insufficient-balance"``);
            ``"http-<status>"`` when the body was not a problem.
        detail: the human-readable ``detail`` (may be empty).
        problem: the whole problem object (with its extra members).
        retry_after: the ``Retry-After`` header in seconds (503), else ``None``.
    """

    status: int
    code: str
    codes: ClassVar[tuple[str, ...]] = ()
    """The problem codes this class stands for (empty: matched by status only)."""

    def __init__(
        self, status: int, problem: Mapping[str, Any], *, retry_after: float | None = None
    ) -> None:
        code = problem.get("code")
        self.status = status
        self.code = code if isinstance(code, str) and code else f"http-{status}"
        detail = problem.get("detail")
        self.detail = detail if isinstance(detail, str) else ""
        self.problem: Problem = dict(problem)  # type: ignore[assignment]
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {self.detail}" if self.detail else self.code)

    def extra(self, name: str, default: Any = None) -> Any:
        """The problem member ``name`` (``default`` when absent)."""
        return self.problem.get(name, default)


class MalformedRequest(ApiError):
    """400 ``malformed-request``: the body was not valid JSON."""

    codes = ("malformed-request",)


class Unauthorized(ApiError):
    """401 ``unauthorized``: no, unknown, expired or revoked credentials."""

    codes = ("unauthorized",)


class Forbidden(ApiError):
    """403 ``forbidden``: the credentials lack the scope or the account."""

    codes = ("forbidden",)


class InsufficientBalance(ApiError):
    """402 ``insufficient-balance``: ``available`` tokens (what the account
    could spend, credit limit included) are fewer than ``requested``."""

    codes = ("insufficient-balance",)

    @property
    def available(self) -> int | None:
        """Tokens available when the write was refused."""
        value = self.problem.get("available")
        return value if isinstance(value, int) else None

    @property
    def requested(self) -> int | None:
        """Tokens the write asked for."""
        value = self.problem.get("requested")
        return value if isinstance(value, int) else None


class NotFound(ApiError):
    """404: no such account, hold, entry or resource."""

    codes = ("not-found",)


class AccountNotFound(NotFound):
    """404 ``account-not-found``: the account has no entries."""

    codes = ("account-not-found",)


class HoldNotFound(NotFound):
    """404 ``hold-not-found``: no such hold in the account."""

    codes = ("hold-not-found",)


class EntryNotFound(NotFound):
    """404 ``entry-not-found``: no such entry (or version) in the account."""

    codes = ("entry-not-found",)


class Conflict(ApiError):
    """409: the request conflicts with the ledger's state."""

    codes = ("conflict",)


class HoldNotActive(Conflict):
    """409 ``hold-not-active``: the hold was captured, released or expired."""

    codes = ("hold-not-active",)


class IdempotencyKeyInFlight(Conflict):
    """409 ``idempotency-key-in-flight``: the same key is being processed
    (retried by the clients; raised only when retries run out)."""

    codes = ("idempotency-key-in-flight",)


class RefundExceedsConsumption(Conflict):
    """409 ``refund-exceeds-consumption``: more than what is still unrefunded."""

    codes = ("refund-exceeds-consumption",)


class PayloadTooLarge(ApiError):
    """413 ``payload-too-large``: body over 64 KiB (1 MiB for a batch)."""

    codes = ("payload-too-large",)


class Unprocessable(ApiError):
    """422: the request is well-formed JSON but refused."""


class ValidationError(Unprocessable):
    """422 ``validation-error``; ``errors`` lists ``{"loc", "msg"}`` objects."""

    codes = ("validation-error",)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """What was wrong: ``[{"loc": [...], "msg": "..."}]``."""
        value = self.problem.get("errors")
        return list(value) if isinstance(value, list) else []


class IdempotencyKeyReused(Unprocessable):
    """422 ``idempotency-key-reused``: the key was used for a different request."""

    codes = ("idempotency-key-reused",)


class BalanceLimitExceeded(Unprocessable):
    """422 ``balance-limit-exceeded``: a balance counter (``counter``) would
    pass ``limit`` = 2^53 - 1 tokens."""

    codes = ("balance-limit-exceeded",)

    @property
    def counter(self) -> str | None:
        """The counter that would overflow (e.g. ``"purchased"``)."""
        value = self.problem.get("counter")
        return value if isinstance(value, str) else None


class ServerError(ApiError):
    """5xx other than 503."""


class Unavailable(ServerError):
    """503 ``unavailable``: a backing store is down; ``retry_after`` seconds
    (retried by the clients; raised only when retries run out)."""

    codes = ("unavailable",)


_BY_CODE: dict[str, type[ApiError]] = {
    code: cls
    for cls in (
        MalformedRequest,
        Unauthorized,
        Forbidden,
        InsufficientBalance,
        NotFound,
        AccountNotFound,
        HoldNotFound,
        EntryNotFound,
        Conflict,
        HoldNotActive,
        IdempotencyKeyInFlight,
        RefundExceedsConsumption,
        PayloadTooLarge,
        ValidationError,
        IdempotencyKeyReused,
        BalanceLimitExceeded,
        Unavailable,
    )
    for code in cls.codes
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: MalformedRequest,
    401: Unauthorized,
    402: InsufficientBalance,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    503: Unavailable,
}


def error_from_problem(
    status: int, problem: Mapping[str, Any], *, retry_after: float | None = None
) -> ApiError:
    """The :class:`ApiError` subclass for a problem object: by its ``code``,
    else by ``status`` (any other 5xx: :class:`ServerError`), else
    :class:`ApiError`."""
    code = problem.get("code")
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, problem, retry_after=retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (≥ 0) from delta-seconds or an HTTP date;
    ``None`` when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` of an error ``response`` (its body read): the
    problem+json object, or ``{"status", "detail"}`` made from a body that is
    not one (e.g. a proxy's HTML page)."""
    problem: Any
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"status": response.status_code, "detail": response.text[:200]}
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error_from_problem(response.status_code, problem, retry_after=retry_after)


def batch_error(result: BatchResult) -> ApiError | None:
    """The error of a refused batch operation (``None`` when it succeeded),
    ready to raise: ``if (error := batch_error(r)): raise error``."""
    if 200 <= result["status"] < 300:
        return None
    problem: Mapping[str, Any] = result.get("problem") or {}
    return error_from_problem(result["status"], problem)
