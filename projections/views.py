"""The balance view: one implementation (:class:`BalanceTable`) for PostgreSQL
and SQLite (SQL in ``projections.sql``); a
:class:`~service.adapters.dialect.Dialect` holds what differs.

:meth:`~BalanceTable.apply_batch` writes a whole
:class:`~projections.batch.BatchPlan` in one transaction: one upsert per
changed account, the expiry schedule's net changes and the tracking position,
once. It first checks that the tracking position is still the one the batch
was read after (``start``), so a second runner that read the same entries can
never apply them twice: PostgreSQL locks the tracking table for it (``LOCK
TABLE … IN EXCLUSIVE MODE``), SQLite's ``BEGIN IMMEDIATE`` holds the
database's write lock. Tables are created by the migrations (``migrations/``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

from projections import sql
from projections.balances import BalanceView
from projections.batch import BatchPlan
from projections.outbox import Outbox
from service.adapters.dialect import Dialect, PostgresDialect, Query, SQLiteDialect
from service.config import APPLICATION_NAME

SQLITE_TRACKING_TABLE = "tracking"
"""The library's tracking table on SQLite (one name whatever the view)."""


def _row_to_balance(row: Any) -> dict[str, Any]:
    return {column: row[column] for column in sql.BALANCE_COLUMNS}


def _schedule_params(plan: BatchPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(to add, to remove)`` parameters of the plan's expiry schedule."""
    add, remove = [], []
    # In key order, as any other deleter's index scan: no lock-order deadlock.
    for (account_id, ref_id), due_at in sorted(plan.schedule.items()):
        if due_at is None:
            remove.append({"account_id": account_id, "ref_id": ref_id})
        else:
            add.append({"account_id": account_id, "ref_id": ref_id, "due_at": due_at})
    return add, remove


class BalanceTable(BalanceView):
    """``ledger_balances`` and ``ledger_expiry_schedule``, with the library's
    tracking recorder (a subclass below provides it and the :attr:`dialect`)."""

    datastore: Any
    dialect: Dialect
    outbox: Outbox | None = None
    """Records the webhook messages of each batch in its transaction
    (``projections.outbox``); set by the projector."""
    _max_tracking_id: Callable[[str, Any], int | None]
    _insert_tracking: Callable[[Any, Tracking], None]

    def _compile(self, dialect: Dialect, tracking_table: str) -> None:
        self.dialect = dialect

        def q(text: str) -> Query:
            return dialect.statement(text, balances=sql.BALANCES_TABLE, schedule=sql.SCHEDULE_TABLE)

        self._upsert, self._select = q(sql.UPSERT_BALANCE), q(sql.SELECT_BALANCE)
        self._limits, self._after = q(sql.SELECT_CREDIT_LIMIT), q(sql.SELECT_BALANCES_AFTER)
        self._schedule, self._unschedule = q(sql.SCHEDULE_EXPIRY), q(sql.UNSCHEDULE_EXPIRY)
        self._due, self._clear = q(sql.SELECT_DUE), q(sql.CLEAR_DUE)
        self._lock_tracking = dialect.lock(tracking_table)

    def balances_after(self, position: int, limit: int) -> list[dict[str, Any]]:
        rows = self.dialect.fetch(
            self.datastore, self._after, {"position": position, "limit": limit}
        )
        return [_row_to_balance(row) for row in rows]

    def apply_batch(
        self, plan: BatchPlan, tracking: Tracking, start: int | None, with_states: bool = True
    ) -> list[list[dict[str, Any]]] | None:
        # The tracking table first, then the balances and the schedule: the
        # order ``ledger audit rebuild`` takes them in too.
        lock = self._lock_tracking if start is not None else None
        with self.dialect.writing(self.datastore, lock) as curs:
            return self._apply(curs, plan, tracking, start, with_states)

    def apply_in(self, curs: Any, plan: BatchPlan, tracking: Tracking) -> None:
        """Applies ``plan`` with cursor ``curs``, in the caller's transaction
        (``ledger audit rebuild``)."""
        self._apply(curs, plan, tracking, None, with_states=False)

    def _apply(
        self,
        curs: Any,
        plan: BatchPlan,
        tracking: Tracking,
        start: int | None,
        with_states: bool = True,
    ) -> list[list[dict[str, Any]]] | None:
        if start is not None and (self._max_tracking_id(APPLICATION_NAME, curs) or 0) != start:
            return None
        each = self.dialect.each
        accounts = [{"account_id": account_id} for account_id in plan.limit_changes]
        prior = {
            row["account_id"]: row["credit_limit"] for row in each(curs, self._limits, accounts)
        }
        balances = []
        for row in each(curs, self._upsert, list(plan.rows.values())):
            if with_states:
                final = _row_to_balance(row)
                balances.append(plan.states(final, prior.get(final["account_id"])))
        if self.outbox is not None and with_states and balances:
            self.outbox.record(curs, plan, balances)
        add, remove = _schedule_params(plan)
        if remove:
            curs.executemany(self._unschedule, remove)
        if add:
            curs.executemany(self._schedule, add)
        self._insert_tracking(curs, tracking)
        return balances

    def get_balance(self, account_id: str) -> dict[str, Any] | None:
        rows = self.dialect.fetch(self.datastore, self._select, {"account_id": account_id})
        return _row_to_balance(rows[0]) if rows else None

    def position(self) -> int:
        return self.max_tracking_id(APPLICATION_NAME) or 0

    def due_accounts(self, now: str, limit: int) -> list[str]:
        rows = self.dialect.fetch(self.datastore, self._due, {"now": now, "limit": limit})
        return [row["account_id"] for row in rows]

    def clear_due(self, account_id: str, now: str) -> None:
        with self.dialect.writing(self.datastore) as curs:
            curs.execute(self._clear, {"account_id": account_id, "now": now})


class PostgresBalanceView(PostgresTrackingRecorder, BalanceTable):
    """:class:`BalanceTable` on PostgreSQL, tracked in ``balances_tracking``."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._compile(PostgresDialect(self.datastore.schema), self.tracking_table_name)


class SQLiteBalanceView(SQLiteTrackingRecorder, BalanceTable):
    """:class:`BalanceTable` on SQLite, tracked in the library's ``tracking`` table."""

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._compile(SQLiteDialect(), SQLITE_TRACKING_TABLE)


BALANCE_VIEWS: dict[str, type[BalanceTable]] = {
    "postgres": PostgresBalanceView,
    "sqlite": SQLiteBalanceView,
}
"""The view class of each ``Settings.backend``."""
