"""The ledger's read side for the API: one query service per process.

Current balances come from the balance projection (its row, or the newest one
the bridge brought); history, holds, credits and statements from the event
store (:mod:`service.application.reads`, :mod:`service.application.statement`).
Every call that touches the database runs through the process's circuit
breaker, so a database that does not answer is
:class:`~service.domain.errors.Unavailable` (503) within about 5 s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from projections.balances import BalanceView
from projections.hub import StreamHub
from service.adapters.availability import DatabaseGuard
from service.application import reads, statement
from service.application.ledger import Ledger
from service.application.pages import (
    CreditsPublic,
    EntriesPage,
    GlobalEntriesPage,
    HoldsPublic,
    StatementPublic,
)
from service.domain.errors import AccountNotFound
from service.domain.published import BalancePublic

IMPLICIT_WAIT_SECONDS = 2.0
"""Without ``min_position``, how long a balance read waits for the projection
to apply the account's last entry (read-your-writes for sequential clients)."""


class LedgerQueries:
    """Reads of balances, entries, holds, credits and statements (contract v1.1)."""

    def __init__(
        self, ledger: Ledger, balances: BalanceView, hub: StreamHub, guard: DatabaseGuard
    ) -> None:
        self.ledger, self.balances, self.hub, self.guard = ledger, balances, hub, guard

    async def balance(
        self, account_id: str, min_position: int | None, wait: float
    ) -> BalancePublic:
        """The account's current balance once the projection has applied
        ``min_position`` (waiting up to ``wait`` seconds); with ``stale: true``
        when it has not by then. Without ``min_position``: the position of the
        account's last entry written by this process, waited for up to
        :data:`IMPLICIT_WAIT_SECONDS` (read-your-writes).

        Raises:
            AccountNotFound: the account has no entries (404).
            Unavailable: the database does not answer (503).
        """
        if min_position is None:
            min_position = self.ledger.written.get(account_id, 0)
            wait = IMPLICIT_WAIT_SECONDS
        stale = not await self.hub.wait_for_position(min_position, wait)
        balance = self.hub.latest.get(account_id)
        if balance is None or balance["position"] < min_position:
            balance = await self.guard.call(self.balances.get_balance, account_id)
            if balance is None:
                raise AccountNotFound(f"account {account_id} has no entries")
            self.hub.latest.heard(balance)
        if stale:
            balance = {**balance, "stale": True}
        return cast(BalancePublic, balance)

    async def balance_at_version(self, account_id: str, version: int) -> BalancePublic:
        """The balance right after entry ``version`` (see
        :func:`service.application.reads.balance_at_version`)."""
        return await self.guard.call(reads.balance_at_version, self.ledger, account_id, version)

    async def balance_as_of(self, account_id: str, moment: datetime) -> BalancePublic:
        """The balance at ``moment`` (see :func:`service.application.reads.balance_as_of`)."""
        return await self.guard.call(reads.balance_as_of, self.ledger, account_id, moment)

    async def entries(self, account_id: str, after_version: int, limit: int) -> EntriesPage:
        """Up to ``limit`` entries after ``after_version``, in version order."""
        return await self.guard.call(
            reads.account_entries, self.ledger, account_id, after_version, limit
        )

    async def global_entries(self, after_position: int, limit: int) -> GlobalEntriesPage:
        """Up to ``limit`` entries of the log after ``after_position``."""
        return await self.guard.call(reads.global_entries, self.ledger, after_position, limit)

    async def holds(self, account_id: str) -> HoldsPublic:
        """The account's active holds."""
        return await self.guard.call(reads.active_holds, self.ledger, account_id)

    async def credits(self, account_id: str) -> CreditsPublic:
        """The account's credit buckets with tokens left, in draw-down order."""
        return await self.guard.call(reads.credit_buckets, self.ledger, account_id)

    async def statement(self, account_id: str, start: datetime, end: datetime) -> StatementPublic:
        """The account over ``[start, end)``; a window that is not one is a 422
        even while the store is down (checked before any read)."""
        statement.check_window(start, end)
        return await self.guard.call(
            statement.account_statement, self.ledger, account_id, start, end
        )

    async def projection_progress(self) -> tuple[int, int]:
        """``(applied, head)``: the projection's tracking position and the log's
        last position."""
        return await self.guard.call(self._progress)

    @property
    def bridge_healthy(self) -> bool:
        """Whether the bridge (Redis) answers; streams read the store while not."""
        return bool(self.hub.broker.healthy)

    async def store_answers(self) -> None:
        """Returns once the database answered one read (raises
        :class:`~service.domain.errors.Unavailable` within about 5 s otherwise)."""
        await self.guard.call(self.balances.position)

    def _progress(self) -> tuple[int, int]:
        applied = self.balances.position()
        recorder: Any = self.ledger.recorder
        return applied, int(recorder.max_notification_id() or 0)
