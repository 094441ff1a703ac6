"""Webhook endpoints and the outbox's delivery records (PostgreSQL or SQLite).

Endpoints keep their signing secret (``whsec_`` + base64), since every
delivery is signed with it (Standard Webhooks). Outbox rows are written by the
projection (``projections.views``, same transaction as the balances); this
store reads them for the dispatcher and records each attempt. Statements are
written once (``service.adapters.dialect``); tables come from migration 0005.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from service.adapters.connections import Connections, PostgresConnections, SQLiteConnection
from service.adapters.dialect import Query
from service.config import Settings

ENDPOINTS, OUTBOX = "ledger_webhook_endpoints", "ledger_webhook_outbox"

INSERT_ENDPOINT = (
    "INSERT INTO {endpoints} (id, url, events, low_balance_threshold, description, secret,"
    " created_at) VALUES (:id, :url, :events, :threshold, :description, :secret, :created_at)"
)
SELECT_ENDPOINTS = (
    "SELECT id, url, events, low_balance_threshold, description, secret, created_at"
    " FROM {endpoints} WHERE deleted_at IS NULL ORDER BY created_at, id"
)
SELECT_ENDPOINT = (
    "SELECT id, url, events, low_balance_threshold, description, secret, created_at"
    " FROM {endpoints} WHERE id = :id AND deleted_at IS NULL"
)
DELETE_ENDPOINT = "UPDATE {endpoints} SET deleted_at = :now WHERE id = :id AND deleted_at IS NULL"
DROP_PENDING = "DELETE FROM {outbox} WHERE endpoint_id = :id AND status = 'pending'"
SELECT_DELIVERIES = (
    "SELECT webhook_id, type, account_id, status, attempts, last_response_status,"
    " next_attempt_at FROM {outbox} WHERE endpoint_id = :id"
    " ORDER BY position DESC, ordinal DESC LIMIT :limit"
)
_HEAD_COLUMNS = (
    "o.webhook_id, o.endpoint_id, o.account_id, o.type, o.position, o.body, o.attempts,"
    " o.next_attempt_at, e.url, e.secret"
)
_HEAD_FROM = (
    " FROM {outbox} o JOIN {endpoints} e ON e.id = o.endpoint_id"
    " WHERE o.status = 'pending' AND e.deleted_at IS NULL"
    " AND (o.endpoint_id, o.account_id) > (:endpoint_id, :account_id)"
)
SELECT_HEADS = {
    # The first pending message of each (endpoint, account), in key order.
    "postgres": "SELECT DISTINCT ON (o.endpoint_id, o.account_id) "
    + _HEAD_COLUMNS
    + _HEAD_FROM
    + " ORDER BY o.endpoint_id, o.account_id, o.position, o.ordinal LIMIT :limit",
    # SQLite takes the other columns from the row holding the MIN (documented).
    "sqlite": "SELECT "
    + _HEAD_COLUMNS
    + ", MIN(o.position * 16 + o.ordinal) AS head"
    + _HEAD_FROM
    + " GROUP BY o.endpoint_id, o.account_id ORDER BY o.endpoint_id, o.account_id LIMIT :limit",
}
RECORD_ATTEMPT = (
    "UPDATE {outbox} SET status = :status, attempts = attempts + 1,"
    " last_response_status = :response_status, last_error = :error,"
    " next_attempt_at = :next_attempt_at WHERE webhook_id = :webhook_id"
)
COUNT_BY_STATUS = (
    "SELECT status, count(*) AS n, coalesce(sum(attempts), 0) AS attempts"
    " FROM {outbox} GROUP BY status"
)


@dataclass(frozen=True)
class EndpointRecord:
    """A webhook endpoint (``threshold``: ``low_balance_threshold`` in tokens)."""

    id: str
    url: str
    events: tuple[str, ...]
    threshold: int | None
    description: str | None
    secret: str
    created_at: str


@dataclass(frozen=True)
class DueMessage:
    """A pending message whose turn has come, with where and how to send it."""

    webhook_id: str
    endpoint_id: str
    account_id: str
    type: str
    position: int
    body: bytes
    attempts: int
    url: str
    secret: str


def _endpoint(row: Any) -> EndpointRecord:
    return EndpointRecord(
        row["id"],
        row["url"],
        tuple(json.loads(row["events"])),
        row["low_balance_threshold"],
        row["description"],
        row["secret"],
        row["created_at"],
    )


class WebhookStore:
    """Endpoints and delivery records, one round trip per call."""

    def __init__(self, db: Connections) -> None:
        self._db = db
        self._cursor: tuple[str, str] = ("", "")
        """Where :meth:`due` continues: the last ``(endpoint, account)`` read."""

        def q(text: str) -> Query:
            return db.dialect.statement(text, endpoints=ENDPOINTS, outbox=OUTBOX)

        self._insert, self._all, self._one = (
            q(INSERT_ENDPOINT),
            q(SELECT_ENDPOINTS),
            q(SELECT_ENDPOINT),
        )
        self._delete, self._drop = q(DELETE_ENDPOINT), q(DROP_PENDING)
        self._deliveries, self._heads = q(SELECT_DELIVERIES), q(SELECT_HEADS[db.dialect.name])
        self._attempt, self._counts = q(RECORD_ATTEMPT), q(COUNT_BY_STATUS)

    def add(self, endpoint: EndpointRecord) -> None:
        """Stores a new endpoint."""
        self._db.execute(
            self._insert,
            {
                "id": endpoint.id,
                "url": endpoint.url,
                "events": json.dumps(list(endpoint.events)),
                "threshold": endpoint.threshold,
                "description": endpoint.description,
                "secret": endpoint.secret,
                "created_at": endpoint.created_at,
            },
        )

    def endpoints(self) -> list[EndpointRecord]:
        """The endpoints not deleted, oldest first."""
        rows, _ = self._db.execute(self._all, {})
        return [_endpoint(row) for row in rows]

    def get(self, endpoint_id: str) -> EndpointRecord | None:
        rows, _ = self._db.execute(self._one, {"id": endpoint_id})
        return _endpoint(rows[0]) if rows else None

    def delete(self, endpoint_id: str, now: str) -> bool:
        """Deletes the endpoint and drops its pending messages; ``False`` when
        there was no such endpoint."""
        _, changed = self._db.execute(self._delete, {"id": endpoint_id, "now": now})
        if changed:
            self._db.execute(self._drop, {"id": endpoint_id})
        return changed > 0

    def deliveries(self, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
        """The endpoint's newest ``limit`` messages, newest first (rows)."""
        rows, _ = self._db.execute(self._deliveries, {"id": endpoint_id, "limit": limit})
        return [dict(row) for row in rows]

    def due(self, now: float, limit: int) -> list[DueMessage]:
        """Pending messages due at ``now`` (Unix seconds), each the oldest
        pending one of its endpoint and account (a head waiting for its retry
        holds its group back). Reads up to ``limit`` group heads in (endpoint,
        account) order from where the previous call stopped, wrapping around,
        so every group gets its turn."""
        rows, _ = self._db.execute(
            self._heads,
            {"endpoint_id": self._cursor[0], "account_id": self._cursor[1], "limit": limit},
        )
        last = rows[-1] if len(rows) == limit else None
        self._cursor = (last["endpoint_id"], last["account_id"]) if last else ("", "")
        return [
            DueMessage(
                r["webhook_id"],
                r["endpoint_id"],
                r["account_id"],
                r["type"],
                int(r["position"]),
                bytes(r["body"]),
                int(r["attempts"]),
                r["url"],
                r["secret"],
            )
            for r in rows
            if r["next_attempt_at"] is not None and r["next_attempt_at"] <= now
        ]

    def record_attempt(
        self,
        webhook_id: str,
        status: str,
        response_status: int | None,
        error: str | None,
        next_attempt_at: float | None,
    ) -> None:
        """Records one delivery attempt: ``status`` ``pending`` (retry at
        ``next_attempt_at``), ``delivered`` or ``failed``."""
        self._db.execute(
            self._attempt,
            {
                "webhook_id": webhook_id,
                "status": status,
                "response_status": response_status,
                "error": error,
                "next_attempt_at": next_attempt_at,
            },
        )

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{status: (messages, attempts)}`` for ``pending``, ``delivered``
        and ``failed`` (missing: none)."""
        rows, _ = self._db.execute(self._counts, {})
        return {row["status"]: (int(row["n"]), int(row["attempts"])) for row in rows}

    def close(self) -> None:
        self._db.close()


def open_webhook_store(settings: Settings) -> WebhookStore:
    """The webhook store of ``settings.database_url`` (tables: migration 0005)."""
    if settings.backend == "sqlite":
        return WebhookStore(SQLiteConnection(settings.sqlite_path))
    connections = PostgresConnections(
        settings.postgres_conninfo(), settings.database_schema, max_size=4
    )
    return WebhookStore(connections)
