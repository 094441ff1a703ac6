"""The per-process stream hub (placeholder: the full fan-out is being built).

Knows the projection's position from the bridge and lets readers wait for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from projections.balances import BalanceView
from projections.broker import Broker
from projections.channels import POSITIONS


class StreamHub:
    """Per process: follows the bridge; ``position`` is the highest projected
    position known; :meth:`wait_for_position` waits for the projection."""

    def __init__(self, broker: Broker, view: BalanceView, ledger: Any) -> None:
        self.broker = broker
        self.view = view
        self.ledger = ledger
        self.position = 0

    async def start(self) -> None:
        self.position = await asyncio.to_thread(self.view.position)

    async def close(self) -> None:
        return None

    async def wait_for_position(self, position: int, timeout: float) -> bool:
        """True once the balance table has applied ``position`` (waits up to
        ``timeout`` seconds; ``False`` when it was not reached)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self.broker.subscribe(POSITIONS) as subscription:
            while True:
                if self.position >= position:
                    return True
                self.position = max(self.position, await asyncio.to_thread(self.view.position))
                if self.position >= position:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                message = await subscription.get(min(remaining, 0.05))
                if message is not None:
                    self.position = max(self.position, int(message["position"]))
