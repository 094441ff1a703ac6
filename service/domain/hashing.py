"""The hash chain of an account's entries (contract v1.1, "Hash chain").

``hash(v) = sha256(hash(v-1) + "\\n" + canonical(entry v))``, 64 lowercase hex
digits, with ``hash(0)`` = 64 zeros. The canonical JSON is the object of
exactly :data:`CANONICAL_KEYS` of the entry as the API renders it, keys sorted
at every level, separators ``,`` and ``:``, non-ASCII written as itself. The
hash is fixed when the entry is recorded (it is part of the stored event) and
never recomputed on read; auditors recompute it to verify an export.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

GENESIS = "0" * 64
"""The hash "before" version 1 (and of a balance without entries)."""

CANONICAL_KEYS = (
    "id",
    "account_id",
    "type",
    "amount",
    "delta_available",
    "version",
    "recorded_at",
    "idempotency_key",
    "actor",
    "operation",
    "model",
    "payment_reference",
    "reason",
    "hold_id",
    "refund_of",
    "expires_at",
    "metadata",
)
"""The keys of an entry that its hash covers (fields added later stay outside)."""

_ZERO = timedelta(0)


def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds (the API's form of
    every time), or ``None``."""
    if moment is None:
        return None
    if moment.utcoffset() != _ZERO:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(entry: dict[str, Any]) -> bytes:
    """The canonical JSON of ``entry`` (an entry as the API renders it), UTF-8.

    ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    by definition; orjson with sorted keys writes the same bytes when the
    metadata holds no float and no integer beyond 64 bits, and is used then
    (several times faster)."""
    covered = {key: entry[key] for key in CANONICAL_KEYS}
    if _orjson_exact(covered["metadata"]):
        try:
            return orjson.dumps(covered, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # nesting orjson refuses: json writes the same bytes
            pass
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def chain(previous: str, entry: dict[str, Any]) -> str:
    """The hash of ``entry`` after the entry whose hash is ``previous``."""
    return hashlib.sha256(previous.encode() + b"\n" + canonical(entry)).hexdigest()


def _orjson_exact(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return all(_orjson_exact(item) for item in value.values())
    if kind is list:
        return all(_orjson_exact(item) for item in value)
    if kind is int:
        return bool(-(2**63) <= value < 2**64)
    return kind is not float
