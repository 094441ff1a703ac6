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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from service.domain.errors import IdempotencyKeyInFlight


@dataclass(frozen=True)
class IdempotencyRequest:
    """An ``Idempotency-Key`` and the fingerprint of the request it came with."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, method: str, path: str, body: Any) -> IdempotencyRequest:
        """Fingerprints method, path and the parsed JSON body (key order and
        whitespace do not matter) as a SHA-256 hex digest."""
        canonical = json.dumps(
            [method.upper(), path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return cls(key, hashlib.sha256(canonical.encode()).hexdigest())


class InFlight:
    """The idempotency keys being processed right now in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[str, str]] = set()

    @contextmanager
    def claim(self, account_id: str, key: str) -> Iterator[None]:
        """Holds ``key`` for the duration of the block.

        Raises:
            IdempotencyKeyInFlight: the key is already being processed (409).
        """
        item = (account_id, key)
        with self._lock:
            if item in self._keys:
                raise IdempotencyKeyInFlight(
                    f"a request with Idempotency-Key {key!r} is being processed"
                )
            self._keys.add(item)
        try:
            yield
        finally:
            with self._lock:
                self._keys.discard(item)
