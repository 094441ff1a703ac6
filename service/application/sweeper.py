"""The expiry sweeper: records due ``hold_expiry`` and ``credit_expiry`` entries.

Commands already settle an account before they run, so a command never sees
expired tokens; the sweeper makes the entries appear for idle accounts too,
within ``sweep_seconds`` (default 1 s, the contract allows 15 s).

One process of a deployment sweeps: the leader (``service.adapters.leader``).
It would still be safe in several at once: it writes through the committer
like every command, whose group commit checks each account's version under
the table lock, so of two sweepers settling one account one records the
expiries and the other, reloaded, finds nothing left to expire.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from service.adapters.leader import Leadership
from service.application.ledger import Ledger
from service.domain.hashing import rfc3339

log = logging.getLogger(__name__)

BATCH = 200


class ExpirySchedule(Protocol):
    """Where the sweeper finds due accounts (the balance view keeps it)."""

    def due_accounts(self, now: str, limit: int) -> list[str]: ...

    def clear_due(self, account_id: str, now: str) -> None: ...


class Sweeper:
    """Settles every account with a due expiry, every ``interval`` seconds."""

    def __init__(
        self,
        ledger: Ledger,
        schedule: ExpirySchedule,
        interval: float,
        leadership: Leadership | None = None,
    ) -> None:
        self.ledger = ledger
        self.leadership = leadership
        self.schedule = schedule
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self) -> int:
        """Settles the accounts due now; returns the number of entries recorded."""
        now = rfc3339(self.ledger.clock())
        assert now is not None
        recorded = 0
        while True:
            accounts = self.schedule.due_accounts(now, BATCH)
            for account_id in accounts:
                recorded += self.ledger.settle(account_id)
                try:
                    self.schedule.clear_due(account_id, now)
                except Exception as error:  # only a shortcut: the projection clears it too
                    log.info("expiry schedule of %s left for the projection: %s", account_id, error)
            if len(accounts) < BATCH:
                return recorded

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.leadership is not None and not self.leadership.is_leader.is_set():
                continue
            try:
                self.sweep_once()
            except Exception:
                log.exception("expiry sweep failed; retrying")
