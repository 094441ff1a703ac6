"""Webhooks out (contract v1.1): endpoints, the outbox of messages and each
endpoint's balance alert state per account.

The projection writes ``ledger_webhook_outbox`` rows and ``ledger_webhook_states``
in the same transaction as the balances; the dispatcher delivers pending rows
per endpoint and account in position order (index ``..._due``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(schema: str | None = None) -> None:
    op.create_table(
        "ledger_webhook_endpoints",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("low_balance_threshold", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("deleted_at", sa.Text(), nullable=True),
        schema=schema,
    )
    op.create_table(
        "ledger_webhook_outbox",
        sa.Column("webhook_id", sa.Text(), primary_key=True),
        sa.Column("endpoint_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        schema=schema,
    )
    op.create_index(
        "ledger_webhook_outbox_due",
        "ledger_webhook_outbox",
        ["status", "endpoint_id", "account_id", "position", "ordinal"],
        schema=schema,
    )
    op.create_index(
        "ledger_webhook_outbox_endpoint",
        "ledger_webhook_outbox",
        ["endpoint_id", "position"],
        schema=schema,
    )
    op.create_table(
        "ledger_webhook_states",
        sa.Column("endpoint_id", sa.Text(), primary_key=True),
        sa.Column("account_id", sa.Text(), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        schema=schema,
    )


def downgrade(schema: str | None = None) -> None:
    op.drop_table("ledger_webhook_states", schema=schema)
    op.drop_index("ledger_webhook_outbox_endpoint", "ledger_webhook_outbox", schema=schema)
    op.drop_index("ledger_webhook_outbox_due", "ledger_webhook_outbox", schema=schema)
    op.drop_table("ledger_webhook_outbox", schema=schema)
    op.drop_table("ledger_webhook_endpoints", schema=schema)
