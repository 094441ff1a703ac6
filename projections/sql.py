"""SQL of the balance view, written once with ``:name`` parameters.

SQLite takes them as they are; :func:`to_pyformat` turns them into psycopg's
``%(name)s`` for PostgreSQL. Values are always bound, never interpolated; only
the schema-qualified table prefix (a configured identifier) is formatted in.
"""

from __future__ import annotations

import re

from service.domain.values import COUNTERS

BALANCE_COLUMNS = (
    "account_id",
    *COUNTERS[:2],
    "credit_limit",
    *COUNTERS[2:],
    "version",
    "position",
    "updated_at",
    "hash",
)

_increments = ", ".join(f"{c} = {{t}}ledger_balances.{c} + excluded.{c}" for c in COUNTERS)

UPSERT_BALANCE = (
    "INSERT INTO {t}ledger_balances ("
    + ", ".join(BALANCE_COLUMNS)
    + ") VALUES ("
    + ", ".join(f":{c}" for c in BALANCE_COLUMNS)
    + ")"
    " ON CONFLICT (account_id) DO UPDATE SET " + _increments + ","
    " credit_limit = CASE WHEN CAST(:new_limit AS BIGINT) IS NULL"
    " THEN {t}ledger_balances.credit_limit ELSE excluded.credit_limit END,"
    " version = excluded.version, position = excluded.position,"
    " updated_at = excluded.updated_at, hash = excluded.hash"
    " WHERE {t}ledger_balances.version < excluded.version"
    " RETURNING " + ", ".join(BALANCE_COLUMNS)
)

SELECT_BALANCE = (
    "SELECT " + ", ".join(BALANCE_COLUMNS) + " FROM {t}ledger_balances"
    " WHERE account_id = :account_id"
)

SELECT_BALANCES_AFTER = (
    "SELECT " + ", ".join(BALANCE_COLUMNS) + " FROM {t}ledger_balances"
    " WHERE position > :position ORDER BY position LIMIT :limit"
)

SCHEDULE_EXPIRY = (
    "INSERT INTO {t}ledger_expiry_schedule (account_id, ref_id, due_at)"
    " VALUES (:account_id, :ref_id, :due_at) ON CONFLICT (account_id, ref_id) DO NOTHING"
)

UNSCHEDULE_EXPIRY = (
    "DELETE FROM {t}ledger_expiry_schedule WHERE account_id = :account_id AND ref_id = :ref_id"
)

SELECT_DUE = (
    "SELECT DISTINCT account_id FROM {t}ledger_expiry_schedule WHERE due_at <= :now LIMIT :limit"
)

CLEAR_DUE = (
    "DELETE FROM {t}ledger_expiry_schedule WHERE account_id = :account_id AND due_at <= :now"
)

_PARAM = re.compile(r"(?<![:\w]):([a-z_]+)")


def to_pyformat(statement: str) -> str:
    """``:name`` → ``%(name)s`` (psycopg's named parameter style)."""
    return _PARAM.sub(r"%(\1)s", statement)
