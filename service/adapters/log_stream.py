"""The whole log, streamed in position order with constant memory (audits).

:func:`stream_log` yields :class:`StoredRow` tuples — ``(position,
originator_id, version, topic, state)`` — after a position, for every account
or one, reading in pages over a connection of its own: a PostgreSQL
server-side cursor, or SQLite pages by rowid. What a transaction commits
while the stream runs may or may not be seen; what is seen is in order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from psycopg.sql import SQL, Composed, Identifier

PAGE = 20_000
"""Rows fetched per round trip."""


class StoredRow(NamedTuple):
    """One stored event: its position, account uuid, version, topic and JSON state."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


def stream_log(
    recorder: Any, after_position: int = 0, originator_id: UUID | None = None
) -> Iterator[StoredRow]:
    """Every stored event after ``after_position`` (of ``originator_id``'s
    account only, when given), in position order. ``recorder`` is the
    ledger's application recorder (PostgreSQL or SQLite)."""
    if hasattr(recorder.datastore, "pool") and hasattr(recorder.datastore.pool, "conninfo"):
        yield from _postgres(recorder, after_position, originator_id)
    else:
        yield from _sqlite(recorder, after_position, originator_id)


def _postgres(recorder: Any, after: int, originator_id: UUID | None) -> Iterator[StoredRow]:
    pool = recorder.datastore.pool
    options = {k: v for k, v in pool.kwargs.items() if k != "row_factory"}
    table = Composed([Identifier(recorder.datastore.schema), SQL("."),
                      Identifier(recorder.events_table_name)])  # fmt: skip
    where = SQL("notification_id > %s")
    params: tuple[Any, ...] = (after,)
    if originator_id is not None:
        where = SQL("originator_id = %s AND notification_id > %s")
        params = (originator_id, after)
    query = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state"
        " FROM {} WHERE {} ORDER BY notification_id"
    ).format(table, where)
    with (
        psycopg.connect(pool.conninfo, **options) as conn,
        conn.cursor(name="ledger_log_stream", binary=True) as cursor,
    ):
        cursor.itersize = PAGE
        cursor.execute(query, params)
        while rows := cursor.fetchmany(PAGE):
            for position, originator, version, topic, state in rows:
                yield StoredRow(position, originator, version, topic, bytes(state))


def _sqlite(recorder: Any, after: int, originator_id: UUID | None) -> Iterator[StoredRow]:
    table = recorder.events_table_name
    where = "rowid > ?" if originator_id is None else "originator_id = ? AND rowid > ?"
    query = (
        f"SELECT rowid, originator_id, originator_version, topic, state FROM {table}"  # noqa: S608
        f" WHERE {where} ORDER BY rowid LIMIT ?"
    )
    path = recorder.datastore.pool.db_name
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        last = after
        while True:
            params: tuple[Any, ...] = (last, PAGE)
            if originator_id is not None:
                params = (originator_id.hex, last, PAGE)
            rows = conn.execute(query, params).fetchall()
            for rowid, originator, version, topic, state in rows:
                yield StoredRow(rowid, UUID(originator), version, topic, bytes(state))
            if len(rows) < PAGE:
                return
            last = rows[-1][0]
    finally:
        conn.close()
