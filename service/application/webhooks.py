"""Webhook endpoints (contract v1.1, "Webhooks"; scope ``admin``): create,
list, delete, and each endpoint's recent deliveries.

An endpoint's secret is ``whsec_`` + base64 of 24 random bytes (Standard
Webhooks), returned once, by :meth:`WebhookEndpoints.create`, and kept to sign
every delivery. Endpoints take effect from the projection's next batch on: the
messages of entries recorded after that.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from datetime import UTC, datetime

from typing_extensions import TypedDict

from service.adapters.availability import DatabaseGuard
from service.adapters.public_urls import UnsafeUrl, check_url
from service.adapters.webhook_records import (  # for the API's metrics
    LATENCY_BUCKETS as LATENCY_BUCKETS,
)
from service.adapters.webhook_records import EndpointRecord
from service.adapters.webhook_records import OutboxTotals as OutboxTotals
from service.adapters.webhook_store import WebhookStore
from service.domain.alerts import EVENT_TYPES
from service.domain.errors import NotFound, ValidationFailed
from service.domain.hashing import rfc3339


class WebhookEndpointPublic(TypedDict):
    """A webhook endpoint, without its secret."""

    id: str
    url: str
    events: list[str]
    """entry.created, balance.low, balance.depleted, balance.recovered."""
    low_balance_threshold: int | None
    """Tokens: `available` below it (and above 0) is low."""
    description: str | None
    created_at: str


class WebhookEndpointCreated(WebhookEndpointPublic):
    secret: str
    """`whsec_` + base64 of 24 random bytes; shown once."""


class WebhookEndpointsPublic(TypedDict):
    endpoints: list[WebhookEndpointPublic]


class DeliveryPublic(TypedDict):
    """One message to an endpoint and its delivery so far."""

    webhook_id: str
    type: str
    account_id: str
    status: str
    """pending, delivered or failed."""
    attempts: int
    last_response_status: int | None
    next_attempt_at: str | None
    """When a pending message is tried next (RFC 3339 UTC)."""


class DeliveriesPublic(TypedDict):
    deliveries: list[DeliveryPublic]


def _public(record: EndpointRecord) -> WebhookEndpointPublic:
    return {
        "id": record.id,
        "url": record.url,
        "events": list(record.events),
        "low_balance_threshold": record.threshold,
        "description": record.description,
        "created_at": record.created_at,
    }


def _moment(seconds: float | None) -> str | None:
    return rfc3339(datetime.fromtimestamp(seconds, tz=UTC)) if seconds is not None else None


class WebhookEndpoints:
    """Endpoint administration, behind the process's circuit breaker."""

    def __init__(self, store: WebhookStore, guard: DatabaseGuard, allow_insecure: bool) -> None:
        self.store, self.guard, self.allow_insecure = store, guard, allow_insecure

    async def create(
        self, url: str, events: list[str], threshold: int | None, description: str | None
    ) -> WebhookEndpointCreated:
        """A new endpoint and its secret.

        Raises:
            ValidationFailed: an unknown event type, ``balance.low`` without a
                threshold, or a URL that is not ``https://`` on a public
                address (unless ``LEDGER_WEBHOOK_ALLOW_INSECURE``) (422).
        """
        unknown = [kind for kind in events if kind not in EVENT_TYPES]
        if unknown:
            raise ValidationFailed.at(
                ["body", "events"],
                f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}",
            )
        if "balance.low" in events and threshold is None:
            raise ValidationFailed.at(
                ["body", "low_balance_threshold"], "balance.low needs a low_balance_threshold"
            )
        try:
            await asyncio.to_thread(check_url, url, self.allow_insecure)
        except UnsafeUrl as error:
            raise ValidationFailed.at(["body", "url"], str(error)) from None
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        record = EndpointRecord(
            id=str(uuid.uuid4()),
            url=url,
            events=tuple(dict.fromkeys(events)),
            threshold=threshold,
            description=description,
            secret=secret,
            created_at=rfc3339(datetime.now(tz=UTC)) or "",
        )
        await self.guard.call(self.store.add, record)
        return {**_public(record), "secret": secret}

    async def list(self) -> WebhookEndpointsPublic:
        """Every endpoint, oldest first, without secrets."""
        records = await self.guard.call(self.store.endpoints)
        return {"endpoints": [_public(record) for record in records]}

    async def delete(self, endpoint_id: str) -> None:
        """Deletes the endpoint; nothing more is sent to it.

        Raises:
            NotFound: no such endpoint (404).
        """
        now = rfc3339(datetime.now(tz=UTC)) or ""
        if not await self.guard.call(self.store.delete, endpoint_id, now):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")

    async def deliveries(self, endpoint_id: str, limit: int) -> DeliveriesPublic:
        """The endpoint's newest ``limit`` messages, newest first.

        Raises:
            NotFound: no such endpoint (404).
        """
        if await self.guard.call(self.store.get, endpoint_id) is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        rows = await self.guard.call(self.store.deliveries, endpoint_id, limit)
        return {
            "deliveries": [
                {
                    "webhook_id": row["webhook_id"],
                    "type": row["type"],
                    "account_id": row["account_id"],
                    "status": row["status"],
                    "attempts": int(row["attempts"]),
                    "last_response_status": row["last_response_status"],
                    "next_attempt_at": _moment(row["next_attempt_at"])
                    if row["status"] == "pending"
                    else None,
                }
                for row in rows
            ]
        }

    async def totals(self) -> OutboxTotals:
        """The outbox's backlog and delivery totals (metrics)."""
        return await self.guard.call(self.store.totals)
