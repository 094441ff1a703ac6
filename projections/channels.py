"""Pub/sub channel names of the bridge and the messages published on them.

The projection leader publishes, after each committed batch of log entries:

- on :func:`account_channel` (one message per changed account per batch):
  ``{"balance": Balance, "balances": [Balance, ...], "entries": [Entry, ...]}``:
  the account's balance after the batch, its balance right after each of its
  entries in the batch (the last is ``balance``), and those entries, in version
  order (contract Balance and Entry objects, each with its ``position``);
- then on :data:`POSITIONS`: ``{"position": P}``, the tracking position the
  batch reached (every entry at or below ``P`` is in the balance table).

:data:`KEYS` carries ``{"revoked": "<key name>"}`` when an API key is revoked,
so every process drops it from its key cache at once.
"""

from __future__ import annotations

PREFIX = "ledger"
ACCOUNT_PREFIX = f"{PREFIX}:account:"
POSITIONS = f"{PREFIX}:position"
"""The projection's tracking position after each batch."""
KEYS = f"{PREFIX}:keys"
"""API key revocations."""


def account_channel(account_id: str) -> str:
    """Balance and entries of one account, one message per projection batch."""
    return f"{ACCOUNT_PREFIX}{account_id}"
