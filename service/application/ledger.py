"""The ledger application: the only code that loads and saves accounts.

Each write loads the account (aggregate cache + snapshots keep this constant in
the account's history), runs one command, and saves its entries together with
the request's idempotency record in one transaction. A version conflict (an
entry written meanwhile by another process) is retried a bounded number of
times; in this process, writes to one account are serialized by a lock.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import MutableOrImmutableAggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Recording

from service.adapters.recorders import IdempotencyRecord, LedgerRecorder
from service.application.idempotency import IdempotencyRequest, InFlight
from service.application.rendering import render_balance, render_entry
from service.application.transcodings import register_domain_transcodings
from service.config import APPLICATION_NAME
from service.domain.account import Account, Outcome
from service.domain.errors import IdempotencyKeyReused, Unavailable
from service.domain.events import LedgerEntry
from service.domain.values import account_uuid

MAX_ATTEMPTS = 30
"""Bounded retries of one write on version conflicts."""

Command = Callable[[Account, datetime], Outcome]
"""A command on an account at a time: returns its entry and balance after it."""


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(frozen=True)
class WriteResult:
    """A write's answer: HTTP ``status``, ``body`` = ``{"entry", "balance"}``,
    and ``replayed`` when it repeats an earlier answer (``Idempotent-Replayed``)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False
    position: int = 0


class Ledger(Application[UUID]):
    """Event-sourced ledger of :class:`Account` aggregates."""

    name = APPLICATION_NAME
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[Any]], int]] = {
        Account: 200
    }

    def __init__(
        self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utc_now
    ) -> None:
        super().__init__(env)
        interval = self.env.get("SNAPSHOT_INTERVAL")
        if interval:
            self.snapshotting_intervals = {Account: int(interval)}  # type: ignore[misc]
        self.clock = clock
        self.in_flight = InFlight()
        self._locks_guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.saved = threading.Event()
        """Set after every save: wakes a projection that polls (SQLite)."""

    @property
    def ledger_recorder(self) -> LedgerRecorder:
        recorder: Any = self.recorder
        return recorder  # type: ignore[no-any-return]

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        super()._notify(recordings)
        self.saved.set()

    # Writes ------------------------------------------------------------------

    def execute(
        self,
        account_id: str,
        command: Command,
        idempotency: IdempotencyRequest | None = None,
        status: int = 201,
    ) -> WriteResult:
        """Runs ``command`` on the account and saves its entries.

        Raises:
            LedgerError: what the command raises (402, 404, 409, 422), or
                IdempotencyKeyInFlight (409), IdempotencyKeyReused (422),
                Unavailable (503) after ``MAX_ATTEMPTS`` version conflicts.
        """
        if idempotency is None:
            return self._write(account_id, command, None, status)
        with self.in_flight.claim(account_id, idempotency.key):
            replay = self.replay(account_id, idempotency)
            if replay is not None:
                return replay
            return self._write(account_id, command, idempotency, status)

    def replay(self, account_id: str, idempotency: IdempotencyRequest) -> WriteResult | None:
        """The stored answer for ``idempotency.key``, or ``None`` when unused.

        Raises:
            IdempotencyKeyReused: the key came with a different request (422).
        """
        record = self.ledger_recorder.idempotency_record(account_id, idempotency.key)
        if record is None:
            return None
        if record.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {idempotency.key!r} was used with a different request"
            )
        entry, position = self.entry_at(account_id, record.version)
        account = self.get_account(account_id, record.version)
        body = {
            "entry": render_entry(entry, position),
            "balance": render_balance(account.balance(), position),
        }
        return WriteResult(record.status, body, replayed=True, position=position)

    def _write(
        self, account_id: str, command: Command, idempotency: IdempotencyRequest | None, status: int
    ) -> WriteResult:
        for attempt in range(MAX_ATTEMPTS):
            with self._lock_for(account_id):
                account = self.load_or_open(account_id)
                outcome = command(account, self.clock())
                record = None
                if idempotency is not None:
                    record = IdempotencyRecord(
                        account_id,
                        idempotency.key,
                        idempotency.fingerprint,
                        status,
                        outcome.entry.originator_version,
                    )
                try:
                    recordings = self.save(account, idempotency=record)
                except IntegrityError:
                    self._evict(account_id)
                    if idempotency is not None:
                        replay = self.replay(account_id, idempotency)
                        if replay is not None:
                            return replay
                else:
                    position = next(
                        r.notification.id for r in recordings if r.domain_event is outcome.entry
                    )
                    body = {
                        "entry": render_entry(outcome.entry, position),
                        "balance": render_balance(outcome.balance, position),
                    }
                    return WriteResult(status, body, position=position)
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311
        raise Unavailable("too many concurrent writes to this account; retry", retry_after=1)

    def settle(self, account_id: str) -> int:
        """Records the account's due hold and credit expiries (the sweeper's
        command); returns how many entries were recorded (0 when none were due)."""
        for _ in range(MAX_ATTEMPTS):
            with self._lock_for(account_id):
                try:
                    account = self.get_account(account_id)
                except AggregateNotFoundError:
                    return 0
                entries = account.settle(self.clock())
                if not entries:
                    return 0
                try:
                    self.save(account)
                except IntegrityError:
                    self._evict(account_id)
                    continue
                return len(entries)
        raise Unavailable("too many concurrent writes to this account; retry", retry_after=1)

    # Loading -----------------------------------------------------------------

    def get_account(self, account_id: str, version: int | None = None) -> Account:
        """The account (at ``version``, default latest).

        Raises:
            AggregateNotFoundError: the account has no events.
        """
        account: Account = self.repository.get(account_uuid(account_id), version=version)
        return account

    def load_or_open(self, account_id: str) -> Account:
        """The account, or a new one (not yet saved) when it has no entries."""
        try:
            return self.get_account(account_id)
        except AggregateNotFoundError:
            return Account(account_id=account_id)

    def entry_at(self, account_id: str, version: int) -> tuple[LedgerEntry, int]:
        """The entry at ``version`` of the account and its position.

        Raises:
            LookupError: no entry at that version.
        """
        notifications = self.ledger_recorder.select_entries(
            account_uuid(account_id), version - 1, 1
        )
        if not notifications or notifications[0].originator_version != version:
            raise LookupError(version)
        entry = self.mapper.to_domain_event(notifications[0])
        assert isinstance(entry, LedgerEntry)
        return entry, notifications[0].id

    def _lock_for(self, account_id: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(account_id)
            if lock is None:
                lock = threading.Lock()
                self._locks[account_id] = lock
            return lock

    def _evict(self, account_id: str) -> None:
        cache = self.repository.cache
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(account_uuid(account_id), evict=True)
