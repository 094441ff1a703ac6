"""The balance view on PostgreSQL and on SQLite (same SQL, see ``projections.sql``).

:meth:`apply_batch` writes a whole :class:`~projections.batch.BatchPlan` in one
transaction: one upsert per changed account, the expiry schedule's net
changes and the tracking position, once. It first checks that the tracking
position is still the one the batch was read after (``start``), so a second
runner that read the same entries can never apply them twice.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier

from projections import sql
from projections.balances import BalanceView
from projections.batch import BatchPlan
from service.config import APPLICATION_NAME


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


class PostgresBalanceView(PostgresTrackingRecorder, BalanceView):
    """``ledger_balances`` on PostgreSQL, tracked in ``balances_tracking``."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        prefix = f'"{self.datastore.schema}".'

        def q(statement: str) -> SQL:
            return SQL(sql.to_pyformat(statement.replace("{t}", prefix)))

        self._upsert, self._select = q(sql.UPSERT_BALANCE), q(sql.SELECT_BALANCE)
        self._schedule, self._unschedule = q(sql.SCHEDULE_EXPIRY), q(sql.UNSCHEDULE_EXPIRY)
        self._due, self._clear = q(sql.SELECT_DUE), q(sql.CLEAR_DUE)
        self._after = q(sql.SELECT_BALANCES_AFTER)
        self._tracked = SQL(
            "SELECT max(notification_id) AS position FROM {}.{} WHERE application_name = %s"
        ).format(Identifier(self.datastore.schema), Identifier(self.tracking_table_name))
        self._limits = SQL(
            "SELECT account_id, credit_limit FROM {}.ledger_balances WHERE account_id = ANY(%s)"
        ).format(Identifier(self.datastore.schema))
        self._lock_tracking = SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
            Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
        )

    def balances_after(self, position: int, limit: int) -> list[dict[str, Any]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._after, {"position": position, "limit": limit}, prepare=True)
            return [_row_to_balance(row) for row in curs.fetchall()]

    def apply_batch(
        self, plan: BatchPlan, tracking: Tracking, start: int | None, with_states: bool = True
    ) -> list[list[dict[str, Any]]] | None:
        with self.datastore.transaction(commit=True) as curs:
            if start is not None:
                curs.execute(self._lock_tracking)
                curs.execute(self._tracked, (APPLICATION_NAME,), prepare=True)
                row = curs.fetchone()
                current = (row["position"] if row else None) or 0
                if current != start:
                    return None
            prior: dict[str, int] = {}
            if plan.limit_changes:
                curs.execute(self._limits, (plan.limit_changes,))
                prior = {row["account_id"]: row["credit_limit"] for row in curs.fetchall()}
            rows = list(plan.rows.values())
            curs.executemany(self._upsert, rows, returning=True)
            balances = []
            while True:
                row = curs.fetchone()
                if row is not None and with_states:
                    final = _row_to_balance(row)
                    balances.append(plan.states(final, prior.get(final["account_id"])))
                if not curs.nextset():
                    break
            add, remove = _schedule_params(plan)
            if remove:
                curs.executemany(self._unschedule, remove)
            if add:
                curs.executemany(self._schedule, add)
            self._insert_tracking(curs, tracking)
        return balances

    def get_balance(self, account_id: str) -> dict[str, Any] | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select, {"account_id": account_id}, prepare=True)
            row = curs.fetchone()
        return _row_to_balance(row) if row is not None else None

    def position(self) -> int:
        return self.max_tracking_id(APPLICATION_NAME) or 0

    def due_accounts(self, now: str, limit: int) -> list[str]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._due, {"now": now, "limit": limit})
            return [row["account_id"] for row in curs.fetchall()]

    def clear_due(self, account_id: str, now: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._clear, {"account_id": account_id, "now": now})


class SQLiteBalanceView(SQLiteTrackingRecorder, BalanceView):
    """``ledger_balances`` on SQLite, tracked in the library's ``tracking`` table."""

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)

        def q(statement: str) -> str:
            return statement.replace("{t}", "")

        self._upsert, self._select = q(sql.UPSERT_BALANCE), q(sql.SELECT_BALANCE)
        self._schedule, self._unschedule = q(sql.SCHEDULE_EXPIRY), q(sql.UNSCHEDULE_EXPIRY)
        self._due, self._clear = q(sql.SELECT_DUE), q(sql.CLEAR_DUE)
        self._after = q(sql.SELECT_BALANCES_AFTER)

    def balances_after(self, position: int, limit: int) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._after, {"position": position, "limit": limit})
            return [_row_to_balance(row) for row in c.fetchall()]

    def apply_batch(
        self, plan: BatchPlan, tracking: Tracking, start: int | None, with_states: bool = True
    ) -> list[list[dict[str, Any]]] | None:
        # BEGIN IMMEDIATE: a deferred transaction that reads first could not
        # take the write lock after the committer's (SQLite refuses at once).
        with self.datastore.get_connection(commit=True) as conn:
            c = conn.cursor()
            c.execute("BEGIN IMMEDIATE")
            try:
                balances = self._apply(c, plan, tracking, start, with_states)
            except BaseException:
                conn.rollback()
                raise
            if balances is None:
                conn.rollback()
            else:
                conn.commit()
            return balances

    def apply_in(self, c: Any, plan: BatchPlan, tracking: Tracking) -> None:
        """Applies ``plan`` with cursor ``c``, in the caller's transaction
        (``ledger audit rebuild``)."""
        self._apply(c, plan, tracking, None, with_states=False)

    def _apply(
        self,
        c: Any,
        plan: BatchPlan,
        tracking: Tracking,
        start: int | None,
        with_states: bool = True,
    ) -> list[list[dict[str, Any]]] | None:
        if start is not None and (self._max_tracking_id(APPLICATION_NAME, c) or 0) != start:
            return None
        prior: dict[str, int] = {}
        for account_id in plan.limit_changes:
            c.execute(
                "SELECT credit_limit FROM ledger_balances WHERE account_id = ?", (account_id,)
            )
            row = c.fetchone()
            if row is not None:
                prior[account_id] = row["credit_limit"]
        balances = []
        for params in plan.rows.values():
            c.execute(self._upsert, params)
            row = c.fetchone()
            if row is not None and with_states:
                final = _row_to_balance(row)
                balances.append(plan.states(final, prior.get(final["account_id"])))
        add, remove = _schedule_params(plan)
        for params in remove:
            c.execute(self._unschedule, params)
        for params in add:
            c.execute(self._schedule, params)
        self._insert_tracking(c, tracking)
        return balances

    def get_balance(self, account_id: str) -> dict[str, Any] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select, {"account_id": account_id})
            row = c.fetchone()
        return _row_to_balance(row) if row is not None else None

    def position(self) -> int:
        return self.max_tracking_id(APPLICATION_NAME) or 0

    def due_accounts(self, now: str, limit: int) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._due, {"now": now, "limit": limit})
            return [row["account_id"] for row in c.fetchall()]

    def clear_due(self, account_id: str, now: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._clear, {"account_id": account_id, "now": now})
