"""Apps and settings on a fresh database of each kind, for the tests that run
the same checks on SQLite and on PostgreSQL (+ Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.adapters.migrate import migrate
from service.api.app import create_app
from service.config import Settings
from tests.helpers.servers import fresh_postgres_database, fresh_redis_database


@contextmanager
def app_client(
    backend: str, folder: Path, schema: str = "", **settings: Any
) -> Iterator[TestClient]:
    """A client of an app on a new database: ``backend`` ``"sqlite"`` (a file
    in ``folder``) or ``"postgres"`` (tables in ``schema``, with a Redis
    database); ``settings`` are the other :class:`Settings` fields."""
    if backend == "sqlite":
        values = Settings(database_url=f"sqlite:///{folder / 'l.db'}", **settings)
        with TestClient(create_app(values)) as client:
            yield client
        return
    with fresh_postgres_database() as url, fresh_redis_database() as redis_url:
        values = Settings(database_url=url, database_schema=schema, redis_url=redis_url, **settings)
        with TestClient(create_app(values)) as client:
            yield client


@contextmanager
def migrated_settings(backend: str, folder: Path) -> Iterator[Settings]:
    """Settings of a new, migrated database (nothing else creates tables):
    ``backend`` ``"sqlite"`` (a file in ``folder``) or ``"postgres"``."""
    if backend == "sqlite":
        settings = Settings(database_url=f"sqlite:///{folder / 'l.db'}")
        migrate(settings)
        yield settings
        return
    with fresh_postgres_database("ledger_it") as url:
        settings = Settings(database_url=url, database_pool_size=2)
        migrate(settings)
        yield settings
