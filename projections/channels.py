"""Pub/sub channel names of the bridge and the messages published on them.

Every message is a JSON object with a ``position`` (the global position of the
entry that caused it): on a balance channel a contract Balance, on an entries
channel a contract Entry.
"""

from __future__ import annotations

PREFIX = "ledger"
ALL_BALANCES = f"{PREFIX}:balances"
"""Every account's balance changes (the audit stream)."""


def balance_channel(account_id: str) -> str:
    """Balance changes of one account."""
    return f"{PREFIX}:balance:{account_id}"


def entries_channel(account_id: str) -> str:
    """New entries of one account."""
    return f"{PREFIX}:entries:{account_id}"
