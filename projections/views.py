"""The balance view on PostgreSQL and on SQLite (same SQL, see ``projections.sql``)."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL

from projections import sql
from projections.balances import BalanceView, balance_params
from service.config import APPLICATION_NAME
from service.domain.events import LedgerEntry


def _row_to_balance(row: Any) -> dict[str, Any]:
    return {column: row[column] for column in sql.BALANCE_COLUMNS}


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

    def balances_after(self, position: int, limit: int) -> list[dict[str, Any]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._after, {"position": position, "limit": limit}, prepare=True)
            return [_row_to_balance(row) for row in curs.fetchall()]

    def apply_entry(
        self, entry: LedgerEntry, tracking: Tracking, schedule: list[tuple[str, str | None]]
    ) -> dict[str, Any] | None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._upsert, balance_params(entry, tracking), prepare=True)
            row = curs.fetchone()
            for ref_id, due_at in schedule:
                params = {"account_id": entry.account_id, "ref_id": ref_id, "due_at": due_at}
                curs.execute(self._schedule if due_at else self._unschedule, params, prepare=True)
            self._insert_tracking(curs, tracking)
        return _row_to_balance(row) if row is not None else None

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

    def apply_entry(
        self, entry: LedgerEntry, tracking: Tracking, schedule: list[tuple[str, str | None]]
    ) -> dict[str, Any] | None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._upsert, balance_params(entry, tracking))
            row = c.fetchone()
            for ref_id, due_at in schedule:
                params = {"account_id": entry.account_id, "ref_id": ref_id, "due_at": due_at}
                if due_at is None:
                    del params["due_at"]
                c.execute(self._schedule if due_at else self._unschedule, params)
            self._insert_tracking(c, tracking)
        return _row_to_balance(row) if row is not None else None

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
