"""Application recorders that also keep idempotency keys and list entries.

The idempotency records of a group of writes are inserted in the same
transaction as their events (:meth:`record_group`, see
``service.adapters.group_commit``), so either both are stored or neither is.
Its table, ``ledger_idempotency_keys``, is created by the migrations
(``migrations/``). All SQL is parameterized.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg.sql import SQL, Identifier

from service.adapters.group_commit import (
    GroupWrite,
    PostgresGroupCommit,
    Refused,
    SQLiteGroupCommit,
)
from service.adapters.idempotency_records import IDEMPOTENCY_TABLE, IdempotencyRecord


class LedgerRecorder(Protocol):
    """The queries the ledger needs beyond the library's recorder interface."""

    def idempotency_record(self, account_id: str, key: str) -> IdempotencyRecord | None:
        """The record of ``key`` for ``account_id``, or ``None``."""
        ...

    def select_entries(
        self, originator_id: UUID, after_version: int, limit: int
    ) -> Sequence[Notification]:
        """Up to ``limit`` stored events of one account with version greater
        than ``after_version`` (≥ 0 skips the opening event), in version order,
        each with its position as ``id``."""
        ...

    def version_at_position(self, originator_id: UUID, position: int) -> int:
        """The account's last version at or before global ``position`` (0: none)."""
        ...

    def last_position(self, originator_id: UUID) -> int:
        """The position of the account's last stored event (0: none)."""
        ...

    async def record_group_async(
        self, write: GroupWrite, alive: Callable[[], Awaitable[bool]] | None = None
    ) -> list[int] | Refused:
        """Records a group of writes in one transaction (see ``group_commit``)."""
        ...

    async def events_after_async(self, versions: dict[UUID, int]) -> list[StoredEvent]:
        """Each account's stored events after the version given."""
        ...

    def create_group_function(self) -> None:
        """Creates what :meth:`record_group` needs in the database."""
        ...


class PostgresLedgerRecorder(PostgresGroupCommit, PostgresApplicationRecorder):
    """PostgreSQL recorder with idempotency records and per-account entry reads."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(IDEMPOTENCY_TABLE)
        self._select_idempotency = SQL(
            "SELECT account_id, key, fingerprint, entry_version FROM {}.{}"
            " WHERE account_id = %s AND key = %s"
        ).format(schema, table)
        self._select_entries = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {}.{} WHERE originator_id = %s AND originator_version > %s"
            " ORDER BY originator_version LIMIT %s"
        ).format(schema, Identifier(self.events_table_name))
        self._select_version_at = SQL(
            "SELECT COALESCE(MAX(originator_version), 0) AS version FROM {}.{}"
            " WHERE originator_id = %s AND notification_id <= %s"
        ).format(schema, Identifier(self.events_table_name))
        self._select_last_position = SQL(
            "SELECT notification_id FROM {}.{} WHERE originator_id = %s"
            " ORDER BY originator_version DESC LIMIT 1"
        ).format(schema, Identifier(self.events_table_name))

    def last_position(self, originator_id: UUID) -> int:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_last_position, (originator_id,), prepare=True)
            row = curs.fetchone()
        return int(row["notification_id"]) if row is not None else 0

    def version_at_position(self, originator_id: UUID, position: int) -> int:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_version_at, (originator_id, position), prepare=True)
            row = curs.fetchone()
        return int(row["version"]) if row is not None else 0

    def idempotency_record(self, account_id: str, key: str) -> IdempotencyRecord | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_idempotency, (account_id, key), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        return IdempotencyRecord(
            row["account_id"], row["key"], row["fingerprint"], row["entry_version"]
        )

    def select_entries(
        self, originator_id: UUID, after_version: int, limit: int
    ) -> Sequence[Notification]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_entries, (originator_id, after_version, limit), prepare=True)
            return [
                Notification(
                    id=row["notification_id"],
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]


class SQLiteLedgerRecorder(SQLiteGroupCommit, SQLiteApplicationRecorder):
    """SQLite recorder with idempotency records and per-account entry reads."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self._select_idempotency = (
            "SELECT account_id, key, fingerprint, entry_version"
            f" FROM {IDEMPOTENCY_TABLE} WHERE account_id = ? AND key = ?"
        )
        self._select_entries = (
            f"SELECT rowid, originator_id, originator_version, topic, state"
            f" FROM {self.events_table_name} WHERE originator_id = ?"
            " AND originator_version > ? ORDER BY originator_version LIMIT ?"
        )
        self._select_version_at = (
            f"SELECT COALESCE(MAX(originator_version), 0) AS version FROM {self.events_table_name}"
            " WHERE originator_id = ? AND rowid <= ?"
        )
        self._select_last_position = (
            f"SELECT rowid FROM {self.events_table_name} WHERE originator_id = ?"
            " ORDER BY originator_version DESC LIMIT 1"
        )

    def last_position(self, originator_id: UUID) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_last_position, (originator_id.hex,))
            row = c.fetchone()
        return int(row["rowid"]) if row is not None else 0

    def version_at_position(self, originator_id: UUID, position: int) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_version_at, (originator_id.hex, position))
            row = c.fetchone()
        return int(row["version"]) if row is not None else 0

    def idempotency_record(self, account_id: str, key: str) -> IdempotencyRecord | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_idempotency, (account_id, key))
            row = c.fetchone()
        if row is None:
            return None
        return IdempotencyRecord(
            row["account_id"], row["key"], row["fingerprint"], row["entry_version"]
        )

    def select_entries(
        self, originator_id: UUID, after_version: int, limit: int
    ) -> Sequence[Notification]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_entries, (originator_id.hex, after_version, limit))
            return [
                Notification(
                    id=row["rowid"],
                    originator_id=self.convert_originator_id(row["originator_id"]),
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=row["state"],
                )
                for row in c.fetchall()
            ]
