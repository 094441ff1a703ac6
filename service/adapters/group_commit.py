"""Group commit: many accounts' new entries and idempotency records in one
transaction, one table lock, one commit.

:meth:`record_group` runs, inside one transaction that holds the event table's
write lock (PostgreSQL ``LOCK TABLE … IN EXCLUSIVE MODE``, as the
``eventsourcing`` recorder takes it so positions commit in order; SQLite
``BEGIN IMMEDIATE``):

1. one query finds the accounts whose stored version moved past the version
   the caller's aggregates were at (another process wrote meanwhile), and the
   idempotency records that already exist for the group's keys;
2. ``build(conflicted, existing)`` returns the rows to write (the caller
   reloads and re-runs only the commands of conflicted accounts; the lock is
   still held, so nothing can move again);
3. the events are inserted in one statement (PostgreSQL) and the idempotency
   records with them, then the transaction commits.

Every value is bound; table names are configured identifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from service.adapters.idempotency_records import IDEMPOTENCY_TABLE, IdempotencyRecord

Existing = dict[tuple[str, str], IdempotencyRecord]
"""Stored idempotency records by ``(account_id, key)``."""


@dataclass
class GroupWrite:
    """What a group commit writes: stored events (any accounts, each account's
    in version order) and the idempotency records of the commands."""

    events: list[StoredEvent] = field(default_factory=list)
    idempotency: list[IdempotencyRecord] = field(default_factory=list)


Build = Callable[[set[UUID], Existing], GroupWrite]
"""``build(conflicted account ids, existing records) -> GroupWrite``."""


def _record_of(row: Any) -> IdempotencyRecord:
    return IdempotencyRecord(
        row["account_id"], row["key"], row["fingerprint"], row["status"], row["entry_version"]
    )


class PostgresGroupCommit:
    """Mixin for :class:`PostgresLedgerRecorder`."""

    datastore: Any
    events_table_name: str
    channel_name: str
    lock_table_statements: list[Any]

    def _group_statements(self) -> tuple[SQL, SQL, SQL, SQL]:
        cached = getattr(self, "_group_sql", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        schema, events = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        idem = Identifier(IDEMPOTENCY_TABLE)
        statements = (
            SQL(
                "SELECT u.id AS originator_id FROM unnest(%s::uuid[], %s::bigint[]) AS u(id, v)"
                " WHERE EXISTS (SELECT 1 FROM {}.{} t WHERE t.originator_id = u.id"
                " AND t.originator_version > u.v)"
            ).format(schema, events),
            SQL(
                "SELECT i.account_id, i.key, i.fingerprint, i.status, i.entry_version"
                " FROM {}.{} i JOIN unnest(%s::text[], %s::text[]) AS u(a, k)"
                " ON i.account_id = u.a AND i.key = u.k"
            ).format(schema, idem),
            SQL(
                "INSERT INTO {}.{} (originator_id, originator_version, topic, state)"
                " SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])"
                " RETURNING notification_id, originator_id, originator_version"
            ).format(schema, events),
            SQL(
                "INSERT INTO {}.{} (account_id, key, fingerprint, status, entry_version)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[],"
                " %s::bigint[])"
            ).format(schema, idem),
        )
        self._group_sql = statements
        return statements

    def record_group(
        self, versions: dict[UUID, int], keys: Sequence[tuple[str, str]], build: Build
    ) -> list[int]:
        """Records a group; returns the positions of ``build``'s events, in order.

        ``versions``: each touched account's version before its new entries
        (-1 for an account with none stored). Raises psycopg errors when the
        database fails (nothing is written then).
        """
        check, select_keys, insert_events, insert_keys = self._group_statements()
        ids, vs = list(versions), list(versions.values())
        notify = SQL("NOTIFY {}").format(Identifier(self.channel_name))
        with self.datastore.get_connection() as conn:
            # Two round trips: lock + checks, then inserts + commit (pipeline mode).
            with conn.pipeline() as pipeline, conn.transaction():
                lock, checked, found = conn.cursor(), conn.cursor(), conn.cursor()
                for statement in self.lock_table_statements:
                    lock.execute(statement, prepare=True)
                checked.execute(check, (ids, vs), prepare=True)
                if keys:
                    accounts, names = [a for a, _ in keys], [k for _, k in keys]
                    found.execute(select_keys, (accounts, names), prepare=True)
                pipeline.sync()
                conflicted = {row["originator_id"] for row in checked.fetchall()}
                existing: Existing = {}
                if keys:
                    existing = {(r["account_id"], r["key"]): _record_of(r) for r in found}
                write = build(conflicted, existing)
                events, records = write.events, write.idempotency
                inserted = conn.cursor()
                if events:
                    inserted.execute(
                        insert_events,
                        (
                            [e.originator_id for e in events],
                            [e.originator_version for e in events],
                            [e.topic for e in events],
                            [e.state for e in events],
                        ),
                        prepare=True,
                    )
                if records:
                    conn.cursor().execute(
                        insert_keys,
                        (
                            [r.account_id for r in records],
                            [r.key for r in records],
                            [r.fingerprint for r in records],
                            [r.status for r in records],
                            [r.version for r in records],
                        ),
                        prepare=True,
                    )
                if events:
                    conn.cursor().execute(notify)
            if not events:
                return []
            by_key = {
                (row["originator_id"], row["originator_version"]): row["notification_id"]
                for row in inserted.fetchall()
            }
        return [by_key[(e.originator_id, e.originator_version)] for e in events]


class SQLiteGroupCommit:
    """Mixin for :class:`SQLiteLedgerRecorder` (``BEGIN IMMEDIATE``)."""

    datastore: Any
    events_table_name: str
    insert_events_statement: str

    def record_group(
        self, versions: dict[UUID, int], keys: Sequence[tuple[str, str]], build: Build
    ) -> list[int]:
        """As :meth:`PostgresGroupCommit.record_group`."""
        with self.datastore.get_connection(commit=True) as conn:
            curs = conn.cursor()
            curs.execute("BEGIN IMMEDIATE")
            try:
                positions = self._record_group(curs, versions, keys, build)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return positions

    def _record_group(
        self, curs: Any, versions: dict[UUID, int], keys: Sequence[tuple[str, str]], build: Build
    ) -> list[int]:
        conflicted: set[UUID] = set()
        for originator_id, version in versions.items():
            curs.execute(
                f"SELECT MAX(originator_version) AS v FROM {self.events_table_name}"
                " WHERE originator_id = ?",
                (originator_id.hex,),
            )
            row = curs.fetchone()
            if row["v"] is not None and row["v"] > version:
                conflicted.add(originator_id)
        existing: Existing = {}
        for account_id, key in keys:
            curs.execute(
                "SELECT account_id, key, fingerprint, status, entry_version"
                f" FROM {IDEMPOTENCY_TABLE} WHERE account_id = ? AND key = ?",
                (account_id, key),
            )
            row = curs.fetchone()
            if row is not None:
                existing[(account_id, key)] = _record_of(row)
        write = build(conflicted, existing)
        positions = []
        for e in write.events:
            curs.execute(
                self.insert_events_statement,
                (e.originator_id.hex, e.originator_version, e.topic, e.state),
            )
            positions.append(int(curs.lastrowid))
        if write.idempotency:
            curs.executemany(
                f"INSERT INTO {IDEMPOTENCY_TABLE}"
                " (account_id, key, fingerprint, status, entry_version) VALUES (?, ?, ?, ?, ?)",
                [
                    (r.account_id, r.key, r.fingerprint, r.status, r.version)
                    for r in write.idempotency
                ],
            )
        return positions
