"""Outbox retention: ended webhook messages do not pile up forever.

Delivered and failed messages older than ``LEDGER_WEBHOOK_RETENTION_SECONDS``
(default 30 days) are deleted by the process leading delivery, every
:data:`PRUNE_SECONDS`: it walks the outbox from its oldest message, :data:`BATCH`
rows per transaction so none holds the outbox long, and stops at the first
message younger than the retention (messages are appended in time order), so
a pruning that finds nothing to delete reads a row or two. Pending messages
stay whatever their age (a retry may still be due), the running totals behind
the metrics keep counting what went, and an endpoint's deliveries list shows
what remains.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

PRUNE_SECONDS = 60.0
"""Seconds between two prunings."""
BATCH = 10_000
"""Messages deleted in one transaction at most."""


class PrunableOutbox(Protocol):
    def prune(self, cutoff: float, after: int, limit: int) -> tuple[int, int | None]: ...


async def prune_once(outbox: PrunableOutbox, cutoff: float, batch: int = BATCH) -> int:
    """Deletes every ended message created before ``cutoff`` (Unix seconds),
    walking the outbox from its oldest message ``batch`` rows per transaction
    (each in a thread; cancelling stops it between two); returns how many went."""
    total, after = 0, 0
    while True:
        deleted, resume = await asyncio.to_thread(outbox.prune, cutoff, after, batch)
        total += deleted
        if resume is None:
            return total
        after = resume


async def prune_while_leading(
    outbox: PrunableOutbox, retention_seconds: float, clock: Callable[[], float]
) -> None:
    """Prunes messages older than ``retention_seconds`` now and every
    :data:`PRUNE_SECONDS`, until cancelled (the dispatcher's leadership ends)."""
    while True:
        try:
            deleted = await prune_once(outbox, clock() - retention_seconds)
            if deleted:
                log.info("webhook outbox: %d ended messages past retention deleted", deleted)
        except Exception:
            log.exception("webhook outbox pruning failed; again in %.0f s", PRUNE_SECONDS)
        await asyncio.sleep(PRUNE_SECONDS)
