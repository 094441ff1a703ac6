"""The migrations upgrade a database that earlier releases wrote, keeping its rows."""

from __future__ import annotations

import psycopg
import pytest

from service.adapters.migrate import migrate
from service.config import Settings
from tests.helpers.servers import fresh_postgres_database

pytestmark = pytest.mark.integration

OLD_RECORD_GROUP = (
    "CREATE FUNCTION ledger_record_group(uuid[], bigint[], text[], text[], uuid[], bigint[],"
    " text[], bytea[], text[], text[], text[], int[], bigint[]) RETURNS void"
    " LANGUAGE sql AS ''"
)


def _columns(conn: psycopg.Connection[tuple[object, ...]], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        " ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(row[0]) for row in rows]


def test_idempotency_records_lose_their_http_status_and_keep_their_rows() -> None:
    with fresh_postgres_database() as url:
        settings = Settings(database_url=url)
        migrate(settings, "0002")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ledger_idempotency_keys"
                " (account_id, key, fingerprint, status, entry_version)"
                " VALUES ('a', 'k', 'f', 201, 3)"
            )
            conn.execute(OLD_RECORD_GROUP)
        migrate(settings)
        with psycopg.connect(url, autocommit=True) as conn:
            columns = _columns(conn, "ledger_idempotency_keys")
            rows = conn.execute("SELECT * FROM ledger_idempotency_keys").fetchall()
            overloads = conn.execute(
                "SELECT count(*) FROM pg_proc WHERE proname = 'ledger_record_group'"
            ).fetchone()
        assert columns == ["account_id", "key", "fingerprint", "entry_version"]
        assert rows == [("a", "k", "f", 3)]
        assert overloads == (0,)


def test_the_webhook_totals_start_from_the_outbox_as_it_is() -> None:
    with fresh_postgres_database() as url:
        settings = Settings(database_url=url)
        migrate(settings, "0006")
        with psycopg.connect(url, autocommit=True) as conn:
            for position, status, attempts in [
                (1, "delivered", 1),
                (2, "delivered", 3),
                (3, "failed", 8),
                (4, "pending", 2),
            ]:
                conn.execute(
                    "INSERT INTO ledger_webhook_outbox (position, endpoint_id, ordinal,"
                    " webhook_id, account_id, type, body, status, attempts, created_at)"
                    " VALUES (%s, 'ep', 0, %s, 'a', 'entry.created', '\\x7b7d', %s, %s, 0)",
                    (position, f"msg_{position}", status, attempts),
                )
        migrate(settings)
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT name, value FROM ledger_webhook_totals").fetchall()
        totals = {str(name): int(str(value)) for name, value in rows}
        assert totals == {"delivered": 2, "failed": 1, "attempts": 14}
