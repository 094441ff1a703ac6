"""The balance projection: ``ledger_balances`` built from the ledger's entries.

Entries are applied in batches (``projections.batch``): per changed account one
row of summed effects, the expiry schedule's net changes and the tracking
position, in one transaction; a restart resumes after the last committed
position, so no entry is lost or applied twice. After each commit every changed
account's balance and entries go out on the bridge in one message, then the
position (``projections.channels``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from projections.batch import BatchPlan, expiry_schedule, plan_batch
from projections.broker import Broker
from projections.channels import POSITIONS, account_channel
from service.config import APPLICATION_NAME
from service.domain.events import ENTRY_EVENTS, LedgerEntry

__all__ = ["BalanceProjection", "BalanceView", "expiry_schedule", "publish_batch"]


class BalanceView(TrackingRecorder, ABC):
    """A materialized view of balances that records its tracking position."""

    @abstractmethod
    def apply_batch(
        self, plan: BatchPlan, tracking: Tracking, start: int | None, with_states: bool = True
    ) -> list[list[dict[str, Any]]] | None:
        """Writes ``plan`` and records ``tracking`` in one transaction; returns
        per changed account its balances (contract Balances) right after each
        of its entries in the batch, the last being its new row (an account
        whose row is already past the plan's version is left out; none at all
        when not ``with_states``), or ``None``, writing nothing, when ``start``
        is given and the tracking position is no longer ``start`` (another
        runner moved it)."""
        ...

    def apply_entry(
        self, entry: LedgerEntry, tracking: Tracking, schedule: list[tuple[str, str | None]]
    ) -> dict[str, Any] | None:
        """A batch of one entry, with the expiry ``schedule`` changes given
        (``(ref_id, due_at)`` to add, ``(ref_id, None)`` to remove). Returns
        the new row, or ``None`` if the entry was applied before."""
        plan = plan_batch([(entry, tracking.notification_id)])
        plan.schedule = {(entry.account_id, ref): due for ref, due in schedule}
        rows = self.apply_batch(plan, tracking, None)
        return rows[0][-1] if rows else None

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
        plan = plan_batch([(domain_event, tracking.notification_id)])
        balances = self.view.apply_batch(plan, tracking, None)
        if balances and self.broker is not None:
            publish_batch(self.broker, plan, balances)


def publish_batch(broker: Broker, plan: BatchPlan, balances: list[list[dict[str, Any]]]) -> None:
    """One message per changed account (its balance after the batch, its
    balance after each of its entries, its entries), then the batch's
    position, in one round trip (never raises)."""
    messages: list[tuple[str, dict[str, Any]]] = []
    for states in balances:
        account_id = states[-1]["account_id"]
        message = {"balance": states[-1], "balances": states, "entries": plan.rendered(account_id)}
        messages.append((account_channel(account_id), message))
    messages.append((POSITIONS, {"position": plan.last}))
    broker.publish_many(messages)


def tracking_at(position: int) -> Tracking:
    """A tracking record of the ledger application at ``position``."""
    return Tracking(APPLICATION_NAME, position)
