"""Each account's latest projected balance, as the bridge told this process.

Every process hears every balance change of its deployment (the hub's one
bridge subscription), so a balance read can be answered from memory while
that stream is known to be complete: the bridge is up and has not reconnected
since the balance was heard (a reconnect bumps the broker's ``epoch``; Redis
pub/sub loses nothing on a live connection and the one projection publishes
in position order). Otherwise the read goes to the balance table.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from projections.broker import Broker

MAX_ACCOUNTS = 50_000
"""Accounts remembered (least recently changed or read leave first)."""


class LatestBalances:
    """Contract Balances by account id, each with the bridge epoch it came in."""

    def __init__(self, broker: Broker, max_accounts: int = MAX_ACCOUNTS) -> None:
        self.broker = broker
        self.max_accounts = max_accounts
        self._balances: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()

    def heard(self, balance: dict[str, Any]) -> None:
        """Keeps ``balance`` unless an older state than the one kept."""
        account_id = balance["account_id"]
        kept = self._balances.get(account_id)
        if kept is not None and kept[1]["position"] > balance["position"]:
            return
        self._balances[account_id] = (self.broker.epoch, balance)
        self._balances.move_to_end(account_id)
        if len(self._balances) > self.max_accounts:
            self._balances.popitem(last=False)

    def get(self, account_id: str) -> dict[str, Any] | None:
        """The account's latest balance when the bridge vouches for it, else ``None``."""
        kept = self._balances.get(account_id)
        if kept is None or not self.broker.healthy or kept[0] != self.broker.epoch:
            return None
        return kept[1]
