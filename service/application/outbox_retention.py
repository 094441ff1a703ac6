"""Outbox retention: ended webhook messages do not pile up forever.

Delivered and failed messages older than ``LEDGER_WEBHOOK_RETENTION_SECONDS``
(default 30 days) are deleted by the process leading delivery, every
:data:`PRUNE_SECONDS`, :data:`BATCH` at a time so no transaction holds the
outbox long. Pending messages stay whatever their age (a retry may still be
due), the running totals behind the metrics keep counting what went, and an
endpoint's deliveries list shows what remains.
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
    def prune(self, cutoff: float, limit: int) -> int: ...


def prune_once(outbox: PrunableOutbox, cutoff: float, batch: int = BATCH) -> int:
    """Deletes every ended message created before ``cutoff`` (Unix seconds),
    ``batch`` per transaction; returns how many went."""
    total = 0
    while True:
        deleted = outbox.prune(cutoff, batch)
        total += deleted
        if deleted < batch:
            return total


async def prune_while_leading(
    outbox: PrunableOutbox, retention_seconds: float, clock: Callable[[], float]
) -> None:
    """Prunes messages older than ``retention_seconds`` now and every
    :data:`PRUNE_SECONDS`, until cancelled (the dispatcher's leadership ends)."""
    while True:
        try:
            deleted = await asyncio.to_thread(prune_once, outbox, clock() - retention_seconds)
            if deleted:
                log.info("webhook outbox: %d ended messages past retention deleted", deleted)
        except Exception:
            log.exception("webhook outbox pruning failed; again in %.0f s", PRUNE_SECONDS)
        await asyncio.sleep(PRUNE_SECONDS)
