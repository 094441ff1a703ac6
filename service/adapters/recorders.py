"""Application recorders that also keep idempotency keys and list entries.

The idempotency records of a group of writes are inserted in the same
transaction as their events (:meth:`record_group`, see
``service.adapters.group_commit``), so either both are stored or neither is.
The reads are written once (:class:`LedgerReads`), for both databases; a
:class:`~service.adapters.dialect.Dialect` holds what differs. Every table is
created by the migrations (``migrations/``). All SQL is parameterized.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from service.adapters.dialect import Dialect, PostgresDialect, Query, SQLiteDialect
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

    async def close_connection(self) -> None:
        """Closes the connection :meth:`record_group_async` keeps."""
        ...


SELECT_IDEMPOTENCY = (
    "SELECT account_id, key, fingerprint, entry_version FROM {keys}"
    " WHERE account_id = :account_id AND key = :key"
)
SELECT_ENTRIES = (
    "SELECT {position} AS position, originator_id, originator_version, topic, state"
    " FROM {events} WHERE originator_id = :originator_id AND originator_version > :after"
    " ORDER BY originator_version LIMIT :limit"
)
SELECT_VERSION_AT = (
    "SELECT COALESCE(MAX(originator_version), 0) AS version FROM {events}"
    " WHERE originator_id = :originator_id AND {position} <= :position"
)
SELECT_LAST_POSITION = (
    "SELECT {position} AS position FROM {events} WHERE originator_id = :originator_id"
    " ORDER BY originator_version DESC LIMIT 1"
)


class LedgerReads:
    """The reads of :class:`LedgerRecorder`, one implementation for both
    databases: :attr:`dialect` compiles and runs them (one round trip each)."""

    datastore: Any
    events_table_name: str
    dialect: Dialect

    def _compile_reads(self, dialect: Dialect) -> None:
        self.dialect = dialect

        def q(text: str) -> Query:
            return dialect.statement(text, events=self.events_table_name, keys=IDEMPOTENCY_TABLE)

        self._select_idempotency = q(SELECT_IDEMPOTENCY)
        self._select_entries = q(SELECT_ENTRIES)
        self._select_version_at = q(SELECT_VERSION_AT)
        self._select_last_position = q(SELECT_LAST_POSITION)

    def _fetch(self, query: Query, **params: Any) -> list[Any]:
        return self.dialect.fetch(self.datastore, query, params)

    def last_position(self, originator_id: UUID) -> int:
        """The position of the account's last stored event (0: none)."""
        rows = self._fetch(
            self._select_last_position, originator_id=self.dialect.originator(originator_id)
        )
        return int(rows[0]["position"]) if rows else 0

    def version_at_position(self, originator_id: UUID, position: int) -> int:
        """The account's last version at or before global ``position`` (0: none)."""
        rows = self._fetch(
            self._select_version_at,
            originator_id=self.dialect.originator(originator_id),
            position=position,
        )
        return int(rows[0]["version"]) if rows else 0

    def idempotency_record(self, account_id: str, key: str) -> IdempotencyRecord | None:
        """The record of ``key`` for ``account_id``, or ``None``."""
        rows = self._fetch(self._select_idempotency, account_id=account_id, key=key)
        if not rows:
            return None
        row = rows[0]
        return IdempotencyRecord(
            row["account_id"], row["key"], row["fingerprint"], row["entry_version"]
        )

    def select_entries(
        self, originator_id: UUID, after_version: int, limit: int
    ) -> Sequence[Notification]:
        """Up to ``limit`` of the account's stored events after ``after_version``,
        in version order, each with its position as ``id``."""
        rows = self._fetch(
            self._select_entries,
            originator_id=self.dialect.originator(originator_id),
            after=after_version,
            limit=limit,
        )
        return [
            Notification(
                id=row["position"],
                originator_id=self.dialect.originator_of(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]


class PostgresLedgerRecorder(LedgerReads, PostgresGroupCommit, PostgresApplicationRecorder):
    """PostgreSQL recorder with idempotency records and per-account entry reads."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self._compile_reads(PostgresDialect(self.datastore.schema))


class SQLiteLedgerRecorder(LedgerReads, SQLiteGroupCommit, SQLiteApplicationRecorder):
    """SQLite recorder with idempotency records and per-account entry reads."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self._compile_reads(SQLiteDialect())
