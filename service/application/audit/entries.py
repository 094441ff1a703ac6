"""Stored events as the API's entries, without building domain events (fast,
for exports and audits of whole logs).

:func:`api_entry` turns a :class:`~service.adapters.log_stream.StoredRow` into
exactly the dict ``service.application.rendering.render_entry`` gives (with
``position`` and ``hash``), or ``None`` for an event that is not an entry (an
account's opening). Integers beyond 64 bits stay exact.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import orjson

from service.adapters.log_stream import StoredRow
from service.domain import events as ev
from service.domain.hashing import rfc3339
from service.domain.values import entry_id_for

ENTRY_TYPES: dict[str, str] = {
    f"{cls.__module__}:{cls.__qualname__}": cls.entry_type.value
    for cls in vars(ev).values()
    if isinstance(cls, type) and issubclass(cls, ev.LedgerEntry) and cls is not ev.LedgerEntry
}
"""Entry type (``purchase``, …) by stored event topic."""

_LONG_NUMBER = re.compile(rb"\d{19}")
"""19 digits or more: an integer orjson might read inexactly."""


def api_entry(row: StoredRow) -> dict[str, Any] | None:
    """The API's Entry object of ``row`` (``None`` when it is not an entry)."""
    entry_type = ENTRY_TYPES.get(row.topic)
    if entry_type is None:
        return None
    state = row.state
    data = json.loads(state) if _LONG_NUMBER.search(state) else orjson.loads(state)
    return {
        "id": str(entry_id_for(row.originator_id, row.version)),
        "account_id": data["account_id"],
        "type": entry_type,
        "amount": data["amount"],
        "delta_available": data["delta_available"],
        "version": row.version,
        "position": row.position,
        "recorded_at": _time(data["timestamp"]),
        "idempotency_key": data["idempotency_key"],
        "actor": data["actor"],
        "operation": data["operation"],
        "model": data["model"],
        "payment_reference": data["payment_reference"],
        "reason": data["reason"],
        "hold_id": data["hold_id"],
        "refund_of": data["refund_of"],
        "expires_at": _time(data["expires_at"]),
        "metadata": data["metadata"],
        "hash": data.get("hash"),
    }


def _time(value: Any) -> str | None:
    """A stored datetime (``{"_type_": "datetime_iso", "_data_": iso}``) in the
    API's form: UTC, microseconds, ``Z``."""
    if value is None:
        return None
    iso: str = value["_data_"]
    if len(iso) == 32 and iso.endswith("+00:00"):  # the usual form, as is
        return iso[:26] + "Z"
    return rfc3339(datetime.fromisoformat(iso))
