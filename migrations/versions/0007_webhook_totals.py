"""Running totals of webhook deliveries, so a metrics scrape reads a few rows
instead of counting the whole outbox (which only grows).

``ledger_webhook_totals`` holds ``delivered``, ``failed`` and ``attempts``;
the dispatcher adds to them in the transaction that records its attempts.
They start from the outbox as it is, read under a lock that holds off a
dispatcher still recording (PostgreSQL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OUTBOX, TOTALS = "ledger_webhook_outbox", "ledger_webhook_totals"


def upgrade(schema: str | None = None) -> None:
    prefix = f'"{schema}".' if schema else ""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"LOCK TABLE {prefix}{OUTBOX} IN SHARE MODE")
    op.create_table(
        TOTALS,
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
        schema=schema,
    )
    op.execute(
        f"INSERT INTO {prefix}{TOTALS} (name, value)"
        f" SELECT 'delivered', count(*) FROM {prefix}{OUTBOX} WHERE status = 'delivered'"
        f" UNION ALL SELECT 'failed', count(*) FROM {prefix}{OUTBOX} WHERE status = 'failed'"
        f" UNION ALL SELECT 'attempts', coalesce(sum(attempts), 0) FROM {prefix}{OUTBOX}"
    )


def downgrade(schema: str | None = None) -> None:
    op.drop_table(TOTALS, schema=schema)
