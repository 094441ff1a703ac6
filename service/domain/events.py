"""Ledger entries as domain events of an account (:class:`AccountState`).

Every entry type of the contract is one event class. All share one shape
(:class:`LedgerEntry`), so an entry renders the same way whatever its type, and
each knows its effect on the balance counters (:meth:`LedgerEntry.effects`),
which both the aggregate and the balance projection apply.

Decisions are recorded, not recomputed: which credit buckets a consumption drew
from (``draws``) and where a refund or release put tokens back (``restores``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from eventsourcing.domain import Aggregate

from service.domain.values import Draw, EntryType


@dataclass(frozen=True)
class Effects:
    """Changes to the balance counters made by one entry, in tokens.

    ``credit_limit`` is the new limit for a ``credit_limit_change``, else ``None``.
    """

    available: int = 0
    held: int = 0
    purchased: int = 0
    granted: int = 0
    consumed: int = 0
    refunded: int = 0
    deducted: int = 0
    expired: int = 0
    credit_limit: int | None = None


_COUNTER = {
    EntryType.PURCHASE: "purchased",
    EntryType.GRANT: "granted",
    EntryType.CONSUMPTION: "consumed",
    EntryType.HOLD_CAPTURE: "consumed",
    EntryType.DEDUCTION: "deducted",
    EntryType.REFUND: "refunded",
    EntryType.CREDIT_EXPIRY: "expired",
}


class AccountState(Protocol):
    """What an entry changes when applied: the account's counters, its
    credit buckets and holds (:class:`~service.domain.account.Account`
    implements it; this module does not import it, so imports run one way)."""

    last_hash: str
    refunded_of: dict[str, int]

    def apply_effects(self, effects: Effects) -> None: ...
    def add_credit(self, entry: LedgerEntry) -> None: ...
    def take(self, draws: list[Draw]) -> None: ...
    def put_back(self, restores: list[Draw]) -> None: ...
    def open_hold(self, entry: LedgerEntry) -> None: ...
    def close_hold(self, entry: LedgerEntry) -> None: ...


class LedgerEntry(Aggregate.Event):
    """One ledger entry; ``originator_version`` is its account version.

    Amounts in tokens; ``delta_available`` / ``delta_held`` are the changes to
    ``available`` / ``held``. ``draws`` are tokens taken from credit buckets,
    ``restores`` tokens put back into them.
    """

    entry_type: ClassVar[EntryType]

    account_id: str
    amount: int
    delta_available: int
    delta_held: int
    actor: str
    idempotency_key: str | None
    operation: str | None
    model: str | None
    payment_reference: str | None
    reason: str | None
    hold_id: str | None
    refund_of: str | None
    expires_at: datetime | None
    metadata: dict[str, Any]
    draws: list[Draw]
    restores: list[Draw]
    command_id: str | None = None
    """Id of the command that recorded the entry (``None`` for the ledger's
    own expiries): after a lost commit acknowledgement, the writer finds out
    whether the stored entry is its own."""
    hash: str | None = None
    """The entry's link in the account's hash chain (``service.domain.hashing``),
    fixed when the entry is recorded."""

    def effects(self) -> Effects:
        """The entry's changes to the balance counters."""
        return self.effects_of(self.amount, self.delta_available, self.delta_held)

    @classmethod
    def effects_of(cls, amount: int, delta_available: int, delta_held: int) -> Effects:
        """The changes an entry of this type with these amounts (tokens) makes."""
        counters: dict[str, int] = {}
        counter = _COUNTER.get(cls.entry_type)
        if counter is not None:
            counters[counter] = amount
        limit = amount if cls.entry_type is EntryType.CREDIT_LIMIT_CHANGE else None
        return Effects(
            available=delta_available,
            held=delta_held,
            credit_limit=limit,
            **counters,
        )

    def apply(self, aggregate: AccountState) -> None:
        aggregate.apply_effects(self.effects())
        if self.hash is not None:
            aggregate.last_hash = self.hash
        self.apply_state(aggregate)

    def apply_state(self, account: AccountState) -> None:
        """Changes the account's buckets and holds (type-specific)."""


class Purchased(LedgerEntry):
    entry_type = EntryType.PURCHASE

    def apply_state(self, account: AccountState) -> None:
        account.add_credit(self)


class Granted(LedgerEntry):
    entry_type = EntryType.GRANT

    def apply_state(self, account: AccountState) -> None:
        account.add_credit(self)


class Consumed(LedgerEntry):
    entry_type = EntryType.CONSUMPTION

    def apply_state(self, account: AccountState) -> None:
        account.take(self.draws)


class Deducted(LedgerEntry):
    entry_type = EntryType.DEDUCTION

    def apply_state(self, account: AccountState) -> None:
        account.take(self.draws)


class Refunded(LedgerEntry):
    entry_type = EntryType.REFUND

    def apply_state(self, account: AccountState) -> None:
        account.put_back(self.restores)
        assert self.refund_of is not None
        account.refunded_of[self.refund_of] = (
            account.refunded_of.get(self.refund_of, 0) + self.amount
        )


class HoldPlaced(LedgerEntry):
    entry_type = EntryType.HOLD

    def apply_state(self, account: AccountState) -> None:
        account.take(self.draws)
        account.open_hold(self)


class HoldCaptured(LedgerEntry):
    entry_type = EntryType.HOLD_CAPTURE

    def apply_state(self, account: AccountState) -> None:
        account.close_hold(self)


class HoldReleased(LedgerEntry):
    entry_type = EntryType.HOLD_RELEASE

    def apply_state(self, account: AccountState) -> None:
        account.close_hold(self)


class HoldExpired(LedgerEntry):
    entry_type = EntryType.HOLD_EXPIRY

    def apply_state(self, account: AccountState) -> None:
        account.close_hold(self)


class CreditExpired(LedgerEntry):
    entry_type = EntryType.CREDIT_EXPIRY

    def apply_state(self, account: AccountState) -> None:
        account.take(self.draws)


class CreditLimitChanged(LedgerEntry):
    entry_type = EntryType.CREDIT_LIMIT_CHANGE


ENTRY_EVENTS: tuple[type[LedgerEntry], ...] = (
    Purchased,
    Granted,
    Consumed,
    Deducted,
    Refunded,
    HoldPlaced,
    HoldCaptured,
    HoldReleased,
    HoldExpired,
    CreditExpired,
    CreditLimitChanged,
)
"""Every entry event class, one per :class:`EntryType`."""
