"""Idempotency records no longer store an HTTP status: a replay answers its
route's success status (``service.api``), the domain knows no HTTP.

Also drops the record-group function's earlier overload, which took the
statuses (``ledger_record_group`` is created at start with the new arguments).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_FUNCTION_ARGUMENTS = (
    "uuid[], bigint[], text[], text[], uuid[], bigint[], text[], bytea[],"
    " text[], text[], text[], int[], bigint[]"
)


def upgrade(schema: str | None = None) -> None:
    if op.get_bind().dialect.name == "postgresql":
        prefix = f'"{schema}".' if schema else ""
        op.execute(f"DROP FUNCTION IF EXISTS {prefix}ledger_record_group({OLD_FUNCTION_ARGUMENTS})")
    with op.batch_alter_table("ledger_idempotency_keys", schema=schema) as batch:
        batch.drop_column("status")


def downgrade(schema: str | None = None) -> None:
    with op.batch_alter_table("ledger_idempotency_keys", schema=schema) as batch:
        batch.add_column(sa.Column("status", sa.Integer(), nullable=False, server_default="201"))
