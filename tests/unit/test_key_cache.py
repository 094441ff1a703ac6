"""The in-process API key cache: no store round trip while fresh, revocations
seen at once here and within the TTL (or the bridge's message) elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.adapters.key_cache import CacheMiss, KeyCache
from service.adapters.keys import KeyStore, open_key_store
from service.adapters.migrate import migrate
from service.config import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/l.db")
    migrate(settings)
    keys = open_key_store(settings)
    yield keys
    keys.close()


def test_a_fresh_key_is_answered_from_memory_without_the_store(store: KeyStore) -> None:
    _, key = store.create("svc", ["consume"])
    cache = KeyCache(store, ttl=0.9, clock=Clock())
    with pytest.raises(CacheMiss):
        cache.cached.authenticate(key)
    record = cache.authenticate(key)
    assert record is not None and record.name == "svc"
    assert cache.cached.authenticate(key) == record


def test_a_key_revoked_in_another_process_stops_working_within_the_ttl(store: KeyStore) -> None:
    _, key = store.create("svc", ["consume"])
    clock = Clock()
    here, there = KeyCache(store, clock=clock), KeyCache(store, clock=clock)
    assert there.authenticate(key) is not None
    here.revoke("svc")
    assert here.authenticate(key) is None
    assert there.cached.authenticate(key) is not None  # until the TTL passes...
    clock.now += 0.91
    assert there.authenticate(key) is None  # ...then the store says no


def test_the_bridges_revocation_message_drops_the_key_at_once(store: KeyStore) -> None:
    _, key = store.create("svc", ["consume"])
    cache = KeyCache(store, clock=Clock())
    assert cache.authenticate(key) is not None and cache.get("svc") is not None
    store.revoke("svc")
    cache.forget("svc")
    assert cache.authenticate(key) is None
    assert cache.get("svc") is None


def test_unknown_keys_are_not_cached_so_a_new_key_works_at_once(store: KeyStore) -> None:
    cache = KeyCache(store, clock=Clock())
    assert cache.authenticate("tl_not-a-key") is None
    with pytest.raises(CacheMiss):
        cache.cached.authenticate("tl_not-a-key")
    _, key = store.create("new", ["read"])
    assert cache.authenticate(key) is not None
