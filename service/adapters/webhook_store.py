"""Webhook endpoints and the outbox's delivery records (PostgreSQL or SQLite).

Endpoints keep their signing secret (``whsec_`` + base64), since every
delivery is signed with it (Standard Webhooks), sealed at rest when
``LEDGER_WEBHOOK_SECRETS_KEY`` is set (``service.adapters.secret_box``).
Outbox rows are written by the projection (``projections.views``, same
transaction as the balances); this store reads them for the dispatcher,
records each attempt and adds it to the running totals
(``ledger_webhook_totals``: ``delivered``, ``failed``, ``attempts`` and the
latency histogram's ``latency_*``), and prunes ended messages past retention.
Statements are written once (``service.adapters.dialect``); tables come from
migrations 0005 to 0007.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from service.adapters.connections import Connections, PostgresConnections, SQLiteConnection
from service.adapters.dialect import Query, as_arrays
from service.adapters.secret_box import SecretBox
from service.adapters.webhook_records import (
    BUCKET_NAMES,
    Attempt,
    EndpointRecord,
    Key,
    LatencyTotals,
    OutboxTotals,
    PendingMessage,
    bucket_name,
)
from service.adapters.webhook_sql import (
    ADD_TO_TOTAL,
    ADD_TO_TOTALS_POSTGRES,
    DELETE_ENDED,
    DELETE_ENDPOINT,
    DROP_PENDING,
    ENDPOINTS,
    INSERT_ENDPOINT,
    OUTBOX,
    RECORD_ATTEMPT,
    RECORD_ATTEMPTS_POSTGRES,
    RESEAL_ENDPOINT,
    SELECT_DELIVERIES,
    SELECT_ENDPOINT,
    SELECT_ENDPOINTS,
    SELECT_FIRST_PENDING,
    SELECT_LAST_POSITION,
    SELECT_OLDEST_AFTER,
    SELECT_PENDING_AFTER,
    SELECT_PENDING_OF,
    SELECT_PRUNABLE,
    SELECT_SECRETS,
    SELECT_TOTALS,
    TOTALS,
)
from service.config import Settings


def _attempt_params(a: Attempt) -> dict[str, Any]:
    """The parameters of ``RECORD_ATTEMPT`` for one attempt."""
    position, endpoint_id, ordinal = a.key
    return {
        "position": position,
        "endpoint_id": endpoint_id,
        "ordinal": ordinal,
        "status": a.status,
        "response_status": a.response_status,
        "error": a.error,
        "next_attempt_at": a.next_attempt_at,
    }


def _pending(row: Any) -> PendingMessage:
    return PendingMessage(
        (int(row["position"]), row["endpoint_id"], int(row["ordinal"])),
        row["webhook_id"],
        row["account_id"],
        row["type"],
        bytes(row["body"]),
        int(row["attempts"]),
        float(row["next_attempt_at"] or 0.0),
    )


def _endpoint(row: Any, box: SecretBox) -> EndpointRecord:
    return EndpointRecord(
        row["id"],
        row["url"],
        tuple(json.loads(row["events"])),
        row["low_balance_threshold"],
        row["description"],
        box.open(row["secret"]),
        row["created_at"],
    )


def _batch(
    arrays: Query | None, each: Query, rows: list[dict[str, Any]]
) -> tuple[Query, list[dict[str, Any]]]:
    """``rows`` as one statement over arrays (PostgreSQL's ``unnest``) when
    there is one, else one statement per row."""
    return (arrays, [as_arrays(rows)]) if arrays is not None else (each, rows)


class WebhookStore:
    """Endpoints and delivery records, one round trip per call."""

    def __init__(self, db: Connections, box: SecretBox | None = None) -> None:
        self._db = db
        self._box = box or SecretBox()
        """Seals signing secrets at rest (``LEDGER_WEBHOOK_SECRETS_KEY``)."""

        def q(text: str) -> Query:
            return db.dialect.statement(text, endpoints=ENDPOINTS, outbox=OUTBOX, totals=TOTALS)

        self._insert, self._all, self._one = (
            q(INSERT_ENDPOINT),
            q(SELECT_ENDPOINTS),
            q(SELECT_ENDPOINT),
        )
        self._delete, self._drop = q(DELETE_ENDPOINT), q(DROP_PENDING)
        self._deliveries, self._first = q(SELECT_DELIVERIES), q(SELECT_FIRST_PENDING)
        self._after, self._of = q(SELECT_PENDING_AFTER), q(SELECT_PENDING_OF)
        self._attempt, self._totals = q(RECORD_ATTEMPT), q(SELECT_TOTALS)
        self._add_to_total = q(ADD_TO_TOTAL)
        self._secrets, self._reseal = q(SELECT_SECRETS), q(RESEAL_ENDPOINT)
        self._last = q(SELECT_LAST_POSITION)
        self._oldest_after, self._prunable = q(SELECT_OLDEST_AFTER), q(SELECT_PRUNABLE)
        self._delete_ended = q(DELETE_ENDED)
        postgres = db.dialect.name == "postgres"
        self._attempts = q(RECORD_ATTEMPTS_POSTGRES) if postgres else None
        self._add_to_totals = q(ADD_TO_TOTALS_POSTGRES) if postgres else None

    def add(self, endpoint: EndpointRecord) -> None:
        """Stores a new endpoint, its secret sealed when keys are configured."""
        if endpoint.secret is None:
            raise ValueError("a new endpoint needs its secret")
        self._db.execute(
            self._insert,
            {
                "id": endpoint.id,
                "url": endpoint.url,
                "events": json.dumps(list(endpoint.events)),
                "threshold": endpoint.threshold,
                "description": endpoint.description,
                "secret": self._box.seal(endpoint.secret),
                "created_at": endpoint.created_at,
            },
        )

    def reseal(self) -> tuple[int, list[str]]:
        """Seals every endpoint's secret (deleted ones too) with the first
        configured key: plain ones, and ones sealed with an older key. Returns
        how many were written, and the ids of those no configured key opens
        (left as they are). Each row is written only if unchanged meanwhile."""
        rows, _ = self._db.execute(self._secrets, {})
        written, unopened = 0, []
        for row in rows:
            secret = self._box.open(row["secret"])
            if secret is None:
                unopened.append(row["id"])
                continue
            params = {"id": row["id"], "stored": row["secret"], "sealed": self._box.seal(secret)}
            written += self._db.execute(self._reseal, params)[1]
        return written, unopened

    def endpoints(self) -> list[EndpointRecord]:
        """The endpoints not deleted, oldest first."""
        rows, _ = self._db.execute(self._all, {})
        return [_endpoint(row, self._box) for row in rows]

    def get(self, endpoint_id: str) -> EndpointRecord | None:
        rows, _ = self._db.execute(self._one, {"id": endpoint_id})
        return _endpoint(rows[0], self._box) if rows else None

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

    def first_to_deliver(self, endpoint_id: str) -> int:
        """The lowest position of the endpoint's pending messages; when none
        is, a position after all its messages so far."""
        rows, _ = self._db.execute(self._first, {"endpoint_id": endpoint_id})
        first, last = rows[0]["first"], rows[0]["last"]
        return int(first) if first is not None else int(last or 0) + 1

    def last_position(self) -> int:
        """The highest position of any outbox message (0: none yet): it grows
        whenever the projection commits new messages."""
        rows, _ = self._db.execute(self._last, {})
        return int(rows[0]["last"] or 0)

    def prune(self, cutoff: float, after: int, limit: int) -> tuple[int, int | None]:
        """Deletes the delivered and failed messages created before ``cutoff``
        (Unix seconds) among the next ``limit`` messages after position
        ``after``; returns how many went and the position to go on after
        (``None``: nothing older than ``cutoff`` lies further). The running
        totals keep counting what went."""
        rows, _ = self._db.execute(self._oldest_after, {"after": after})
        if not rows or rows[0]["created_at"] >= cutoff:  # the usual case: one row read
            return 0, None
        rows, _ = self._db.execute(
            self._prunable, {"cutoff": cutoff, "after": after, "limit": limit}
        )
        last, scanned, newer = rows[0]["last"], int(rows[0]["scanned"]), rows[0]["newer"]
        upto = int(newer) - 1 if newer is not None else last
        if upto is None or upto <= after:
            return 0, None
        _, deleted = self._db.execute(
            self._delete_ended, {"after": after, "upto": upto, "cutoff": cutoff}
        )
        more = newer is None and scanned == limit
        return deleted, int(upto) if more else None

    def pending_after(self, key: Key, limit: int) -> list[PendingMessage]:
        """Up to ``limit`` pending messages of ``key``'s endpoint after
        ``key``, in key order."""
        position, endpoint_id, ordinal = key
        rows, _ = self._db.execute(
            self._after,
            {"position": position, "endpoint_id": endpoint_id, "ordinal": ordinal, "limit": limit},
        )
        return [_pending(row) for row in rows]

    def pending_of(
        self, endpoint_id: str, account_id: str, after: Key, upto: Key, limit: int
    ) -> list[PendingMessage]:
        """Up to ``limit`` pending messages of one endpoint and account after
        ``after`` and up to ``upto`` (included), in position order."""
        rows, _ = self._db.execute(
            self._of,
            {
                "endpoint_id": endpoint_id,
                "account_id": account_id,
                "position": after[0],
                "ordinal": after[2],
                "upto_position": upto[0],
                "upto_ordinal": upto[2],
                "limit": limit,
            },
        )
        return [_pending(row) for row in rows]

    def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Records delivery attempts, and adds them to the running totals,
        all in one transaction."""
        rows = [_attempt_params(a) for a in attempts]
        added = Counter(a.status for a in attempts if a.status != "pending")
        added["attempts"] = len(attempts)
        for seconds in (a.seconds for a in attempts if a.seconds is not None):
            added["latency_sum_us"] += round(seconds * 1_000_000)
            added[bucket_name(seconds)] += 1
        totals = [{"name": name, "n": n} for name, n in sorted(added.items()) if n]
        self._db.execute_batches(
            [
                _batch(self._attempts, self._attempt, rows),
                _batch(self._add_to_totals, self._add_to_total, totals),
            ]
        )

    def totals(self) -> OutboxTotals:
        """The outbox's backlog and its delivery totals (metrics)."""
        rows, _ = self._db.execute(self._totals, {})
        values = {row["name"]: int(row["value"]) for row in rows}
        latency = LatencyTotals(
            tuple(itertools.accumulate(values.get(name, 0) for name in BUCKET_NAMES)),
            values.get("latency_sum_us", 0) / 1_000_000,
        )
        return OutboxTotals(
            values.get("pending", 0),
            values.get("delivered", 0),
            values.get("failed", 0),
            values.get("attempts", 0),
            latency,
        )

    def close(self) -> None:
        self._db.close()


def open_webhook_store(settings: Settings) -> WebhookStore:
    """The webhook store of ``settings.database_url`` (tables: migrations 0005 to 0007)."""
    box = SecretBox(settings.webhook_secret_keys)
    if settings.backend == "sqlite":
        return WebhookStore(SQLiteConnection(settings.sqlite_path), box)
    connections = PostgresConnections(
        settings.postgres_conninfo(), settings.database_schema, max_size=4
    )
    return WebhookStore(connections, box)
