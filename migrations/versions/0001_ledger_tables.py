"""Ledger tables beside the event store: balances, idempotency keys, API keys,
expiry schedule.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TOKENS = sa.BigInteger()


def upgrade(schema: str | None = None) -> None:
    op.create_table(
        "ledger_balances",
        sa.Column("account_id", sa.Text(), primary_key=True),
        sa.Column("available", TOKENS, nullable=False),
        sa.Column("held", TOKENS, nullable=False),
        sa.Column("credit_limit", TOKENS, nullable=False),
        sa.Column("purchased", TOKENS, nullable=False),
        sa.Column("granted", TOKENS, nullable=False),
        sa.Column("consumed", TOKENS, nullable=False),
        sa.Column("refunded", TOKENS, nullable=False),
        sa.Column("deducted", TOKENS, nullable=False),
        sa.Column("expired", TOKENS, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        schema=schema,
    )
    op.create_index("ledger_balances_position", "ledger_balances", ["position"], schema=schema)
    op.create_table(
        "ledger_idempotency_keys",
        sa.Column("account_id", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("entry_version", sa.BigInteger(), nullable=False),
        schema=schema,
    )
    op.create_table(
        "ledger_api_keys",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("key_hash", sa.Text(), nullable=False, unique=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        schema=schema,
    )
    op.create_table(
        "ledger_expiry_schedule",
        sa.Column("account_id", sa.Text(), primary_key=True),
        sa.Column("ref_id", sa.Text(), primary_key=True),
        sa.Column("due_at", sa.Text(), nullable=False),
        schema=schema,
    )
    op.create_index(
        "ledger_expiry_schedule_due_at", "ledger_expiry_schedule", ["due_at"], schema=schema
    )


def downgrade(schema: str | None = None) -> None:
    op.drop_table("ledger_expiry_schedule", schema=schema)
    op.drop_table("ledger_api_keys", schema=schema)
    op.drop_table("ledger_idempotency_keys", schema=schema)
    op.drop_table("ledger_balances", schema=schema)
