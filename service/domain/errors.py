"""The one error family of the ledger.

Every refusal the ledger can report is a :class:`LedgerError` subclass that
carries a stable ``code`` (those of ``API.md``, contract v1.1) and its context;
nothing here knows HTTP. ``service.api.errors`` maps codes to statuses and
renders RFC 9457 ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """Base of every error the ledger reports to a client.

    Attributes:
        code: stable machine-readable code (the problem's ``code``).
        title: short human-readable summary of the error class.
        detail: human-readable explanation of this occurrence.
        context: facts of this occurrence a client may act on (e.g.
            ``available`` tokens); JSON values.
    """

    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str = "", *, context: dict[str, Any] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.context: dict[str, Any] = context or {}


class MalformedRequest(LedgerError):
    code, title = "malformed-request", "Malformed request"


class Unauthorized(LedgerError):
    code, title = "unauthorized", "Unauthorized"

    def __init__(self, detail: str = "Missing or unknown credentials") -> None:
        super().__init__(detail)


class Forbidden(LedgerError):
    code, title = "forbidden", "Forbidden"


class NotFound(LedgerError):
    code, title = "not-found", "Not found"


class AccountNotFound(NotFound):
    code, title = "account-not-found", "Account not found"


class HoldNotFound(NotFound):
    code, title = "hold-not-found", "Hold not found"


class EntryNotFound(NotFound):
    code, title = "entry-not-found", "Entry not found"


class MethodNotAllowed(LedgerError):
    code, title = "method-not-allowed", "Method not allowed"


class InsufficientBalance(LedgerError):
    """The entry would take ``available`` below ``-credit_limit``."""

    code, title = "insufficient-balance", "Insufficient balance"

    def __init__(self, available: int, requested: int, credit_limit: int) -> None:
        super().__init__(
            f"{requested} tokens requested, {available} available"
            f" with a credit limit of {credit_limit}",
            context={"available": available, "requested": requested},
        )


class Conflict(LedgerError):
    code, title = "conflict", "Conflict"


class HoldNotActive(Conflict):
    code, title = "hold-not-active", "Hold not active"


class IdempotencyKeyInFlight(Conflict):
    code, title = "idempotency-key-in-flight", "Idempotency key in flight"


class RefundExceedsConsumption(Conflict):
    code, title = "refund-exceeds-consumption", "Refund exceeds consumption"


class PayloadTooLarge(LedgerError):
    code, title = "payload-too-large", "Payload too large"


class ValidationFailed(LedgerError):
    """Invalid input, with ``errors``: a list of ``{"loc": [...], "msg": str}``."""

    code, title = "validation-error", "Validation error"

    def __init__(self, errors: list[dict[str, Any]], detail: str = "") -> None:
        super().__init__(
            detail or "; ".join(str(e["msg"]) for e in errors) or self.title,
            context={"errors": errors},
        )

    @classmethod
    def at(cls, loc: list[str | int], msg: str) -> ValidationFailed:
        """One error at one location, e.g. ``at(["body", "amount"], "...")``."""
        return cls([{"loc": loc, "msg": msg}])


class BalanceLimitExceeded(LedgerError):
    """The write would take ``counter`` to ``value`` tokens, above 2^53 - 1."""

    code, title = "balance-limit-exceeded", "Balance limit exceeded"

    def __init__(self, counter: str, value: int) -> None:
        super().__init__(
            f"this write would take {counter} to {value} tokens, above 2^53 - 1",
            context={"counter": counter, "limit": 2**53 - 1},
        )


class IdempotencyKeyReused(LedgerError):
    code, title = "idempotency-key-reused", "Idempotency key reused"


class Unavailable(LedgerError):
    """A backing store is down; ``retry_after``: seconds a client should wait."""

    code, title = "unavailable", "Service unavailable"

    def __init__(
        self, detail: str = "", retry_after: int = 1, context: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail, context=context)
        self.retry_after = retry_after
