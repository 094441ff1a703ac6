"""API key administration: create, list and revoke (scope ``admin``).

Keys are stored as SHA-256 hashes (``service.adapters.keys``); the plaintext
is returned once, by :meth:`ApiKeys.create`. A revocation takes effect at once
in this process (its key cache) and, through the bridge's ``ledger:keys``
channel, in the others (within 1 s at worst: the caches' TTL).
"""

from __future__ import annotations

from typing_extensions import TypedDict

from projections.broker import Broker
from projections.channels import KEYS
from service.adapters.availability import DatabaseGuard
from service.adapters.key_cache import KeyCache
from service.adapters.keys import ApiKeyRecord, KeyStore


class ApiKeyPublic(TypedDict):
    """An API key without its secret."""

    name: str
    scopes: list[str]
    created_at: str


class ApiKeyCreated(ApiKeyPublic):
    key: str
    """Shown once; only its hash is stored."""


class ApiKeysPublic(TypedDict):
    api_keys: list[ApiKeyPublic]


def _public(record: ApiKeyRecord) -> ApiKeyPublic:
    return {"name": record.name, "scopes": list(record.scopes), "created_at": record.created_at}


class ApiKeys:
    """The key store behind this process's circuit breaker and key cache."""

    def __init__(
        self, store: KeyStore, cache: KeyCache, broker: Broker, guard: DatabaseGuard
    ) -> None:
        self.store, self.cache, self.broker, self.guard = store, cache, broker, guard

    async def create(self, name: str, scopes: list[str]) -> ApiKeyCreated:
        """A new key named ``name`` with ``scopes``, its secret included.

        Raises:
            ApiKeyExists: the name is taken (409).
            Unavailable: the database does not answer (503).
        """
        record, key = await self.guard.call(self.store.create, name, scopes)
        self.cache.created(record.name)
        public = _public(record)
        return {
            "name": public["name"],
            "scopes": public["scopes"],
            "key": key,
            "created_at": public["created_at"],
        }

    async def list(self) -> ApiKeysPublic:
        """Every stored key, without secrets (the bootstrap key is not listed)."""
        records = await self.guard.call(self.store.list)
        return {"api_keys": [_public(record) for record in records]}

    async def revoke(self, name: str) -> None:
        """Revokes the key named ``name`` here and tells the other processes.

        Raises:
            NotFound: no key has that name (404).
            ApiKeyNotRevocable: the bootstrap key (409).
            Unavailable: the database does not answer (503).
        """
        await self.guard.call(self.cache.revoke, name)
        self.broker.publish_many([(KEYS, {"revoked": name})])
