"""The balance projection: ``ledger_balances`` built from the ledger's entries.

Each entry's effects (:meth:`LedgerEntry.effects`) are added to its account's
row, the expiry schedule is updated, and the tracking position is recorded, all
in one transaction: a restart resumes after the last committed position, so no
entry is lost or applied twice. After each commit the new balance and the
entry are published on the bridge (``projections.broker``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from projections.broker import Broker
from projections.channels import POSITIONS, account_channel
from service.application.rendering import render_entry, rfc3339
from service.config import APPLICATION_NAME
from service.domain.events import (
    ENTRY_EVENTS,
    CreditExpired,
    Granted,
    HoldCaptured,
    HoldExpired,
    HoldPlaced,
    HoldReleased,
    LedgerEntry,
    Purchased,
)
from service.domain.values import entry_id_for


class BalanceView(TrackingRecorder, ABC):
    """A materialized view of balances that records its tracking position."""

    @abstractmethod
    def apply_entry(
        self, entry: LedgerEntry, tracking: Tracking, schedule: list[tuple[str, str | None]]
    ) -> dict[str, Any] | None:
        """Adds the entry's effects to its account's row, applies the expiry
        ``schedule`` changes (``(ref_id, due_at)`` to add, ``(ref_id, None)`` to
        remove) and records ``tracking``, in one transaction. Returns the new
        row as a contract Balance, or ``None`` if the entry was applied before."""
        ...

    @abstractmethod
    def get_balance(self, account_id: str) -> dict[str, Any] | None:
        """The account's row as a contract Balance, or ``None``."""
        ...

    @abstractmethod
    def balances_after(self, position: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` balances last changed after ``position``, in
        position order (each account's latest state)."""
        ...

    @abstractmethod
    def position(self) -> int:
        """The last position applied (0 before any)."""
        ...

    @abstractmethod
    def due_accounts(self, now: str, limit: int) -> list[str]:
        """Accounts with a hold or credit bucket due at ``now`` (RFC 3339)."""
        ...

    @abstractmethod
    def clear_due(self, account_id: str, now: str) -> None:
        """Forgets the account's expiries due at ``now`` once it is settled."""
        ...


def expiry_schedule(entry: LedgerEntry) -> list[tuple[str, str | None]]:
    """The expiry-schedule changes an entry causes: ``(ref_id, due_at)``."""
    if isinstance(entry, HoldPlaced) and entry.hold_id and entry.expires_at:
        return [(entry.hold_id, rfc3339(entry.expires_at))]
    if isinstance(entry, Purchased | Granted) and entry.expires_at is not None:
        ref = str(entry_id_for(entry.originator_id, entry.originator_version))
        return [(ref, rfc3339(entry.expires_at))]
    if isinstance(entry, HoldCaptured | HoldReleased | HoldExpired) and entry.hold_id:
        return [(entry.hold_id, None)]
    if isinstance(entry, CreditExpired) and entry.draws and entry.draws[0].bucket:
        return [(entry.draws[0].bucket, None)]
    return []


class BalanceProjection(Projection[BalanceView]):
    """Projects every ledger entry into the balance view, then publishes."""

    name = "balances"
    topics = tuple(get_topic(cls) for cls in ENTRY_EVENTS)
    broker: Broker | None = None
    """Set by the runner: where balance changes and entries are published."""

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Entries only; anything else just advances the tracking position."""
        self.view.insert_tracking(tracking)

    @process_event.register
    def entry(self, domain_event: LedgerEntry, tracking: Tracking) -> None:
        balance = self.view.apply_entry(domain_event, tracking, expiry_schedule(domain_event))
        if balance is None or self.broker is None:
            return
        account_id = domain_event.account_id
        entry = render_entry(domain_event, tracking.notification_id)
        self.broker.publish_many(
            [
                (account_channel(account_id), {"balance": balance, "entries": [entry]}),
                (POSITIONS, {"position": tracking.notification_id}),
            ]
        )


def balance_params(entry: LedgerEntry, tracking: Tracking) -> dict[str, Any]:
    """Bound parameters of ``UPSERT_BALANCE`` for one entry."""
    effects = entry.effects()
    return {
        "account_id": entry.account_id,
        "available": effects.available,
        "held": effects.held,
        "purchased": effects.purchased,
        "granted": effects.granted,
        "consumed": effects.consumed,
        "refunded": effects.refunded,
        "deducted": effects.deducted,
        "expired": effects.expired,
        "credit_limit": effects.credit_limit or 0,
        "new_limit": effects.credit_limit,
        "version": entry.originator_version,
        "position": tracking.notification_id,
        "updated_at": rfc3339(entry.timestamp),
    }


def tracking_of(position: int) -> Tracking:
    """A tracking record of the ledger application at ``position``."""
    return Tracking(APPLICATION_NAME, position)
