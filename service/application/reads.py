"""Reads served from the event store: entries, history, holds and credits.

(The current balance is served by the balance projection, see ``projections``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from service.application.ledger import Ledger
from service.application.pages import CreditsPublic, EntriesPage, GlobalEntriesPage, HoldsPublic
from service.domain.account import Account
from service.domain.errors import AccountNotFound, EntryNotFound
from service.domain.events import ENTRY_EVENTS, LedgerEntry
from service.domain.hashing import rfc3339
from service.domain.published import BalancePublic, EntryPublic, render_balance, render_entry
from service.domain.values import Balance, account_uuid

ENTRY_TOPICS: tuple[str, ...] = tuple(get_topic(cls) for cls in ENTRY_EVENTS)


def _account(ledger: Ledger, account_id: str, version: int | None = None) -> Account:
    try:
        account = ledger.get_account(account_id, version)
    except AggregateNotFoundError:
        raise AccountNotFound(f"account {account_id} has no entries") from None
    if account.version == 0:
        raise AccountNotFound(f"account {account_id} has no entries")
    return account


def account_entries(ledger: Ledger, account_id: str, after_version: int, limit: int) -> EntriesPage:
    """``{"entries": [...], "next_after_version": int | None}``: up to ``limit``
    entries with version > ``after_version``, in version order.

    Raises:
        AccountNotFound: the account has no entries (404).
    """
    notifications = ledger.ledger_recorder.select_entries(
        account_uuid(account_id), max(after_version, 0), limit + 1
    )
    if not notifications and not _exists(ledger, account_id):
        raise AccountNotFound(f"account {account_id} has no entries")
    entries, more = rendered_entries(ledger, notifications, limit)
    return {
        "entries": entries,
        "next_after_version": entries[-1]["version"] if more and entries else None,
    }


def global_entries(ledger: Ledger, after_position: int, limit: int) -> GlobalEntriesPage:
    """``{"entries": [...], "next_after_position": int | None}``: the global log
    after ``after_position``, in position order."""
    notifications = ledger.recorder.select_notifications(
        start=after_position, limit=limit + 1, topics=ENTRY_TOPICS, inclusive_of_start=False
    )
    entries, more = rendered_entries(ledger, notifications, limit)
    return {
        "entries": entries,
        "next_after_position": entries[-1]["position"] if more and entries else None,
    }


def rendered_entries(
    ledger: Ledger, notifications: Sequence[Notification], limit: int
) -> tuple[list[EntryPublic], bool]:
    """The first ``limit`` stored entries as contract Entries, and whether
    there were more (callers ask for ``limit + 1`` to know)."""
    entries: list[EntryPublic] = []
    for notification in notifications[:limit]:
        entry = ledger.mapper.to_domain_event(notification)
        assert isinstance(entry, LedgerEntry)
        entries.append(render_entry(entry, notification.id))
    return entries, len(notifications) > limit


def balance_at_version(ledger: Ledger, account_id: str, version: int) -> BalancePublic:
    """The balance right after entry ``version``, rebuilt from the entries.

    Raises:
        AccountNotFound: the account has no entries (404).
        EntryNotFound: the account has not reached ``version`` (404).
    """
    current = _account(ledger, account_id)
    if version > current.version:
        raise EntryNotFound(f"account {account_id} has no version {version}")
    if version == 0:
        return render_balance(Balance(account_id), 0)
    account = _account(ledger, account_id, version)
    _, position = ledger.entry_at(account_id, version)
    return render_balance(account.balance(), position)


def balance_as_of(ledger: Ledger, account_id: str, moment: datetime) -> BalancePublic:
    """The balance at ``moment`` (the last entry recorded at or before it);
    zeros at version 0 before the first entry.

    Bounded work whatever the history's length: a binary search over entry
    versions (an account's entries are recorded in time order) finds the
    version in about log2(versions) point reads, and the account is rebuilt
    from its nearest snapshot at or below that version.

    Raises:
        AccountNotFound: the account has no entries (404).
    """
    low, high = 0, _account(ledger, account_id).version  # recorded at or before: low
    while low < high:
        middle = (low + high + 1) // 2
        entry, _ = ledger.entry_at(account_id, middle)
        if entry.timestamp <= moment:
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return render_balance(Balance(account_id), 0)
    return balance_at_version(ledger, account_id, low)


def active_holds(ledger: Ledger, account_id: str) -> HoldsPublic:
    """``{"holds": [...]}``: holds still active now (expired ones excluded)."""
    account = _settled(ledger, account_id)
    holds = sorted(account.holds.values(), key=lambda h: h.created_at)
    return {
        "holds": [
            {
                "hold_id": h.hold_id,
                "amount": h.amount,
                "expires_at": rfc3339(h.expires_at) or "",
                "operation": h.operation,
                "created_at": rfc3339(h.created_at) or "",
            }
            for h in holds
        ]
    }


def credit_buckets(ledger: Ledger, account_id: str) -> CreditsPublic:
    """``{"credits": [...]}``: buckets with tokens left now, in draw-down order."""
    account = _settled(ledger, account_id)
    return {
        "credits": [
            {
                "entry_id": b.entry_id,
                "type": b.type,
                "amount": b.amount,
                "remaining": b.remaining,
                "expires_at": rfc3339(b.expires_at),
            }
            for b in account.credits()
        ]
    }


def current_balance(ledger: Ledger, account_id: str) -> Balance:
    """The aggregate's balance now, settled (used by tests and checks)."""
    return _settled(ledger, account_id).balance()


def _settled(ledger: Ledger, account_id: str) -> Account:
    account = _account(ledger, account_id)
    account.settle(ledger.clock())
    return account


def _exists(ledger: Ledger, account_id: str) -> bool:
    try:
        _account(ledger, account_id)
    except AccountNotFound:
        return False
    return True
