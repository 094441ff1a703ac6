"""Autocommit connections of the stores outside the event store (API keys).

:class:`PostgresConnections` (a small ``psycopg_pool`` pool) and
:class:`SQLiteConnection` (one ``sqlite3`` connection, serialized by a lock)
run statements written once (``:name`` parameters, ``{table}`` fields) through
their :attr:`~Connections.dialect`. Neither creates a table: the migrations do.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from service.adapters.dialect import Dialect, Params, PostgresDialect, Query, SQLiteDialect

Rows = tuple[list[Any], int]
"""The rows a statement returned (``row["column"]``) and how many it changed."""


class Connections(ABC):
    """Runs one statement at a time, each committed on its own."""

    dialect: Dialect

    @abstractmethod
    def execute(self, query: Query, params: Params) -> Rows:
        """Runs ``query`` (compiled by :attr:`dialect`); see :data:`Rows`.

        Raises:
            dialect.unique_violation: an insert broke a unique constraint.
        """

    @abstractmethod
    def execute_batches(self, batches: Sequence[tuple[Query, Sequence[Params]]]) -> None:
        """Runs each ``(query, params)`` once per parameter set, in order,
        all in one transaction."""

    @abstractmethod
    def close(self) -> None: ...


class PostgresConnections(Connections):
    """A pool of ``max_size`` connections (one kept open), tables in ``schema``."""

    def __init__(self, conninfo: str, schema: str = "", max_size: int = 4) -> None:
        self.dialect = PostgresDialect(schema)
        self._pool: ConnectionPool[Any] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=True,
            timeout=2.0,  # seconds to wait for a connection
            kwargs={"autocommit": True, "row_factory": dict_row},
        )

    def execute(self, query: Query, params: Params) -> Rows:
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            rows: list[Any] = cur.fetchall() if cur.description else []
            return rows, cur.rowcount

    def execute_batches(self, batches: Sequence[tuple[Query, Sequence[Params]]]) -> None:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for query, params in batches:
                cur.executemany(query, params)

    def close(self) -> None:
        self._pool.close()


class SQLiteConnection(Connections):
    """One connection to the SQLite file at ``path`` (WAL), used by one thread at a time."""

    def __init__(self, path: str) -> None:
        self.dialect = SQLiteDialect()
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            path, check_same_thread=False, timeout=30.0, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")

    def execute(self, query: Query, params: Params) -> Rows:
        assert isinstance(query, str)
        with self._lock:
            cursor = self._conn.execute(query, params)
            return cursor.fetchall(), cursor.rowcount

    def execute_batches(self, batches: Sequence[tuple[Query, Sequence[Params]]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for query, params in batches:
                    assert isinstance(query, str)
                    self._conn.executemany(query, params)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
