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
