"""Batch operations (``POST /v1/batch``), built by name with their fields.

Each function returns the operation object of the contract, e.g.
``consume("user-42", 120, model="gpt-4o")`` →
``{"op": "consume", "account_id": "user-42", "amount": 120, "model": "gpt-4o"}``.
Optional fields left at ``None`` are left out. Amounts are integers in tokens
(1 ≤ amount ≤ 10^15); ``expires_at`` is an aware ``datetime`` or an RFC 3339
string; ``ttl_seconds`` is seconds (1 … 86,400). An ``idempotency_key`` given
here is kept; :meth:`LedgerClient.batch` gives every operation without one a
new key, reused when the batch is retried.

The clients' single writes are built from the same objects
(:func:`single_write`), so a single write and an equal batch operation under
one key are the same request for the service, as the contract says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

__all__ = [
    "capture",
    "consume",
    "deduct",
    "grant",
    "hold",
    "purchase",
    "refund",
    "release",
    "rfc3339",
]

Operation = dict[str, Any]
"""A batch operation object: ``op``, ``account_id``, optional
``idempotency_key``, and the fields of the single write."""

PATH_IDS = {"refund": "entry_id", "capture": "hold_id", "release": "hold_id"}
"""Operations that name an entry or a hold: the field that goes in the path."""
PATHS = {
    "purchase": "purchases",
    "grant": "grants",
    "consume": "consumptions",
    "deduct": "deductions",
    "refund": "consumptions/{entry_id}/refunds",
    "hold": "holds",
    "capture": "holds/{hold_id}/capture",
    "release": "holds/{hold_id}/release",
}
"""Where each operation is posted as a single write, under ``/v1/accounts/{id}/``."""


def rfc3339(moment: datetime | str) -> str:
    """``moment`` as RFC 3339 in UTC with a ``Z`` (strings pass unchanged).

    Raises:
        ValueError: a naive ``datetime`` (its time zone would be a guess).
    """
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        msg = "a naive datetime has no time zone; give an aware one (e.g. tzinfo=UTC)"
        raise ValueError(msg)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def segment(value: str) -> str:
    """``value`` as one URL path segment (``/`` and the like escaped, so a bad
    id is refused by the service instead of naming another resource)."""
    return quote(value, safe=":@._-")


def _operation(op: str, account_id: str, idempotency_key: str | None, **fields: Any) -> Operation:
    operation: Operation = {"op": op, "account_id": account_id}
    operation.update({name: value for name, value in fields.items() if value is not None})
    if "expires_at" in operation:
        operation["expires_at"] = rfc3339(operation["expires_at"])
    if idempotency_key is not None:
        operation["idempotency_key"] = idempotency_key
    return operation


def purchase(
    account_id: str,
    amount: int,
    *,
    payment_reference: str | None = None,
    expires_at: datetime | str | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Operation:
    """Adds ``amount`` purchased tokens (scope ``purchase``); with ``expires_at``
    they form a credit bucket that expires then."""
    return _operation(
        "purchase",
        account_id,
        idempotency_key,
        amount=amount,
        payment_reference=payment_reference,
        expires_at=expires_at,
        metadata=metadata,
    )


def grant(
    account_id: str,
    amount: int,
    reason: str,
    *,
    expires_at: datetime | str | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Operation:
    """Grants ``amount`` free tokens for ``reason`` (scope ``grant``)."""
    return _operation(
        "grant",
        account_id,
        idempotency_key,
        amount=amount,
        reason=reason,
        expires_at=expires_at,
        metadata=metadata,
    )


def consume(
    account_id: str,
    amount: int,
    *,
    operation: str | None = None,
    model: str | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Operation:
    """Consumes ``amount`` tokens (scope ``consume``); refused (402) when
    ``available - amount < -credit_limit``."""
    return _operation(
        "consume",
        account_id,
        idempotency_key,
        amount=amount,
        operation=operation,
        model=model,
        metadata=metadata,
    )


def deduct(
    account_id: str,
    amount: int,
    reason: str,
    *,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Operation:
    """Deducts ``amount`` tokens for ``reason`` (scope ``grant``); 402 as a consumption."""
    return _operation(
        "deduct", account_id, idempotency_key, amount=amount, reason=reason, metadata=metadata
    )


def refund(
    account_id: str,
    entry_id: str,
    amount: int | None = None,
    *,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> Operation:
    """Refunds ``amount`` tokens (default: all still unrefunded) of the
    consumption ``entry_id`` (scope ``consume``)."""
    return _operation(
        "refund", account_id, idempotency_key, entry_id=entry_id, amount=amount, reason=reason
    )


def hold(
    account_id: str,
    amount: int,
    *,
    ttl_seconds: int | None = None,
    operation: str | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Operation:
    """Holds ``amount`` tokens for ``ttl_seconds`` (default 900) (scope ``consume``)."""
    return _operation(
        "hold",
        account_id,
        idempotency_key,
        amount=amount,
        ttl_seconds=ttl_seconds,
        operation=operation,
        metadata=metadata,
    )


def capture(
    account_id: str,
    hold_id: str,
    amount: int | None = None,
    *,
    idempotency_key: str | None = None,
) -> Operation:
    """Consumes ``amount`` tokens (default: all) of hold ``hold_id`` and
    releases the rest (scope ``consume``)."""
    return _operation("capture", account_id, idempotency_key, hold_id=hold_id, amount=amount)


def release(account_id: str, hold_id: str, *, idempotency_key: str | None = None) -> Operation:
    """Releases hold ``hold_id`` (scope ``consume``)."""
    return _operation("release", account_id, idempotency_key, hold_id=hold_id)


def single_write(operation: Operation) -> tuple[str, dict[str, Any], str | None]:
    """The single write of ``operation``: ``(path, body, idempotency key)``.

    Raises:
        KeyError: not an operation of this module.
    """
    op = operation["op"]
    body = {k: v for k, v in operation.items() if k not in ("op", "account_id", "idempotency_key")}
    ids = {}
    if op in PATH_IDS:
        name = PATH_IDS[op]
        ids[name] = segment(str(body.pop(name)))
    path = f"/v1/accounts/{segment(operation['account_id'])}/" + PATHS[op].format(**ids)
    return path, body, operation.get("idempotency_key")
