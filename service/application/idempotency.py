"""Idempotency keys, per the IETF ``Idempotency-Key`` HTTP header draft
(draft-ietf-httpapi-idempotency-key-header) and contract v1 "Idempotency".

A key is scoped to its account and kept as long as the ledger's history. Only
writes that succeed leave a record (in the same transaction as their entry), so
a refused request (e.g. 402) may be retried with the same key once it can
succeed. A replay answers the original status and body.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class IdempotencyRequest:
    """An ``Idempotency-Key`` and the fingerprint of the request it came with."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, kind: str, account_id: str, fields: dict[str, Any]) -> IdempotencyRequest:
        """Fingerprints the request as a SHA-256 hex digest of its canonical
        JSON ``{"op": kind, "account_id": …, **fields}`` (key order and
        whitespace do not matter): a single write and the equal ``/v1/batch``
        operation (contract v1.1) are the same request."""
        request = {**fields, "op": kind, "account_id": account_id}
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(key, hashlib.sha256(canonical.encode()).hexdigest())
