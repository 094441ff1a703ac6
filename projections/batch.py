"""A batch of log entries turned into one balance-table change.

Many entries of the log become, per account, one row of summed counter
changes (the last credit limit set, the last version, position and time), and
the expiry schedule's net changes: what :meth:`BalanceView.apply_batch` writes
in one transaction with the tracking position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.domain.events import (
    CreditExpired,
    Granted,
    HoldCaptured,
    HoldExpired,
    HoldPlaced,
    HoldReleased,
    LedgerEntry,
    Purchased,
)
from service.domain.hashing import rfc3339
from service.domain.published import EntryPublic, render_entry
from service.domain.values import COUNTERS, entry_id_for

Positioned = tuple[LedgerEntry, int]
"""An entry and its position in the log."""


def expiry_schedule(entry: LedgerEntry) -> list[tuple[str, str | None]]:
    """The expiry-schedule changes an entry causes: ``(ref_id, due_at)`` to
    add, ``(ref_id, None)`` to remove."""
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


@dataclass
class BatchPlan:
    """``rows``: ``UPSERT_BALANCE`` parameters, one per account; ``schedule``:
    net ``(account_id, ref_id, due_at or None)`` changes; ``entries``: each
    account's entries in version order; ``last``: the batch's last position."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: dict[tuple[str, str], str | None] = field(default_factory=dict)
    entries: dict[str, list[Positioned]] = field(default_factory=dict)
    last: int = 0
    _rendered: dict[str, list[EntryPublic]] = field(default_factory=dict, repr=False)

    def rendered(self, account_id: str) -> list[EntryPublic]:
        """The account's entries as published (contract Entry), rendered once
        for the bridge and the webhook outbox alike."""
        entries = self._rendered.get(account_id)
        if entries is None:
            entries = [render_entry(e, p) for e, p in self.entries.get(account_id, ())]
            self._rendered[account_id] = entries
        return entries

    @property
    def limit_changes(self) -> list[str]:
        """Accounts whose credit limit the batch changes."""
        return [a for a, row in self.rows.items() if row["new_limit"] is not None]

    def states(self, final: dict[str, Any], prior_limit: int | None) -> list[dict[str, Any]]:
        """The account's balance right after each of its entries in the batch,
        from its row after the batch (``final``) and, when the batch changes
        the credit limit, the limit before the batch (``prior_limit``; ``None``
        for an account new in the table, whose limit was 0)."""
        account_entries = self.entries[final["account_id"]]
        totals = self.rows[final["account_id"]]
        state = {**final, **{c: final[c] - totals[c] for c in COUNTERS}}
        if totals["new_limit"] is not None:
            state["credit_limit"] = prior_limit or 0
        states = []
        for entry, position in account_entries:
            effects = entry.effects()
            state = dict(state)
            for counter in COUNTERS:
                state[counter] += getattr(effects, counter)
            if effects.credit_limit is not None:
                state["credit_limit"] = effects.credit_limit
            state.update(
                version=entry.originator_version,
                position=position,
                updated_at=rfc3339(entry.timestamp),
                hash=entry.hash,
            )
            states.append(state)
        states[-1] = final
        return states

    def add(self, entry: LedgerEntry, position: int) -> None:
        """Folds one entry (in log order) into the plan."""
        account_id = entry.account_id
        effects = entry.effects()
        row = self.rows.get(account_id)
        if row is None:
            row = self.rows[account_id] = dict.fromkeys(COUNTERS, 0)
            row.update(account_id=account_id, credit_limit=0, new_limit=None)
        for counter in COUNTERS:
            row[counter] += getattr(effects, counter)
        if effects.credit_limit is not None:
            row["credit_limit"] = row["new_limit"] = effects.credit_limit
        row.update(
            version=entry.originator_version,
            position=position,
            updated_at=rfc3339(entry.timestamp),
            hash=entry.hash,
        )
        for ref_id, due_at in expiry_schedule(entry):
            self.schedule[(account_id, ref_id)] = due_at
        self.entries.setdefault(account_id, []).append((entry, position))
        self.last = max(self.last, position)


def plan_batch(entries: list[Positioned]) -> BatchPlan:
    """The plan of ``entries`` (in log order)."""
    plan = BatchPlan()
    for entry, position in entries:
        plan.add(entry, position)
    return plan
