"""Applies ``migrations/`` with Alembic (``ledger migrate`` and at start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from service.config import Settings


def sqlalchemy_url(settings: Settings) -> str:
    """The SQLAlchemy URL of ``LEDGER_DATABASE_URL`` (psycopg 3 driver on PostgreSQL)."""
    if settings.backend == "sqlite":
        return f"sqlite:///{settings.sqlite_path}"
    return "postgresql+psycopg://" + settings.postgres_conninfo().split("://", 1)[1]


def migrate(settings: Settings) -> None:
    """Upgrades the database to the newest revision (idempotent).

    Raises:
        sqlalchemy.exc.OperationalError: the database is unreachable.
    """
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["url"] = sqlalchemy_url(settings)
    config.attributes["schema"] = settings.database_schema or None
    command.upgrade(config, "head")
