"""Entries and balances as the JSON-ready dicts of contract v1."""

from __future__ import annotations

from typing import Any

from service.domain.events import LedgerEntry
from service.domain.hashing import rfc3339
from service.domain.values import Balance, entry_id_for

__all__ = ["render_balance", "render_entry", "rfc3339"]


def render_entry(entry: LedgerEntry, position: int) -> dict[str, Any]:
    """The contract's Entry object for ``entry`` stored at ``position``."""
    return {
        "id": str(entry_id_for(entry.originator_id, entry.originator_version)),
        "account_id": entry.account_id,
        "type": entry.entry_type.value,
        "amount": entry.amount,
        "delta_available": entry.delta_available,
        "version": entry.originator_version,
        "position": position,
        "recorded_at": rfc3339(entry.timestamp),
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


def render_balance(balance: Balance, position: int | None = None) -> dict[str, Any]:
    """The contract's Balance object; ``position`` overrides ``balance.position``
    (0 for an account without entries)."""
    data = balance.as_dict()
    data["position"] = position if position is not None else (balance.position or 0)
    data["updated_at"] = rfc3339(balance.updated_at)
    return data
