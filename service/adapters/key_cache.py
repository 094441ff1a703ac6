"""An in-process cache of API keys in front of the :class:`KeyStore`.

Authentication costs no database round trip while a key's entry is fresh: an
entry is trusted for ``ttl`` seconds (default 0.9) after it was read, so a key
revoked by another process stops working here within 1 second even if the
bridge's revocation message (``ledger:keys``, see :meth:`forget`) is lost; the
revoking process drops it at once. Unknown keys are not cached, so a key
created by another process works at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.adapters.keys import ApiKeyRecord, KeyStore, hash_key

DEFAULT_TTL = 0.9
"""Seconds an entry is trusted (contract v1.1: revocation reaches every
process within 1 second)."""


class CacheMiss(Exception):
    """The answer needs the store (raised by :class:`CachedKeys` only)."""


@dataclass(frozen=True)
class _Entry:
    record: ApiKeyRecord
    fresh_until: float


class KeyCache:
    """API key records by key hash and by name, each fresh for ``ttl`` s."""

    def __init__(
        self, store: KeyStore, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._by_hash: dict[str, _Entry] = {}
        self._by_name: dict[str, _Entry] = {}
        self.revoked: set[str] = set()
        """Names revoked since this process started (here or, through the
        bridge, elsewhere): open streams of these keys end at their next ping."""
        self.cached = CachedKeys(self)
        """The same lookups, answering only from the cache (else :class:`CacheMiss`)."""

    def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The record of the plaintext ``key``, or ``None`` (blocking on a miss)."""
        digest = hash_key(key)
        entry = self._fresh(self._by_hash, digest)
        if entry is not None:
            return entry.record
        record = self.store.authenticate(key)
        if record is not None:
            self._put(self._by_hash, digest, record)
        return record

    def get(self, name: str) -> ApiKeyRecord | None:
        """The record named ``name``, or ``None`` (blocking on a miss)."""
        entry = self._fresh(self._by_name, name)
        if entry is not None:
            return entry.record
        record = self.store.get(name)
        if record is not None:
            self._put(self._by_name, name, record)
        return record

    def forget(self, name: str) -> None:
        """Drops every entry of the key ``name`` (revoked here or elsewhere)."""
        self.revoked.add(name)
        with self._lock:
            self._by_name.pop(name, None)
            for digest in [d for d, e in self._by_hash.items() if e.record.name == name]:
                del self._by_hash[digest]

    def created(self, name: str) -> None:
        """A key named ``name`` was (re)created here: its streams may run."""
        self.revoked.discard(name)

    def revoke(self, name: str) -> None:
        """Revokes ``name`` in the store and forgets it here.

        Raises:
            NotFound: no such key (404). ApiKeyNotRevocable: the bootstrap key (409).
        """
        self.store.revoke(name)
        self.forget(name)

    def _fresh(self, table: dict[str, _Entry], key: str) -> _Entry | None:
        entry = table.get(key)
        if entry is None or entry.fresh_until < self._clock():
            return None
        return entry

    def _put(self, table: dict[str, _Entry], key: str, record: ApiKeyRecord) -> None:
        with self._lock:
            table[key] = _Entry(record, self._clock() + self.ttl)


class CachedKeys:
    """:class:`KeyCache` lookups that never block: :class:`CacheMiss` instead."""

    def __init__(self, cache: KeyCache) -> None:
        self._cache = cache

    def authenticate(self, key: str) -> ApiKeyRecord | None:
        cache = self._cache
        bootstrap = cache.store.bootstrap_record(key)
        if bootstrap is not None:
            return bootstrap
        entry = cache._fresh(cache._by_hash, hash_key(key))
        if entry is None:
            raise CacheMiss
        return entry.record

    def get(self, name: str) -> ApiKeyRecord | None:
        cache = self._cache
        bootstrap = cache.store.bootstrap_named(name)
        if bootstrap is not None:
            return bootstrap
        entry = cache._fresh(cache._by_name, name)
        if entry is None:
            raise CacheMiss
        return entry.record
