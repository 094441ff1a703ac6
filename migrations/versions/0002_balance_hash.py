"""Balances carry the hash of the last entry applied (contract v1.1, "Hash chain").

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade(schema: str | None = None) -> None:
    op.add_column(
        "ledger_balances",
        sa.Column("hash", sa.Text(), nullable=False, server_default=GENESIS),
        schema=schema,
    )


def downgrade(schema: str | None = None) -> None:
    op.drop_column("ledger_balances", "hash", schema=schema)
