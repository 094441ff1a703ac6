"""Prometheus metrics of webhook deliveries made by this process.

The dispatcher runs in the leader process; its attempts and their latency are
counted here and served by that process's ``GET /metrics`` (on the embedded
default, the one process). The outbox depth and the attempts of every process
are read from the outbox table at each scrape (``service.api.metrics``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
