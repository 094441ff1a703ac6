"""Alembic environment: runs the ledger's migrations on the configured database.

Run through ``ledger migrate`` (or at service start), which passes the SQLAlchemy
URL and the schema in ``config.attributes``. On PostgreSQL an advisory lock
serializes concurrent starts.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

config = context.config
url: str = config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or ""
schema: str | None = config.attributes.get("schema") or None
MIGRATION_LOCK = 7_201_100_221


def run_migrations_online() -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            if schema:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            connection.commit()
        try:
            context.configure(
                connection=connection,
                version_table="ledger_alembic_version",
                version_table_schema=schema,
            )
            with context.begin_transaction():
                context.run_migrations(schema=schema)
            connection.commit()
        finally:
            if is_postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                connection.commit()
    engine.dispose()


run_migrations_online()
