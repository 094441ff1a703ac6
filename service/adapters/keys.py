"""API keys: stored as SHA-256 hashes in ``ledger_api_keys`` (PostgreSQL or SQLite).

A key is ``tl_`` + 32 random bytes (URL-safe base64); only its hash is stored,
so the plaintext is shown once, when it is created. Requests look keys up
through ``service.adapters.key_cache`` (fresh for under a second).

The bootstrap key of ``LEDGER_ADMIN_API_KEY`` is *not* stored: its hash is kept
in memory under the name ``bootstrap-admin`` with scope ``admin``, so the
environment stays its only source (change or unset it, restart, and the old
value stops working). It is not listed and cannot be revoked through the API.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.adapters.connections import (
    Connections,
    PostgresConnections,
    Rows,
    SQLiteConnection,
)
from service.adapters.dialect import Query
from service.config import Settings
from service.domain.errors import Conflict, NotFound

TABLE = "ledger_api_keys"
KEY_PREFIX = "tl_"
BOOTSTRAP_NAME = "bootstrap-admin"
"""Name of the ``LEDGER_ADMIN_API_KEY`` key (the ``actor`` of its writes)."""
FIRST_ADMIN_NAME = "admin"
"""Name of the admin key created at first start when no key exists."""


class ApiKeyExists(Conflict):
    code, title = "api-key-exists", "API key exists"


class ApiKeyNotRevocable(Conflict):
    code, title = "api-key-not-revocable", "API key not revocable"


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key without its secret."""

    name: str
    scopes: tuple[str, ...]
    created_at: str

    def as_public(self) -> dict[str, Any]:
        return {"name": self.name, "scopes": list(self.scopes), "created_at": self.created_at}


