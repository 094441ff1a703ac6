"""Prometheus metrics: HTTP requests by route template, and ledger gauges read
at scrape time (projection position, log head, lag).

Each app has its own registry (several apps may live in one process, e.g. in
tests), served at ``GET /metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.application.webhooks import LATENCY_BUCKETS, OutboxTotals

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"


class WebhookCollector(Collector):
    """The webhook outbox, read at each scrape (every process shows the whole
    deployment's): its backlog, and the running totals the dispatcher keeps
    in the transactions that record its attempts (results, latency histogram)."""

    def __init__(self, read: Callable[[], OutboxTotals | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        totals = self._read()
        if totals is None:
            return
        yield GaugeMetricFamily(
            "ledger_webhook_outbox_depth",
            "Webhook messages not yet delivered nor failed",
            value=totals.pending,
        )
        messages = GaugeMetricFamily(
            "ledger_webhook_messages",
            "Webhook messages by status: pending now, delivered and failed since the start",
            labels=["status"],
        )
        messages.add_metric(["pending"], totals.pending)
        messages.add_metric(["delivered"], totals.delivered)
        messages.add_metric(["failed"], totals.failed)
        yield messages
        results = GaugeMetricFamily(
            "ledger_webhook_attempts_recorded",
            "Delivery attempts recorded since the start, by result (all processes)",
            labels=["result"],
        )
        results.add_metric(["success"], totals.delivered)
        results.add_metric(["error"], totals.attempts - totals.delivered)
        yield results
        bounds = [*map(str, LATENCY_BUCKETS), "+Inf"]
        yield HistogramMetricFamily(
            "ledger_webhook_delivery_duration_seconds",
            "Time from sending a webhook to its answer or failure (all processes)",
            buckets=list(zip(bounds, totals.latency.buckets, strict=True)),
            sum_value=totals.latency.sum,
        )


class LedgerCollector(Collector):
    """Gauges of the projection, computed on each scrape."""

    def __init__(self, read: Callable[[], tuple[int, int] | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            positions = self._read()
        except Exception:
            log.warning("metrics: the store is unreachable")
            positions = None
        up = GaugeMetricFamily("ledger_store_up", "1 when the database answered the scrape")
        up.add_metric([], 0 if positions is None else 1)
        yield up
        if positions is None:
            return
        applied, head = positions
        yield GaugeMetricFamily(
            "ledger_projection_position", "Last log position applied to the balances", value=applied
        )
        yield GaugeMetricFamily(
            "ledger_log_head_position", "Highest position in the ledger's log", value=head
        )
        yield GaugeMetricFamily(
            "ledger_projection_lag",
            "Positions not yet applied to the balances",
            value=max(head - applied, 0),
        )


class Metrics:
    """The registry and the HTTP metrics of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ledger_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ledger_http_request_duration_seconds",
            "Time to the response's first byte",
            ["method", "route"],
            registry=self.registry,
        )
        self._ledger: LedgerCollector | None = None
        self.webhooks: OutboxTotals | None = None
        """The outbox's totals read for the current scrape (``None``: not read)."""
        self.registry.register(WebhookCollector(lambda: self.webhooks))
        self.positions: tuple[int, int] | None = None
        """``(applied, head)`` read for the current scrape (``None``: the store
        did not answer); see ``service.api.routes.ops.metrics``."""
        self.routes: list[Any] = []
        """The app's routes, to name requests answered before routing (413)."""

    def watch_ledger(self, read: Callable[[], tuple[int, int] | None]) -> None:
        """Adds the ledger gauges (``read`` answers ``(applied, head)``)."""
        if self._ledger is not None:
            self.registry.unregister(self._ledger)
        self._ledger = LedgerCollector(read)
        self.registry.register(self._ledger)


def route_template(scope: Scope, routes: list[Any]) -> str:
    """The matched route's path template (bounded label values)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED))
    return UNMATCHED


class MetricsMiddleware:
    """Counts requests and times them to the first response byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                route = route_template(scope, self.metrics.routes)
                self.metrics.latency.labels(scope["method"], route).observe(
                    time.perf_counter() - start
                )
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.requests.labels(
                scope["method"], route_template(scope, self.metrics.routes), str(status)
            ).inc()
