"""The one error family of the ledger.

Every error the service can answer with is a :class:`LedgerError` subclass that
carries its HTTP status and its problem ``code``; one handler in ``service.api``
renders them as RFC 9457 ``application/problem+json``. The codes are those of
``API.md`` (contract v1).
"""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """Base of every error the ledger reports to a client.

    Attributes:
        status: HTTP status code of the problem (RFC 9457 ``status``).
        code: stable machine-readable code, also the last segment of ``type``.
        title: short human-readable summary of the problem class.
        detail: human-readable explanation of this occurrence.
        extra: additional members of the problem object (e.g. ``available``).
        headers: extra response headers (e.g. ``Retry-After``).
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str = "",
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra: dict[str, Any] = extra or {}
        self.headers: dict[str, str] = headers or {}

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem object: ``type``, ``title``, ``status``,
        ``detail``, ``code`` and the extra members."""
        return {
            "type": f"/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


class MalformedRequest(LedgerError):
    status, code, title = 400, "malformed-request", "Malformed request"


class Unauthorized(LedgerError):
    status, code, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str = "Missing or unknown credentials") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(LedgerError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(LedgerError):
    status, code, title = 404, "not-found", "Not found"


class AccountNotFound(NotFound):
    code, title = "account-not-found", "Account not found"


class HoldNotFound(NotFound):
    code, title = "hold-not-found", "Hold not found"


class EntryNotFound(NotFound):
    code, title = "entry-not-found", "Entry not found"


class MethodNotAllowed(LedgerError):
    status, code, title = 405, "method-not-allowed", "Method not allowed"


class InsufficientBalance(LedgerError):
    """402: the entry would take ``available`` below ``-credit_limit``."""

    status, code, title = 402, "insufficient-balance", "Insufficient balance"

    def __init__(self, available: int, requested: int, credit_limit: int) -> None:
        super().__init__(
            f"{requested} tokens requested, {available} available"
            f" with a credit limit of {credit_limit}",
            extra={"available": available, "requested": requested},
        )


class Conflict(LedgerError):
    status, code, title = 409, "conflict", "Conflict"


class HoldNotActive(Conflict):
    code, title = "hold-not-active", "Hold not active"


class IdempotencyKeyInFlight(Conflict):
    code, title = "idempotency-key-in-flight", "Idempotency key in flight"


class RefundExceedsConsumption(Conflict):
    code, title = "refund-exceeds-consumption", "Refund exceeds consumption"


class PayloadTooLarge(LedgerError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class ValidationFailed(LedgerError):
    """422 with ``errors``: a list of ``{"loc": [...], "msg": str}``."""

    status, code, title = 422, "validation-error", "Validation error"

    def __init__(self, errors: list[dict[str, Any]], detail: str = "") -> None:
        super().__init__(
            detail or "; ".join(str(e["msg"]) for e in errors) or self.title,
            extra={"errors": errors},
        )

    @classmethod
    def at(cls, loc: list[str | int], msg: str) -> ValidationFailed:
        """One error at one location, e.g. ``at(["body", "amount"], "...")``."""
        return cls([{"loc": loc, "msg": msg}])


class BalanceLimitExceeded(LedgerError):
    """422: the write would take ``counter`` to ``value`` tokens, above 2^53 - 1."""

    status, code, title = 422, "balance-limit-exceeded", "Balance limit exceeded"

    def __init__(self, counter: str, value: int) -> None:
        super().__init__(
            f"this write would take {counter} to {value} tokens, above 2^53 - 1",
            extra={"counter": counter, "limit": 2**53 - 1},
        )


class IdempotencyKeyReused(LedgerError):
    status, code, title = 422, "idempotency-key-reused", "Idempotency key reused"


class Unavailable(LedgerError):
    """503: a backing store is down; ``Retry-After`` is set (seconds)."""

    status, code, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str = "", retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
