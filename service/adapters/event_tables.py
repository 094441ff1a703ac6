"""The ``eventsourcing`` library's own tables, created by the migrations
(``0004``) with the library's own DDL instead of at application start.

The statements come from the library's recorders for the names it gives
these tables, so they cannot drift from what it would create:

- PostgreSQL: the events table ``ledger_events`` (its ``notification_id``
  index and sequence, the composite type ``stored_event_uuid`` and the
  function ``es_insert_events_uuid``), ``ledger_snapshots``, and the balance
  view's tracking table ``balances_tracking``;
- SQLite: ``stored_events``, ``stored_snapshots`` and ``tracking``.

Each run is idempotent (``IF NOT EXISTS``, ``OR REPLACE``, a type only when
missing), and a tracking table the library already made keeps its rows: a
database the library populated at start is left as it is. Nothing here
connects: the caller passes the migration's own connection (one transaction).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
)
from psycopg.rows import dict_row
from psycopg.sql import Identifier

from service.config import APPLICATION_NAME

POSTGRES_EVENTS = f"{APPLICATION_NAME.lower()}_events"
POSTGRES_SNAPSHOTS = f"{APPLICATION_NAME.lower()}_snapshots"
POSTGRES_TRACKING = "balances_tracking"
"""``<projection name>_tracking`` (``BalanceProjection.name`` is ``balances``)."""
SQLITE_EVENTS, SQLITE_SNAPSHOTS = "stored_events", "stored_snapshots"
LOCK_TIMEOUT_SECONDS = 10
"""``POSTGRES_LOCK_TIMEOUT`` of ``Settings.eventsourcing_env`` (the library
formats it into ``es_insert_events_uuid``)."""
MIGRATION_ROW = "__migration__"
"""The application name of the library's tracking-table version row."""


class _PostgresDDL(PostgresDatastore):
    """The settings the library's recorders format into their DDL; never connects."""

    def __init__(self, schema: str) -> None:  # no pool: nothing to connect
        self.schema = schema or "public"
        self.originator_id_type = "uuid"
        self.lock_timeout = LOCK_TIMEOUT_SECONDS
        self.single_row_tracking = True
        self.enable_db_functions = False
        self.db_type_names = set()

    def register_type_adapters(self) -> None:
        """Nothing to register: this datastore has no connections."""


class _SQLiteDDL(SQLiteDatastore):
    """As :class:`_PostgresDDL`, for SQLite."""

    def __init__(self) -> None:  # no pool: nothing to connect
        self.single_row_tracking = True
        self.originator_id_type = "uuid"

    def close(self) -> None:
        """No pool to close."""


def create_postgres_tables(conn: psycopg.Connection[Any], schema: str | None) -> None:
    """Creates the library's tables in ``schema`` (``None``: ``public``) over
    ``conn``, in its current transaction."""
    store = _PostgresDDL(schema or "")
    events = PostgresApplicationRecorder(store, events_table_name=POSTGRES_EVENTS)
    snapshots = PostgresAggregateRecorder(store, events_table_name=POSTGRES_SNAPSHOTS)
    tracking = PostgresTrackingRecorder(store, tracking_table_name=POSTGRES_TRACKING)
    with conn.cursor(row_factory=dict_row) as curs:
        for recorder in (events, snapshots):
            curs.execute(
                "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                " WHERE n.nspname = %s AND t.typname = %s",
                (store.schema, recorder.stored_event_type_name),
            )
            if curs.fetchone() is None:  # CREATE TYPE has no IF NOT EXISTS
                for statement in recorder.sql_create_statements:
                    if "CREATE TYPE" in statement.as_string(conn):
                        curs.execute(statement)
            recorder._create_table(curs)  # the tables, index and function
        name = Identifier(store.schema, POSTGRES_TRACKING).as_string(conn)
        curs.execute("SELECT to_regclass(%s) AS found", (name,))
        row = curs.fetchone()
        if row is not None and row["found"] is not None:
            tracking.tracking_table_exists = True
            tracking.tracking_migration_previous = tracking._max_tracking_id(MIGRATION_ROW, curs)
        tracking._create_table(curs)  # the table and its version row (as the library)


def create_sqlite_tables(conn: sqlite3.Connection) -> None:
    """Creates the library's tables in the SQLite database of ``conn``."""
    store = _SQLiteDDL()
    recorders = (
        SQLiteApplicationRecorder(store, SQLITE_EVENTS),
        SQLiteAggregateRecorder(store, SQLITE_SNAPSHOTS),
    )
    tracking = SQLiteTrackingRecorder(store)
    raw = conn.cursor()
    raw.row_factory = sqlite3.Row
    curs = SQLiteCursor(raw)
    try:
        for recorder in recorders:
            recorder._create_table(curs)
        curs.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tracking'")
        if curs.fetchone() is not None:
            tracking.tracking_table_exists = True
            tracking.tracking_migration_previous = tracking._max_tracking_id(MIGRATION_ROW, curs)
        tracking._create_table(curs)  # the table and its version row (as the library)
    finally:
        raw.close()
