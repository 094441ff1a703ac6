"""``ledger audit rebuild``: the projection tables recomputed from the log
with the projection's own code, then swapped in atomically.

PostgreSQL: empty copies of the tables (balances, expiry schedule, tracking)
are made in a staging schema and filled batch by batch, as the live
projection would (``projections.batch``, ``BalanceView.apply_batch``), while
the service keeps running. Then one transaction locks the live tables (the
live projection and direct table reads wait a moment; balance reads served
from memory do not), brings the copies up to at least the live position, and
swaps them in by renaming. The live projection notices that its position
moved (its compare-and-set fails) and carries on from the new one.

SQLite (one process): everything in one transaction: the tables are emptied
and refilled; readers see the old rows until it commits.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from projections.balances import BalanceView, tracking_at
from projections.batch import plan_batch
from service.adapters.log_stream import StoredRow, stream_log
from service.application.audit.entries import ENTRY_TYPES, collector_paused, domain_entry
from service.application.ledger import Ledger
from service.application.projector import open_balance_view
from service.config import APPLICATION_NAME, Settings

BATCH = 50_000
"""Entries applied per transaction."""
STAGING = "ledger_rebuild"
TABLES = ("ledger_balances", "ledger_expiry_schedule")


def rebuild_projection(settings: Settings) -> str:
    """Rebuilds; returns a one-line summary (entries, seconds)."""
    started = time.monotonic()
    ledger = Ledger(env=settings.eventsourcing_env())
    rebuild = _rebuild_postgres if settings.backend == "postgres" else _rebuild_sqlite
    try:
        with collector_paused():
            count = rebuild(settings, ledger)
    finally:
        ledger.close()
    seconds = time.monotonic() - started
    return f"rebuilt the projection from {count} entries in {seconds:.1f} s"


def _batches(ledger: Ledger, after: int) -> Iterator[list[tuple[Any, int]]]:
    """Decoded entries after ``after``, ``BATCH`` at a time."""
    rows = (r for r in stream_log(ledger.recorder, after) if r.topic in ENTRY_TYPES)
    mapper = ledger.mapper

    def slow(r: StoredRow) -> Any:
        return mapper.to_domain_event(StoredEvent(r.originator_id, r.version, r.topic, r.state))

    while batch := list(itertools.islice(rows, BATCH)):
        yield [(domain_entry(r, slow), r.position) for r in batch]


def _fill(view: BalanceView, ledger: Ledger, after: int) -> tuple[int, int]:
    """Applies every entry after ``after``; returns (entries, last position)."""
    count, position = 0, after
    for batch in _batches(ledger, after):
        plan = plan_batch(batch)
        view.apply_batch(plan, tracking_at(plan.last), None, with_states=False)
        count, position = count + len(batch), plan.last
    return count, position


def _rebuild_postgres(settings: Settings, ledger: Ledger) -> int:
    live_view: Any = open_balance_view(settings)
    live = settings.database_schema or "public"
    tables = (live_view.tracking_table_name, *TABLES)  # the projection's lock order
    conninfo = settings.postgres_conninfo()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(STAGING)))
        conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(STAGING)))
        for table in tables:
            conn.execute(
                SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)").format(
                    Identifier(STAGING), Identifier(table), Identifier(live), Identifier(table)
                )
            )
    staging = open_balance_view(settings.model_copy(update={"database_schema": STAGING}))
    count, position = _fill(staging, ledger, 0)
    caught_up, position = _fill(staging, ledger, position)  # shortens the locked catch-up
    count += caught_up
    with psycopg.connect(conninfo) as conn:  # one transaction: the swap
        conn.execute("SET LOCAL lock_timeout = '10s'")
        conn.execute(
            SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                SQL(", ").join(SQL("{}.{}").format(Identifier(live), Identifier(t)) for t in tables)
            )
        )
        more, position = _fill(staging, ledger, position)  # the live position is held still
        for table in tables:
            old, new = Identifier(live, table), Identifier(STAGING, table)
            conn.execute(SQL("DROP TABLE {}").format(old))
            conn.execute(SQL("ALTER TABLE {} SET SCHEMA {}").format(new, Identifier(live)))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(STAGING)))
    return count + more


def _rebuild_sqlite(settings: Settings, ledger: Ledger) -> int:
    view: Any = open_balance_view(settings)
    count = 0
    with view.datastore.transaction(commit=True) as cursor:
        cursor.execute("DELETE FROM ledger_balances")
        cursor.execute("DELETE FROM ledger_expiry_schedule")
        cursor.execute("DELETE FROM tracking WHERE application_name = ?", (APPLICATION_NAME,))
        for batch in _batches(ledger, 0):
            plan = plan_batch(batch)
            view.apply_in(cursor, plan, tracking_at(plan.last))
            count += len(batch)
    return count
