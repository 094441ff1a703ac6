"""The webhook outbox keyed by where its messages come from: ``(position,
endpoint_id, ordinal)``.

The projection appends messages in position order, so this primary key grows
at its right edge (the random ``webhook_id`` key it replaces scattered every
insert over the index). The dispatcher follows each endpoint's messages in
order by ``(endpoint_id, position, ordinal)``, which also lists an endpoint's
deliveries, newest first; pending messages get a partial index per endpoint
and account, as small as the backlog, for a lane reading its own back.
``webhook_id`` is derived from the key (UUID 5) and is kept as a column. Rows
are copied, so no pending message is lost.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OUTBOX = "ledger_webhook_outbox"
COLUMNS = (
    "webhook_id, endpoint_id, account_id, type, position, ordinal, body, status, attempts,"
    " last_response_status, last_error, next_attempt_at, created_at"
)


def _outbox_columns(key: str) -> list[sa.Column[object]]:
    """The outbox's columns, with the primary key ``key`` names."""
    keyed = set(key.split(","))
    return [
        sa.Column("position", sa.BigInteger(), primary_key="position" in keyed),
        sa.Column("endpoint_id", sa.Text(), primary_key="endpoint_id" in keyed),
        sa.Column("ordinal", sa.Integer(), primary_key="ordinal" in keyed),
        sa.Column("webhook_id", sa.Text(), primary_key="webhook_id" in keyed, nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    ]


def _replace(schema: str | None, key: str, indexes: dict[str, tuple[list[str], bool]]) -> None:
    """Copies the outbox into a new table keyed by ``key``, then swaps them."""
    prefix = f'"{schema}".' if schema else ""
    if op.get_bind().dialect.name == "postgresql":  # a projector still running waits
        op.execute(f"LOCK TABLE {prefix}{OUTBOX} IN EXCLUSIVE MODE")
    op.create_table(f"{OUTBOX}_new", *_outbox_columns(key), schema=schema)
    op.execute(
        f"INSERT INTO {prefix}{OUTBOX}_new ({COLUMNS}) SELECT {COLUMNS} FROM {prefix}{OUTBOX}"
    )
    op.drop_table(OUTBOX, schema=schema)  # its indexes go with it
    op.rename_table(f"{OUTBOX}_new", OUTBOX, schema=schema)
    for name, (columns, pending_only) in indexes.items():
        where = sa.text("status = 'pending'") if pending_only else None
        op.create_index(
            name,
            OUTBOX,
            columns,
            schema=schema,
            postgresql_where=where,
            sqlite_where=where,
        )


def upgrade(schema: str | None = None) -> None:
    _replace(
        schema,
        "position,endpoint_id,ordinal",
        {
            "ledger_webhook_outbox_pending": (
                ["endpoint_id", "account_id", "position", "ordinal"],
                True,
            ),
            "ledger_webhook_outbox_endpoint": (["endpoint_id", "position", "ordinal"], False),
        },
    )


def downgrade(schema: str | None = None) -> None:
    _replace(
        schema,
        "webhook_id",
        {
            "ledger_webhook_outbox_due": (
                ["status", "endpoint_id", "account_id", "position", "ordinal"],
                False,
            ),
            "ledger_webhook_outbox_endpoint": (["endpoint_id", "position"], False),
        },
    )
