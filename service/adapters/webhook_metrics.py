"""Prometheus metrics of webhook deliveries made by this process.

The dispatcher's attempts and their latency are counted here, and served by
its process: ``ledger deliver`` on ``LEDGER_DELIVERY_METRICS_PORT``
(:func:`serve`), or ``GET /metrics`` where an HTTP process delivers (the
embedded default). The outbox depth and the attempts of every process are read
from the outbox table at each scrape (``service.api.metrics``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
ATTEMPTS = Counter(
    "ledger_webhook_delivery_attempts",
    "Webhook delivery attempts made by this process, by result",
    ["result"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "ledger_webhook_delivery_duration_seconds",
    "Time from sending a webhook to its answer (or failure)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)


def observe(result: str, seconds: float) -> None:
    """Counts one attempt (``delivered``, ``retry`` or ``failed``) of ``seconds``."""
    ATTEMPTS.labels(result).inc()
    LATENCY.observe(seconds)


def serve(port: int) -> None:
    """Serves these metrics at ``http://0.0.0.0:<port>/metrics`` from a daemon thread."""
    start_http_server(port, registry=REGISTRY)
