"""Projecting entries with the webhook outbox, as the projection does, for
tests of the outbox's store and dispatcher."""

from __future__ import annotations

from collections.abc import Callable

from projections.balances import tracking_at
from projections.batch import plan_batch
from projections.outbox import Outbox
from projections.views import BalanceTable
from service.application.projector import open_balance_view
from service.config import Settings
from service.domain.account import Account
from service.domain.events import LedgerEntry


def project(settings: Settings, accounts: list[Account], start: int) -> int:
    """Projects the accounts' new entries, with the outbox, from position
    ``start``; returns the last position."""
    view = open_balance_view(settings)
    assert isinstance(view, BalanceTable)
    view.outbox = Outbox(view.dialect)
    entries = [e for a in accounts for e in a.collect_events() if isinstance(e, LedgerEntry)]
    batch = [(e, p) for p, e in enumerate(entries, start=start + 1)]
    assert view.apply_batch(plan_batch(batch), tracking_at(start + len(batch)), start) is not None
    return start + len(batch)


def projecting(settings: Settings) -> Callable[[list[Account]], int]:
    """:func:`project` after the previous call's last position (the first
    from 0); each call returns the last position."""
    last = 0

    def project_next(accounts: list[Account]) -> int:
        nonlocal last
        last = project(settings, accounts, last)
        return last

    return project_next