def hash_key(key: str) -> str:
    """SHA-256 hex digest of a plaintext key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _scopes_text(scopes: tuple[str, ...] | list[str]) -> str:
    return " ".join(dict.fromkeys(scopes))


def _record(name: str, scopes: str, created_at: str) -> ApiKeyRecord:
    return ApiKeyRecord(name, tuple(scopes.split()), created_at)


INSERT_KEY = (
    "INSERT INTO {keys} (name, key_hash, scopes, created_at)"
    " VALUES (:name, :key_hash, :scopes, :created_at)"
)
SELECT_BY_HASH = "SELECT name, scopes, created_at FROM {keys} WHERE key_hash = :key_hash"
SELECT_BY_NAME = "SELECT name, scopes, created_at FROM {keys} WHERE name = :name"
DELETE_KEY = "DELETE FROM {keys} WHERE name = :name"
SELECT_ALL = "SELECT name, scopes, created_at FROM {keys} ORDER BY name"
COUNT_KEYS = "SELECT count(*) AS n FROM {keys}"


class KeyStore:
    """API keys by name; lookups by the hash of the plaintext. One
    implementation for both databases: ``db`` (``service.adapters.connections``)
    compiles and runs its statements, each one round trip."""

    def __init__(self, db: Connections) -> None:
        self._db = db
        self._bootstrap: tuple[str, ApiKeyRecord] | None = None

        def q(text: str) -> Query:
            return db.dialect.statement(text, keys=TABLE)

        self._insert_sql, self._delete_sql = q(INSERT_KEY), q(DELETE_KEY)
        self._by_hash_sql, self._by_name_sql = q(SELECT_BY_HASH), q(SELECT_BY_NAME)
        self._all_sql, self._count_sql = q(SELECT_ALL), q(COUNT_KEYS)

    def set_bootstrap(self, key: str) -> None:
        """Accepts ``key`` as ``bootstrap-admin`` with scope ``admin`` (in memory)."""
        record = ApiKeyRecord(BOOTSTRAP_NAME, ("admin",), _now())
        self._bootstrap = (hash_key(key), record)

    def create(self, name: str, scopes: list[str]) -> tuple[ApiKeyRecord, str]:
        """Creates a key; returns its record and its plaintext (shown once).

        Raises:
            ApiKeyExists: a key with that name exists (409).
        """
        if self._bootstrap is not None and name == BOOTSTRAP_NAME:
            raise ApiKeyExists(f"an API key named {name!r} exists")
        key = new_key()
        record = ApiKeyRecord(name, tuple(dict.fromkeys(scopes)), _now())
        self._insert(record, hash_key(key))
        return record, key

    def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The record of the plaintext ``key``, or ``None`` when unknown."""
        bootstrap = self.bootstrap_record(key)
        if bootstrap is not None:
            return bootstrap
        return self._by_hash(hash_key(key))

    def bootstrap_record(self, key: str) -> ApiKeyRecord | None:
        """The bootstrap key's record when ``key`` is it (no I/O), else ``None``."""
        if self._bootstrap is None:
            return None
        if secrets.compare_digest(hash_key(key), self._bootstrap[0]):
            return self._bootstrap[1]
        return None

    def bootstrap_named(self, name: str) -> ApiKeyRecord | None:
        """The bootstrap key's record when it is named ``name`` (no I/O)."""
        if self._bootstrap is not None and name == BOOTSTRAP_NAME:
            return self._bootstrap[1]
        return None

    def get(self, name: str) -> ApiKeyRecord | None:
        """The record named ``name`` (the bootstrap key included), or ``None``."""
        return self.bootstrap_named(name) or self._by_name(name)

    def revoke(self, name: str) -> None:
        """Deletes the key ``name``.

        Raises:
            NotFound: no such key (404).
            ApiKeyNotRevocable: the bootstrap key (409; unset the variable).
        """
        if self._bootstrap is not None and name == BOOTSTRAP_NAME:
            raise ApiKeyNotRevocable(
                "the bootstrap key is defined by LEDGER_ADMIN_API_KEY; change it there"
            )
        if not self._delete(name):
            raise NotFound(f"no API key named {name!r}")

    def list(self) -> list[ApiKeyRecord]:
        """The stored keys, by name (the bootstrap key is not stored)."""
        rows, _ = self._db.execute(self._all_sql, {})
        return [_record(r["name"], r["scopes"], r["created_at"]) for r in rows]

    def count(self) -> int:
        """How many keys are stored."""
        rows, _ = self._db.execute(self._count_sql, {})
        return int(rows[0]["n"]) if rows else 0

    def close(self) -> None:
        self._db.close()

    def _insert(self, record: ApiKeyRecord, key_hash: str) -> None:
        params = {
            "name": record.name,
            "key_hash": key_hash,
            "scopes": _scopes_text(record.scopes),
            "created_at": record.created_at,
        }
        try:
            self._db.execute(self._insert_sql, params)
        except self._db.dialect.unique_violation:
            raise ApiKeyExists(f"an API key named {record.name!r} exists") from None

    def _by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return _first(self._db.execute(self._by_hash_sql, {"key_hash": key_hash}))

    def _by_name(self, name: str) -> ApiKeyRecord | None:
        return _first(self._db.execute(self._by_name_sql, {"name": name}))

    def _delete(self, name: str) -> bool:
        _, changed = self._db.execute(self._delete_sql, {"name": name})
        return changed > 0


def _first(result: Rows) -> ApiKeyRecord | None:
    rows, _ = result
    return _record(rows[0]["name"], rows[0]["scopes"], rows[0]["created_at"]) if rows else None


def open_key_store(settings: Settings) -> KeyStore:
    """The key store of ``settings.database_url`` (its table exists: see ``migrate``)."""
    if settings.backend == "sqlite":
        return KeyStore(SQLiteConnection(settings.sqlite_path))
    connections = PostgresConnections(
        settings.postgres_conninfo(),
        settings.database_schema,
        max_size=max(2, settings.database_pool_size),
    )
    return KeyStore(connections)


def bootstrap_admin(store: KeyStore, settings: Settings) -> str | None:
    """Sets up the first admin credentials.

    With ``LEDGER_ADMIN_API_KEY``, that key is accepted as ``bootstrap-admin``
    (scope ``admin``, kept in memory only) and ``None`` is returned. Otherwise,
    when no key is stored, an admin key named ``admin`` is created and its
    plaintext returned, for the caller to print once (never log it).
    """
    if settings.admin_api_key is not None and settings.admin_api_key.get_secret_value():
        store.set_bootstrap(settings.admin_api_key.get_secret_value())
        return None
    if store.count() == 0:
        try:
            _, key = store.create(FIRST_ADMIN_NAME, ["admin"])
        except ApiKeyExists:  # another process, starting at the same time, made it
            return None
        return key
    return None
