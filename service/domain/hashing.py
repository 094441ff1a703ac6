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


def canonical(entry: dict[str, Any]) -> str:
    """The canonical JSON of ``entry`` (an entry as the API renders it)."""
    covered = {key: entry[key] for key in CANONICAL_KEYS}
    return json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain(previous: str, entry: dict[str, Any]) -> str:
    """The hash of ``entry`` after the entry whose hash is ``previous``."""
    text = previous + "\n" + canonical(entry)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
