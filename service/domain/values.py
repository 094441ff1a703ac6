"""Value objects of the ledger: entry types, ids, credit buckets, holds, balances.

Amounts are ``int`` tokens everywhere. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

MAX_AMOUNT = 10**15
"""Largest amount of one entry, in tokens (contract: ``1 ≤ amount ≤ 10^15``)."""
COUNTERS = (
    "available",
    "held",
    "purchased",
    "granted",
    "consumed",
    "refunded",
    "deducted",
    "expired",
)
"""The balance counters of an account (tokens), as the contract's Balance
names them; every entry changes some of them by its effects."""
MAX_COUNTER = 2**53 - 1
"""Largest value of a balance counter or credit limit, in tokens (contract
v1.1 ``balance-limit-exceeded``: the largest integer every JSON client reads
exactly)."""

MAX_ACTIVE_HOLDS = 1000
"""Most holds an account may have open at once; one more is refused (422)."""

MAX_CREDIT_BUCKETS = 1000
"""Most credit buckets with tokens left an account may have; a purchase or grant
that would open one more is refused (422)."""

ACCOUNT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
"""The contract's ``account_id`` syntax."""

ACCOUNT_NAMESPACE = uuid.UUID("6f1c2a8e-3d4b-5c6d-8e9f-0a1b2c3d4e5f")

_VERSION_BITS = 48
_VERSION_MASK = (1 << _VERSION_BITS) - 1


class EntryType(StrEnum):
    """The ``type`` of a ledger entry (contract v1, "Entries")."""

    PURCHASE = "purchase"
    GRANT = "grant"
    CONSUMPTION = "consumption"
    DEDUCTION = "deduction"
    REFUND = "refund"
    HOLD = "hold"
    HOLD_CAPTURE = "hold_capture"
    HOLD_RELEASE = "hold_release"
    HOLD_EXPIRY = "hold_expiry"
    CREDIT_EXPIRY = "credit_expiry"
    CREDIT_LIMIT_CHANGE = "credit_limit_change"


REFUNDABLE = frozenset({EntryType.CONSUMPTION, EntryType.HOLD_CAPTURE})
"""Entry types a refund may point at (``refund_of``)."""


@functools.lru_cache(maxsize=100_000)
def is_valid_account_id(account_id: str) -> bool:
    """True when ``account_id`` matches the contract's syntax."""
    return ACCOUNT_ID_PATTERN.fullmatch(account_id) is not None


@functools.lru_cache(maxsize=100_000)
def account_uuid(account_id: str) -> uuid.UUID:
    """The deterministic aggregate id of an account: UUIDv5 of its id (cached:
    a write asks for it several times)."""
    return uuid.uuid5(ACCOUNT_NAMESPACE, account_id)


def entry_id_for(account: uuid.UUID, version: int) -> uuid.UUID:
    """The id of the entry at ``version`` of an account.

    The account's UUID with its 48-bit node field replaced by the version, so an
    entry id names its entry without an index (see :func:`entry_version_of`).
    """
    return uuid.UUID(int=(account.int & ~_VERSION_MASK) | version)


def entry_version_of(account: uuid.UUID, entry_id: uuid.UUID) -> int | None:
    """The version an ``entry_id`` names within ``account``, or ``None`` when
    the id does not belong to that account."""
    if (entry_id.int & ~_VERSION_MASK) != (account.int & ~_VERSION_MASK):
        return None
    version = entry_id.int & _VERSION_MASK
    return version if version >= 1 else None


@dataclass(frozen=True)
class Draw:
    """Tokens taken from one credit bucket (``bucket`` is its entry id) or, when
    ``bucket`` is ``None``, from the credit line (debt).

    The bucket's ``expires_at``, ``type``, ``amount`` and ``seq`` travel with
    the draw so that a refund or release can put the tokens back where they
    came from even after the bucket ran empty.
    """

    bucket: str | None
    amount: int
    expires_at: datetime | None = None
    type: str = ""
    bucket_amount: int = 0
    seq: int = 0


@dataclass
class Bucket:
    """Credit from one purchase or grant: ``remaining`` of ``amount`` tokens,
    usable until ``expires_at`` (``None``: never expires). ``seq`` is the
    version of the entry that created it (FIFO order among equals)."""

    entry_id: str
    type: str
    amount: int
    remaining: int
    expires_at: datetime | None
    seq: int

    def draw_order(self) -> tuple[int, datetime | None, int]:
        """Sort key: expiring buckets first (soonest first), then FIFO."""
        if self.expires_at is None:
            return (1, None, self.seq)
        return (0, self.expires_at, self.seq)


@dataclass
class Hold:
    """Tokens reserved by a ``hold`` entry until ``expires_at``."""

    hold_id: str
    amount: int
    expires_at: datetime
    operation: str | None
    created_at: datetime
    draws: list[Draw] = field(default_factory=list)


@dataclass(frozen=True)
class Balance:
    """An account's balance right after its entry ``version``.

    Invariant: ``available + held == purchased + granted + refunded
    - consumed - deducted - expired`` and ``available >= -credit_limit``.
    ``position`` is the global position of the last entry applied (``None``
    until known, e.g. before the entry is stored).
    """

    account_id: str
    available: int = 0
    held: int = 0
    credit_limit: int = 0
    purchased: int = 0
    granted: int = 0
    consumed: int = 0
    refunded: int = 0
    deducted: int = 0
    expired: int = 0
    version: int = 0
    position: int | None = None
    updated_at: datetime | None = None
    hash: str = "0" * 64
    """The hash of entry ``version`` (64 zeros before the first entry)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (datetimes left as datetimes)."""
        return dict(self.__dict__)
