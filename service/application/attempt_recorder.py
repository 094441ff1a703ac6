"""Group commit of webhook delivery attempts.

Workers hand their attempts to :meth:`AttemptRecorder.record` and wait; one
task writes every attempt handed over since its last write in one
transaction, so a busy dispatcher commits once for many deliveries and an
idle one without delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from service.adapters.webhook_records import Attempt


class AttemptRecorder:
    """Writes attempts with ``write`` (one transaction per call), in batches."""

    def __init__(self, write: Callable[[Sequence[Attempt]], None]) -> None:
        self._write = write
        self._waiting: list[tuple[Attempt, asyncio.Future[None]]] = []
        self._handed = asyncio.Event()

    async def record(self, attempt: Attempt) -> None:
        """Returns once ``attempt`` is committed.

        Raises:
            Exception: whatever the write raised (the attempt is not recorded).
        """
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((attempt, done))
        self._handed.set()
        await done

    async def run(self) -> None:
        """Writes batches until cancelled."""
        while True:
            await self._handed.wait()
            self._handed.clear()
            batch, self._waiting = self._waiting, []
            if not batch:
                continue
            try:
                await asyncio.to_thread(self._write, [attempt for attempt, _ in batch])
            except Exception as error:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
