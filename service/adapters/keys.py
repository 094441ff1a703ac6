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
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

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


class KeyStore(ABC):
    """API keys by name; lookups by the hash of the plaintext."""

    def __init__(self) -> None:
        self._bootstrap: tuple[str, ApiKeyRecord] | None = None

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

    @abstractmethod
    def list(self) -> list[ApiKeyRecord]:
        """The stored keys, by name (the bootstrap key is not stored)."""

    @abstractmethod
    def count(self) -> int:
        """How many keys are stored."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _insert(self, record: ApiKeyRecord, key_hash: str) -> None: ...

    @abstractmethod
    def _by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    def _by_name(self, name: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    def _delete(self, name: str) -> bool: ...


class SQLiteKeyStore(KeyStore):
    """Keys in the SQLite file of the ledger (one connection, serialized)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            path, check_same_thread=False, timeout=30.0, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        if path == ":memory:":  # a private database: no migrations reach it
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, key_hash TEXT"
                " NOT NULL UNIQUE, scopes TEXT NOT NULL, created_at TEXT NOT NULL)"
            )
        else:
            self._conn.execute("PRAGMA journal_mode=WAL")

    def _one(self, query: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(query, params).fetchone()
            return row

    def _insert(self, record: ApiKeyRecord, key_hash: str) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    f"INSERT INTO {TABLE} (name, key_hash, scopes, created_at)"  # noqa: S608
                    " VALUES (?, ?, ?, ?)",
                    (record.name, key_hash, _scopes_text(record.scopes), record.created_at),
                )
            except sqlite3.IntegrityError:
                raise ApiKeyExists(f"an API key named {record.name!r} exists") from None

    def _by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = self._one(
            f"SELECT name, scopes, created_at FROM {TABLE} WHERE key_hash = ?",  # noqa: S608
            (key_hash,),
        )
        return _record(row["name"], row["scopes"], row["created_at"]) if row else None

    def _by_name(self, name: str) -> ApiKeyRecord | None:
        row = self._one(
            f"SELECT name, scopes, created_at FROM {TABLE} WHERE name = ?",  # noqa: S608
            (name,),
        )
        return _record(row["name"], row["scopes"], row["created_at"]) if row else None

    def _delete(self, name: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(f"DELETE FROM {TABLE} WHERE name = ?", (name,))  # noqa: S608
            return cursor.rowcount > 0

    def list(self) -> list[ApiKeyRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT name, scopes, created_at FROM {TABLE} ORDER BY name"  # noqa: S608
            ).fetchall()
        return [_record(r["name"], r["scopes"], r["created_at"]) for r in rows]

    def count(self) -> int:
        row = self._one(f"SELECT count(*) AS n FROM {TABLE}", ())  # noqa: S608
        return int(row["n"]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresKeyStore(KeyStore):
    """Keys in PostgreSQL (a small connection pool, autocommit)."""

    def __init__(self, conninfo: str, schema: str = "", max_size: int = 4) -> None:
        super().__init__()
        self._table = sql.Identifier(schema, TABLE) if schema else sql.Identifier(TABLE)
        self._pool: ConnectionPool[Any] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=True,
            timeout=2.0,  # seconds to wait for a connection
            kwargs={"autocommit": True, "row_factory": dict_row},
        )

    def _execute(
        self, query: sql.Composed, params: tuple[Any, ...]
    ) -> tuple[list[dict[str, Any]], int]:
        """The rows a query returns and the number of rows it changed."""
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            rows: list[dict[str, Any]] = cur.fetchall() if cur.description else []
            return rows, cur.rowcount

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(table=self._table)

    def _insert(self, record: ApiKeyRecord, key_hash: str) -> None:
        try:
            self._execute(
                self._q(
                    "INSERT INTO {table} (name, key_hash, scopes, created_at)"
                    " VALUES (%s, %s, %s, %s)"
                ),
                (record.name, key_hash, _scopes_text(record.scopes), record.created_at),
            )
        except pg_errors.UniqueViolation:
            raise ApiKeyExists(f"an API key named {record.name!r} exists") from None

    def _select_one(self, column: str, value: str) -> ApiKeyRecord | None:
        query = sql.SQL("SELECT name, scopes, created_at FROM {table} WHERE {column} = %s")
        rows, _ = self._execute(
            query.format(table=self._table, column=sql.Identifier(column)), (value,)
        )
        return _record(rows[0]["name"], rows[0]["scopes"], rows[0]["created_at"]) if rows else None

    def _by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return self._select_one("key_hash", key_hash)

    def _by_name(self, name: str) -> ApiKeyRecord | None:
        return self._select_one("name", name)

    def _delete(self, name: str) -> bool:
        _, changed = self._execute(self._q("DELETE FROM {table} WHERE name = %s"), (name,))
        return changed > 0

    def list(self) -> list[ApiKeyRecord]:
        rows, _ = self._execute(
            self._q("SELECT name, scopes, created_at FROM {table} ORDER BY name"), ()
        )
        return [_record(r["name"], r["scopes"], r["created_at"]) for r in rows]

    def count(self) -> int:
        rows, _ = self._execute(self._q("SELECT count(*) AS n FROM {table}"), ())
        return int(rows[0]["n"]) if rows else 0

    def close(self) -> None:
        self._pool.close()


def open_key_store(settings: Settings) -> KeyStore:
    """The key store of ``settings.database_url`` (tables exist: see ``migrate``)."""
    if settings.backend == "sqlite":
        return SQLiteKeyStore(settings.sqlite_path)
    return PostgresKeyStore(
        settings.postgres_conninfo(),
        settings.database_schema,
        max_size=max(2, settings.database_pool_size),
    )


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
