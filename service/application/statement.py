"""Account statements (contract v1.1, "Reads"): an account's balance at the
start and at the end of a time window, and what was recorded in between.

A statement over ``[start, end)`` is bounded by the window, not by the
account's history: two binary searches over entry versions (an account's
entries are recorded in time order) find the opening and closing versions in
about 2·log2(versions) point reads, the two balances are rebuilt from the
nearest snapshots (:func:`service.application.reads.balance_at_version`), and
only the entries inside the window are read, :data:`PAGE` at a time.
"""

from __future__ import annotations

from datetime import datetime

from service.application.ledger import Ledger
from service.application.pages import StatementPublic, TypeTotalPublic
from service.application.reads import balance_at_version
from service.domain.errors import AccountNotFound, ValidationFailed
from service.domain.events import LedgerEntry
from service.domain.hashing import rfc3339
from service.domain.values import EntryType, account_uuid

PAGE = 1000
"""Entries read per query while summing a window's totals."""
LAST_POSITION = 2**62
"""A position after every stored one (``version_at_position``: the latest)."""
_TYPE_ORDER = {entry_type.value: index for index, entry_type in enumerate(EntryType)}


def check_window(start: datetime, end: datetime) -> None:
    """Raises ValidationFailed (422) unless ``start`` is before ``end``."""
    if start >= end:
        raise ValidationFailed.at(["query", "to"], "must be later than from")


def account_statement(
    ledger: Ledger, account_id: str, start: datetime, end: datetime
) -> StatementPublic:
    """The statement of ``account_id`` over ``[start, end)`` (aware datetimes):
    ``{"account_id", "from", "to", "opening": Balance, "closing": Balance,
    "totals": {type: {"count", "amount"}}, "first_version", "last_version"}``.

    ``opening`` is the balance after every entry recorded before ``start``
    (version 0 and zeros when none), ``closing`` after every entry recorded
    before ``end``; ``totals`` counts the window's entries and sums their
    ``amount`` (tokens; for ``credit_limit_change`` the new limit) by type, in
    the contract's order of types; ``first_version``/``last_version`` are the
    window's first and last entry versions (``None`` when it has none).

    Raises:
        ValidationFailed: ``start`` is not before ``end`` (422).
        AccountNotFound: the account has no entries (404).
    """
    check_window(start, end)
    latest = ledger.ledger_recorder.version_at_position(account_uuid(account_id), LAST_POSITION)
    if latest == 0:
        raise AccountNotFound(f"account {account_id} has no entries")
    opening = last_version_before(ledger, account_id, start, 0, latest)
    closing = last_version_before(ledger, account_id, end, opening, latest)
    return {
        "account_id": account_id,
        "from": rfc3339(start) or "",
        "to": rfc3339(end) or "",
        "opening": balance_at_version(ledger, account_id, opening),
        "closing": balance_at_version(ledger, account_id, closing),
        "totals": window_totals(ledger, account_id, opening, closing),
        "first_version": opening + 1 if closing > opening else None,
        "last_version": closing if closing > opening else None,
    }


def last_version_before(
    ledger: Ledger, account_id: str, moment: datetime, low: int, high: int
) -> int:
    """The last version in ``[low, high]`` recorded strictly before ``moment``,
    by binary search (about log2(high - low) point reads); ``low`` must be 0
    or a version recorded before ``moment``, and is the answer when no later
    one is."""
    while low < high:
        middle = (low + high + 1) // 2
        entry, _ = ledger.entry_at(account_id, middle)
        if entry.timestamp < moment:
            low = middle
        else:
            high = middle - 1
    return low


def window_totals(
    ledger: Ledger, account_id: str, after_version: int, through_version: int
) -> dict[str, TypeTotalPublic]:
    """``{type: {"count": entries, "amount": tokens}}`` of the entries with
    versions in ``(after_version, through_version]``, read :data:`PAGE` at a
    time; types without entries are left out."""
    originator = account_uuid(account_id)
    totals: dict[str, TypeTotalPublic] = {}
    after = after_version
    while after < through_version:
        page = ledger.ledger_recorder.select_entries(
            originator, after, min(PAGE, through_version - after)
        )
        if not page:
            break
        for notification in page:
            entry = ledger.mapper.to_domain_event(notification)
            assert isinstance(entry, LedgerEntry)
            total = totals.setdefault(entry.entry_type.value, {"count": 0, "amount": 0})
            total["count"] += 1
            total["amount"] += entry.amount
        after = page[-1].originator_version
    return {kind: totals[kind] for kind in sorted(totals, key=_TYPE_ORDER.__getitem__)}
