"""What the webhook store reads and writes: endpoints, outbox messages,
delivery attempts and the running totals behind the metrics."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the delivery latency histogram's buckets, and
``+Inf``: each has a running total ``latency_in_<bound>`` of the attempts that
took at most that long and more than the bound before (one total per attempt
to add to; the histogram's cumulative counts are summed when read);
``latency_sum_us`` adds their microseconds."""


@dataclass(frozen=True)
class EndpointRecord:
    """A webhook endpoint (``threshold``: ``low_balance_threshold`` in tokens)."""

    id: str
    url: str
    events: tuple[str, ...]
    threshold: int | None
    description: str | None
    secret: str | None
    """``None``: stored sealed, and no configured key opens it."""
    created_at: str


Key = tuple[int, str, int]
"""An outbox row's primary key: ``(position, endpoint_id, ordinal)``."""


@dataclass(frozen=True)
class PendingMessage:
    """A message not yet delivered nor failed (``body``: the JSON sent, UTF-8;
    ``next_attempt_at``: Unix seconds)."""

    key: Key
    webhook_id: str
    account_id: str
    type: str
    body: bytes
    attempts: int
    next_attempt_at: float

    @property
    def endpoint_id(self) -> str:
        return self.key[1]


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt's outcome: ``status`` ``pending`` (retried at
    ``next_attempt_at``, Unix seconds), ``delivered`` or ``failed``."""

    key: Key
    status: str
    response_status: int | None
    error: str | None
    next_attempt_at: float | None
    seconds: float | None = None
    """From sending to the answer or failure (``None``: not sent, or not timed)."""


@dataclass(frozen=True)
class LatencyTotals:
    """Timed delivery attempts so far (all processes): ``buckets``, one
    cumulative count per bound of :data:`LATENCY_BUCKETS` then ``+Inf``, and
    ``sum``, their total duration in seconds."""

    buckets: tuple[int, ...]
    sum: float


@dataclass(frozen=True)
class OutboxTotals:
    """Messages ``pending`` (the backlog), ``delivered`` and ``failed`` so
    far, every delivery ``attempts`` recorded, and their ``latency`` (all
    processes)."""

    pending: int
    delivered: int
    failed: int
    attempts: int
    latency: LatencyTotals = field(
        default=LatencyTotals((0,) * (len(LATENCY_BUCKETS) + 1), 0.0), compare=False
    )


BUCKET_NAMES = (*(f"latency_in_{bound}" for bound in LATENCY_BUCKETS), "latency_in_+Inf")


def bucket_name(seconds: float) -> str:
    """The running total one attempt of ``seconds`` adds 1 to: its bucket's."""
    index = bisect.bisect_left(LATENCY_BUCKETS, seconds)  # the first bound ≥ seconds
    return BUCKET_NAMES[index]
