"""The event store's own tables (events, snapshots, the balance view's
tracking) are created here, with the ``eventsourcing`` library's DDL, rather
than by the library at every start (``CREATE_TABLE`` is now ``n``).

A database the library already populated keeps its tables and rows (every
statement is idempotent; see ``service.adapters.event_tables``). On
PostgreSQL the advisory lock of ``migrations/env.py`` serializes processes
starting together, so they no longer race to create the composite type.

Downgrading leaves the tables: they hold the ledger's events, and before this
revision the library created them itself.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

from service.adapters.event_tables import create_postgres_tables, create_sqlite_tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(schema: str | None = None) -> None:
    bind = op.get_bind()
    conn = bind.connection.driver_connection  # the migration's own transaction
    assert conn is not None
    if bind.dialect.name == "postgresql":
        create_postgres_tables(conn, schema)
    else:
        create_sqlite_tables(conn)


def downgrade(schema: str | None = None) -> None:
    """Nothing: the tables and their events stay (see above)."""
