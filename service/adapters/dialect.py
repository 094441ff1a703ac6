"""What differs between PostgreSQL and SQLite, for SQL written once.

Statements are written once, with ``:name`` parameters and ``{table}`` fields
for table names (``{position}`` is the column of an event's global position).
A :class:`Dialect` turns them into its database's statements and runs them
(PostgreSQL / SQLite):

- parameters: ``%(name)s`` on PostgreSQL (:func:`to_pyformat`), ``:name`` on SQLite;
- table names: ``Identifier(schema, table)`` / ``"table"``;
- the position column: ``notification_id`` / ``rowid``;
- an originator id is bound as a ``UUID`` / as ``UUID.hex`` (a ``TEXT`` column);
- a read (:meth:`Dialect.fetch`): a pooled connection and a prepared
  statement / a read transaction;
- a write (:meth:`Dialect.writing`): a transaction, ``LOCK TABLE`` when asked /
  ``BEGIN IMMEDIATE``;
- one statement per row (:meth:`Dialect.each`): ``executemany(returning=True)``
  (pipelined, one round trip) / a loop;
- a unique violation: ``psycopg.errors.UniqueViolation`` / ``sqlite3.IntegrityError``.

Values are always bound; only configured table names are formatted in.
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar
from uuid import UUID

from psycopg import errors as pg_errors
from psycopg.sql import SQL, Composed, Identifier

Query = str | Composed
"""A statement of one dialect (SQLite text, or a psycopg ``Composed``)."""
Params = Mapping[str, Any]
"""Named parameters of one statement."""

_PARAM = re.compile(r"(?<![:\w]):([a-z_]+)")


def to_pyformat(statement: str) -> str:
    """``:name`` → ``%(name)s`` (psycopg's named parameter style)."""
    return _PARAM.sub(r"%(\1)s", statement)


def as_arrays(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """``rows`` (each with the same keys) as one parameter set of one list
    per key: what a PostgreSQL ``unnest(CAST(:name AS type[]), …)`` statement
    takes to write every row at once."""
    arrays: dict[str, list[Any]] = {name: [] for name in rows[0]} if rows else {}
    for row in rows:
        for name, value in row.items():
            arrays[name].append(value)
    return arrays


class Dialect(ABC):
    """How one database takes the statements written once (see the module)."""

    name: ClassVar[str]
    position: ClassVar[str]
    """The column holding an event's position in the log."""
    unique_violation: ClassVar[type[Exception]]
    """What the driver raises when an insert breaks a unique constraint."""

    @abstractmethod
    def statement(self, text: str, **tables: str) -> Query:
        """``text`` (``:name`` parameters, ``{field}`` table names given in
        ``tables``, ``{position}``) as this database's statement."""

    @abstractmethod
    def originator(self, originator_id: UUID) -> Any:
        """``originator_id`` as bound in a query."""

    @abstractmethod
    def originator_of(self, value: Any) -> UUID:
        """The originator id of a selected ``originator_id`` column."""

    @abstractmethod
    def fetch(self, datastore: Any, query: Query, params: Params) -> list[Any]:
        """The rows (``row["column"]``) of a read-only ``query`` on the
        library's ``datastore``: one round trip."""

    @abstractmethod
    def writing(self, datastore: Any, lock: Query | None = None) -> AbstractContextManager[Any]:
        """A cursor in a write transaction on the library's ``datastore``
        (after ``lock``, if given): committed when the block ends, rolled
        back when it raises."""

    @abstractmethod
    def lock(self, table: str) -> Query | None:
        """The statement taking ``table``'s write lock in :meth:`writing`
        (``None`` where the transaction holds the database's write lock)."""

    @abstractmethod
    def each(self, curs: Any, query: Query, params: Sequence[Params]) -> list[Any]:
        """Runs ``query`` once per parameter set with cursor ``curs``; the
        rows they return (``RETURNING`` or ``SELECT``), in order."""


class PostgresDialect(Dialect):
    """PostgreSQL, tables in ``schema`` (``""``: unqualified, the search path)."""

    name = "postgres"
    position = "notification_id"
    unique_violation = pg_errors.UniqueViolation

    def __init__(self, schema: str = "") -> None:
        self.schema = schema

    def table(self, name: str) -> Identifier:
        """The (schema-qualified) identifier of table ``name``."""
        return Identifier(self.schema, name) if self.schema else Identifier(name)

    def statement(self, text: str, **tables: str) -> Composed:
        names = {field: self.table(name) for field, name in tables.items()}
        return SQL(to_pyformat(text)).format(position=SQL(self.position), **names)

    def originator(self, originator_id: UUID) -> Any:
        return originator_id

    def originator_of(self, value: Any) -> UUID:
        assert isinstance(value, UUID)
        return value

    def fetch(self, datastore: Any, query: Query, params: Params) -> list[Any]:
        with datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, params, prepare=True)
            rows: list[Any] = curs.fetchall()
            return rows

    @contextmanager
    def writing(self, datastore: Any, lock: Query | None = None) -> Iterator[Any]:
        with datastore.transaction(commit=True) as curs:
            if lock is not None:
                curs.execute(lock)
            yield curs

    def lock(self, table: str) -> Composed:
        return SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self.table(table))

    def each(self, curs: Any, query: Query, params: Sequence[Params]) -> list[Any]:
        if not params:
            return []
        curs.executemany(query, params, returning=True)  # pipelined: one round trip
        rows: list[Any] = []
        while True:
            rows.extend(curs.fetchall())
            if not curs.nextset():
                return rows


class SQLiteDialect(Dialect):
    """SQLite (one file: no schema; the write lock is the database's)."""

    name = "sqlite"
    position = "rowid"
    unique_violation = sqlite3.IntegrityError

    def statement(self, text: str, **tables: str) -> str:
        names = {field: '"' + name.replace('"', '""') + '"' for field, name in tables.items()}
        return text.format(position=self.position, **names)

    def originator(self, originator_id: UUID) -> Any:
        return originator_id.hex

    def originator_of(self, value: Any) -> UUID:
        return UUID(value)

    def fetch(self, datastore: Any, query: Query, params: Params) -> list[Any]:
        with datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            rows: list[Any] = curs.fetchall()
            return rows

    @contextmanager
    def writing(self, datastore: Any, lock: Query | None = None) -> Iterator[Any]:
        # BEGIN IMMEDIATE: a deferred transaction that reads first could not
        # take the write lock after the committer's (SQLite refuses at once).
        with datastore.get_connection(commit=True) as conn:
            curs = conn.cursor()
            curs.execute("BEGIN IMMEDIATE")
            try:
                yield curs
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def lock(self, table: str) -> None:
        return None

    def each(self, curs: Any, query: Query, params: Sequence[Params]) -> list[Any]:
        rows: list[Any] = []
        for one in params:
            curs.execute(query, one)
            rows.extend(curs.fetchall())
        return rows
