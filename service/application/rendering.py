"""Entries and balances as the JSON-ready dicts of contract v1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.events import LedgerEntry
from service.domain.values import Balance, entry_id_for

ZERO = timedelta(0)


def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds, or ``None``."""
    if moment is None:
        return None
    if moment.utcoffset() != ZERO:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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
    }


def render_balance(balance: Balance, position: int | None = None) -> dict[str, Any]:
    """The contract's Balance object; ``position`` overrides ``balance.position``
    (0 for an account without entries)."""
    data = balance.as_dict()
    data["position"] = position if position is not None else (balance.position or 0)
    data["updated_at"] = rfc3339(balance.updated_at)
    return data
