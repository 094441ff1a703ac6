"""The migrations create every table, the event store's included, before any
application runs; exactly what the ``eventsourcing`` library would create,
and without harm on a database the library already populated."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from projections.balances import BalanceProjection, BalanceView, tracking_at
from projections.views import BALANCE_VIEWS
from service.adapters.migrate import migrate
from service.application import commands
from service.application.ledger import Ledger
from service.config import Settings
from tests.helpers.servers import fresh_postgres_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
DATABASES = [*BACKENDS, pytest.param("postgres-schema", marks=pytest.mark.integration)]

PG_CATALOG = """
SELECT 'relation', c.relname, c.relkind::text FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s
UNION ALL SELECT 'type', t.typname, t.typtype::text FROM pg_type t
    JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %(s)s AND t.typtype = 'c'
UNION ALL SELECT 'function', p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = %(s)s AND p.proname <> 'ledger_record_group'
UNION ALL SELECT 'column', table_name || '.' || column_name, data_type || ' ' || is_nullable
    FROM information_schema.columns WHERE table_schema = %(s)s
UNION ALL SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = %(s)s
ORDER BY 1, 2
"""
EVENT_TABLES = {
    "postgres": {"ledger_events", "ledger_snapshots", "balances_tracking"},
    "sqlite": {"stored_events", "stored_snapshots", "tracking"},
}
TRACKING = {"postgres": "balances_tracking", "sqlite": "tracking"}


@pytest.fixture(params=DATABASES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(database_url=f"sqlite:///{tmp_path}/l.db")
        return
    schema = "ledger_own" if request.param == "postgres-schema" else ""
    with fresh_postgres_database("ledger_tables") as url:
        yield Settings(database_url=url, database_pool_size=2, database_schema=schema)


def catalog(settings: Settings) -> list[tuple[Any, ...]]:
    """Every table, index, type, function and column, and the tracking rows."""
    table = TRACKING[settings.backend]
    if settings.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as db:
            found = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            return [*found.fetchall(), *db.execute(f"SELECT * FROM {table} ORDER BY 1")]
    schema = settings.database_schema or "public"
    with psycopg.connect(settings.postgres_conninfo()) as conn:
        rows = conn.execute(PG_CATALOG, {"s": schema}).fetchall()
        tracked = conn.execute(f'SELECT * FROM "{schema}".{table} ORDER BY 1').fetchall()
        return [*rows, *tracked]


def tables(settings: Settings) -> set[str]:
    return {row[1] for row in catalog(settings) if row[0] in ("table", "relation")}


def open_view(env: dict[str, str], backend: str) -> BalanceView:
    factory: InfrastructureFactory[Any] = InfrastructureFactory.construct(
        env=Environment(BalanceProjection.name, env)
    )
    view = factory.tracking_recorder(BALANCE_VIEWS[backend])
    assert isinstance(view, BalanceView)
    return view


def library_creates_its_tables(settings: Settings) -> tuple[Ledger, BalanceView]:
    """The ledger and the balance view as the library opens them when it
    creates its own tables at start (as before migration 0004)."""
    env = {**settings.eventsourcing_env(), "CREATE_TABLE": "y"}
    return Ledger(env=env), open_view(env, settings.backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrating_an_empty_database_creates_the_event_store_before_any_application(
    backend: str, tmp_path: Path
) -> None:
    def check(settings: Settings) -> None:
        migrate(settings)
        assert EVENT_TABLES[backend] <= tables(settings)
        assert ("__migration__", 1) in catalog(settings)  # the library's tracking version row

    if backend == "sqlite":
        check(Settings(database_url=f"sqlite:///{tmp_path}/l.db"))
        return
    with fresh_postgres_database("ledger_tables") as url:
        check(Settings(database_url=url))


def test_the_migrations_create_exactly_what_the_library_would(settings: Settings) -> None:
    migrate(settings)
    migrated = catalog(settings)
    ledger, _ = library_creates_its_tables(settings)
    ledger.close()
    assert catalog(settings) == migrated


def test_a_database_the_library_populated_keeps_its_rows(settings: Settings) -> None:
    migrate(settings, "0003")
    ledger, view = library_creates_its_tables(settings)
    written = ledger.execute_write(commands.purchase("a-1", 70, actor="t", idem=None))
    view.insert_tracking(tracking_at(written.position))
    ledger.close()
    migrate(settings)
    assert EVENT_TABLES[settings.backend] <= tables(settings)
    ledger = Ledger(env=settings.eventsourcing_env())
    try:
        assert ledger.get_account("a-1").balance().available == 70
        assert ledger.ledger_recorder.last_position(ledger.get_account("a-1").id) == (
            written.position
        )
    finally:
        ledger.close()
    assert open_view(settings.eventsourcing_env(), settings.backend).position() == (
        written.position
    )


@pytest.mark.integration
def test_processes_migrating_a_fresh_database_together_all_succeed() -> None:
    script = "import sys; from service.adapters.migrate import migrate;" + (
        " from service.config import Settings; migrate(Settings(database_url=sys.argv[1]))"
    )
    with fresh_postgres_database("ledger_tables") as url, contextlib.ExitStack() as stack:
        command = [sys.executable, "-c", script, url]
        processes = [
            stack.enter_context(subprocess.Popen(command, stderr=subprocess.PIPE)) for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in processes]
        assert [p.returncode for p in processes] == [0] * 4, errors
        assert EVENT_TABLES["postgres"] <= tables(Settings(database_url=url))
