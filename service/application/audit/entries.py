"""Stored events as the API's entries, without building domain events (fast,
for exports and audits of whole logs).

:func:`api_entry` turns a :class:`~service.adapters.log_stream.StoredRow` into
exactly the dict ``service.domain.published.render_entry`` gives (with
``position`` and ``hash``), or ``None`` for an event that is not an entry (an
account's opening). Integers beyond 64 bits stay exact.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from service.adapters.log_stream import StoredRow
from service.domain import events as ev
from service.domain.hashing import rfc3339
from service.domain.values import Draw, entry_id_for

ENTRY_TYPES: dict[str, str] = {
    f"{cls.__module__}:{cls.__qualname__}": cls.entry_type.value
    for cls in vars(ev).values()
    if isinstance(cls, type) and issubclass(cls, ev.LedgerEntry) and cls is not ev.LedgerEntry
}
"""Entry type (``purchase``, …) by stored event topic."""

ENTRY_CLASSES: dict[str, type[ev.LedgerEntry]] = {
    f"{cls.__module__}:{cls.__qualname__}": cls
    for cls in vars(ev).values()
    if isinstance(cls, type) and issubclass(cls, ev.LedgerEntry) and cls is not ev.LedgerEntry
}

_ID_PREFIXES: dict[UUID, str] = {}
"""Each account's entry-id prefix (its UUID's text without the version digits)."""


def api_entry(row: StoredRow) -> dict[str, Any] | None:
    """The API's Entry object of ``row`` (``None`` when it is not an entry)."""
    entry_type = ENTRY_TYPES.get(row.topic)
    if entry_type is None:
        return None
    data = orjson.loads(row.state)
    if data["metadata"] and not plain(data["metadata"]):
        data = json.loads(row.state)  # integers beyond 64 bits, read exactly
    prefix = _ID_PREFIXES.get(row.originator_id)
    if prefix is None:
        if len(_ID_PREFIXES) > 100_000:
            _ID_PREFIXES.clear()
        prefix = _ID_PREFIXES[row.originator_id] = str(entry_id_for(row.originator_id, 0))[:24]
    return {
        "id": f"{prefix}{row.version:012x}",
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


def domain_entry(row: StoredRow, slow: Callable[[StoredRow], Any]) -> ev.LedgerEntry:
    """The domain event of an entry ``row``, built as the library's mapper
    builds it (``object.__new__`` and its state) from an orjson read of the
    state that knows where this ledger's states hold datetimes and draws;
    ``slow(row)`` (the library's mapper) takes what holds a float."""
    data = orjson.loads(row.state)
    if data["metadata"] and not plain(data["metadata"]):
        entry: ev.LedgerEntry = slow(row)
        return entry
    data["timestamp"] = _datetime(data["timestamp"])
    data["expires_at"] = _datetime(data["expires_at"])
    if data["draws"]:
        data["draws"] = [_draw(d) for d in data["draws"]]
    if data["restores"]:
        data["restores"] = [_draw(d) for d in data["restores"]]
    data["originator_id"], data["originator_version"] = row.originator_id, row.version
    entry = object.__new__(ENTRY_CLASSES[row.topic])
    object.__setattr__(entry, "__dict__", data)
    return entry


def _datetime(value: Any) -> datetime | None:
    return None if value is None else _from_iso(value["_data_"])


def _draw(value: dict[str, Any]) -> Draw:
    data = value["_data_"]
    expires = data["expires_at"]
    if expires is not None:
        data["expires_at"] = _from_iso(expires["_data_"])
    draw = object.__new__(Draw)  # a frozen dataclass: its fields, as the library decodes them
    object.__setattr__(draw, "__dict__", data)
    return draw


_from_iso = datetime.fromisoformat


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses CPython's cyclic garbage collector for the block: reading a
    whole log allocates millions of acyclic objects, and collections scanning
    them cost more than the reading itself (measured: twice as slow)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plain(value: Any) -> bool:
    """Whether ``value`` (a JSON object or array) holds no float: orjson then
    read it exactly as ``json`` does (a float may be an integer beyond 64 bits
    that orjson read inexactly)."""
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is float:
            return False
        if (kind is dict or kind is list) and not plain(item):
            return False
    return True


def _time(value: Any) -> str | None:
    """A stored datetime (``{"_type_": "datetime_iso", "_data_": iso}``) in the
    API's form: UTC, microseconds, ``Z``."""
    if value is None:
        return None
    iso: str = value["_data_"]
    if len(iso) == 32 and iso.endswith("+00:00"):  # the usual form, as is
        return iso[:26] + "Z"
    return rfc3339(datetime.fromisoformat(iso))
