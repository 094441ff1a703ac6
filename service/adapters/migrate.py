"""Applies ``migrations/`` with Alembic (``ledger migrate`` and at start)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

import migrations
from service.config import Settings


def sqlalchemy_url(settings: Settings) -> str:
    """The SQLAlchemy URL of ``LEDGER_DATABASE_URL`` (psycopg 3 driver on PostgreSQL)."""
    if settings.backend == "sqlite":
        return f"sqlite:///{settings.sqlite_path}"
    return "postgresql+psycopg://" + settings.postgres_conninfo().split("://", 1)[1]


def migrate(settings: Settings, revision: str = "head") -> None:
    """Upgrades the database to ``revision``, the newest by default (idempotent):
    every table, the event store's included, so run it before constructing
    the ledger, a view or a key store.

    Raises:
        sqlalchemy.exc.OperationalError: the database is unreachable.
    """
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["url"] = sqlalchemy_url(settings)
    config.attributes["schema"] = settings.database_schema or None
    command.upgrade(config, revision)


STARTUP_LOCK = 7_201_100_222
"""Advisory lock key serializing what processes do in the database at start."""


@contextlib.contextmanager
def startup_lock(settings: Settings) -> Iterator[None]:
    """Holds a PostgreSQL advisory lock for the block (nothing on SQLite), so
    processes starting together do not race to replace the group-commit
    function (``CREATE OR REPLACE FUNCTION`` is not safe against itself).
    Tables are not created at start: :func:`migrate` does, under the
    migrations' own lock (``migrations/env.py``)."""
    if settings.backend != "postgres":
        yield
        return
    with psycopg.connect(settings.postgres_conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (STARTUP_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (STARTUP_LOCK,))
