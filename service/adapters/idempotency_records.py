"""The stored form of an idempotency key (IETF ``Idempotency-Key`` draft)."""

from __future__ import annotations

from dataclasses import dataclass

IDEMPOTENCY_TABLE = "ledger_idempotency_keys"


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a write with an ``Idempotency-Key`` left behind.

    ``fingerprint`` identifies the request (its kind, account and fields);
    ``version`` is the account version of the entry whose ``{"entry",
    "balance"}`` answer a replay repeats.
    """

    account_id: str
    key: str
    fingerprint: str
    version: int
