"""SQL of the balance view, written once with ``:name`` parameters.

Table names are ``{balances}`` (``ledger_balances``) and ``{schedule}``
(``ledger_expiry_schedule``): a :class:`~service.adapters.dialect.Dialect`
formats them in (schema-qualified identifiers on PostgreSQL) and turns the
parameters into its driver's style (:func:`~service.adapters.dialect.to_pyformat`
for psycopg). Values are always bound, never interpolated.
"""

from __future__ import annotations

from service.domain.values import COUNTERS

BALANCES_TABLE = "ledger_balances"
SCHEDULE_TABLE = "ledger_expiry_schedule"

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

_increments = ", ".join(f"{c} = {{balances}}.{c} + excluded.{c}" for c in COUNTERS)

UPSERT_BALANCE = (
    "INSERT INTO {balances} ("
    + ", ".join(BALANCE_COLUMNS)
    + ") VALUES ("
    + ", ".join(f":{c}" for c in BALANCE_COLUMNS)
    + ")"
    " ON CONFLICT (account_id) DO UPDATE SET " + _increments + ","
    " credit_limit = CASE WHEN CAST(:new_limit AS BIGINT) IS NULL"
    " THEN {balances}.credit_limit ELSE excluded.credit_limit END,"
    " version = excluded.version, position = excluded.position,"
    " updated_at = excluded.updated_at, hash = excluded.hash"
    " WHERE {balances}.version < excluded.version"
    " RETURNING " + ", ".join(BALANCE_COLUMNS)
)
"""One account's row of a batch: counters added, the rest replaced, unless
the stored row is already at or past the batch's version (no row returned)."""

SELECT_BALANCE = (
    "SELECT " + ", ".join(BALANCE_COLUMNS) + " FROM {balances} WHERE account_id = :account_id"
)

SELECT_CREDIT_LIMIT = (
    "SELECT account_id, credit_limit FROM {balances} WHERE account_id = :account_id"
)

SELECT_BALANCES_AFTER = (
    "SELECT " + ", ".join(BALANCE_COLUMNS) + " FROM {balances}"
    " WHERE position > :position ORDER BY position LIMIT :limit"
)

SCHEDULE_EXPIRY = (
    "INSERT INTO {schedule} (account_id, ref_id, due_at)"
    " VALUES (:account_id, :ref_id, :due_at) ON CONFLICT (account_id, ref_id) DO NOTHING"
)

UNSCHEDULE_EXPIRY = "DELETE FROM {schedule} WHERE account_id = :account_id AND ref_id = :ref_id"

SELECT_DUE = "SELECT DISTINCT account_id FROM {schedule} WHERE due_at <= :now LIMIT :limit"

CLEAR_DUE = "DELETE FROM {schedule} WHERE account_id = :account_id AND due_at <= :now"
