"""Entries and balances as the contract publishes them (``API.md`` v1.1):
the one definition of their JSON shape.

Each shape is a ``TypedDict``: the functions here build it (``mypy --strict``
checks every key and type), the projection publishes it on the bridge, the
API answers it with orjson, and FastAPI documents it as the OpenAPI
component of the same name (field descriptions are the attribute docstrings
below). Timestamps are RFC 3339 UTC strings with a ``Z``; amounts are tokens.
"""

from typing import Any, NotRequired

from typing_extensions import TypedDict

from service.domain.events import LedgerEntry
from service.domain.hashing import rfc3339
from service.domain.values import Balance, entry_id_for

__all__ = ["BalancePublic", "EntryPublic", "WritePublic", "render_balance", "render_entry"]


class EntryPublic(TypedDict):
    """A ledger entry: one immutable line of an account's history."""

    id: str
    """UUID of the entry (derived from the account and the version)."""
    account_id: str
    type: str
    """purchase, grant, consumption, deduction, refund, hold, capture, release,
    hold_expiry, credit_expiry or credit_limit_change."""
    amount: int
    """Tokens (for credit_limit_change: the new limit)."""
    delta_available: int
    """Change of `available` in tokens (negative when spent)."""
    version: int
    """The account's version after this entry (1, 2, ...)."""
    position: int
    """Position in the global log (the SSE id)."""
    recorded_at: str
    idempotency_key: str | None
    actor: str
    """Name of the API key that wrote it (or `system`)."""
    operation: str | None
    model: str | None
    payment_reference: str | None
    reason: str | None
    hold_id: str | None
    refund_of: str | None
    expires_at: str | None
    metadata: dict[str, Any]
    hash: str | None
    """SHA-256 (64 lowercase hex) of the previous entry's hash, a line feed and
    this entry's canonical JSON (contract v1.1, hash chain); null only for
    entries recorded before the hash chain existed."""


class BalancePublic(TypedDict):
    """An account's balance after its entry `version` (tokens)."""

    account_id: str
    available: int
    held: int
    credit_limit: int
    purchased: int
    granted: int
    consumed: int
    refunded: int
    deducted: int
    expired: int
    version: int
    position: int
    """Position of the last entry applied (0 without entries)."""
    updated_at: str | None
    hash: str
    """Hash of the last entry applied (64 zeros before the first)."""
    stale: NotRequired[bool]
    """Only with min_position, when that position was not reached in time."""


class WritePublic(TypedDict):
    """A write's answer: its entry and the balance right after it."""

    entry: EntryPublic
    balance: BalancePublic


def render_entry(entry: LedgerEntry, position: int) -> EntryPublic:
    """The contract's Entry object for ``entry`` stored at ``position``."""
    return {
        "id": str(entry_id_for(entry.originator_id, entry.originator_version)),
        "account_id": entry.account_id,
        "type": entry.entry_type.value,
        "amount": entry.amount,
        "delta_available": entry.delta_available,
        "version": entry.originator_version,
        "position": position,
        "recorded_at": rfc3339(entry.timestamp) or "",
        "idempotency_key": entry.idempotency_key,
        "actor": entry.actor,
        "operation": entry.operation,
        "model": entry.model,
        "payment_reference": entry.payment_reference,
        "reason": entry.reason,
        "hold_id": entry.hold_id,
        "refund_of": entry.refund_of,
        "expires_at": rfc3339(entry.expires_at),
        "metadata": dict(entry.metadata),
        "hash": entry.hash,
    }


def render_balance(balance: Balance, position: int | None = None) -> BalancePublic:
    """The contract's Balance object; ``position`` overrides ``balance.position``
    (0 for an account without entries)."""
    return {
        "account_id": balance.account_id,
        "available": balance.available,
        "held": balance.held,
        "credit_limit": balance.credit_limit,
        "purchased": balance.purchased,
        "granted": balance.granted,
        "consumed": balance.consumed,
        "refunded": balance.refunded,
        "deducted": balance.deducted,
        "expired": balance.expired,
        "version": balance.version,
        "position": position if position is not None else (balance.position or 0),
        "updated_at": rfc3339(balance.updated_at),
        "hash": balance.hash,
    }
