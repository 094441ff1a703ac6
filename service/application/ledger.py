"""The ledger application: the only code that loads and saves accounts.

Writes go through the :class:`~service.application.committer.Committer`: one
thread per process runs them on accounts it keeps in memory and records many
of them per transaction (group commit), each with its idempotency record.
:meth:`Ledger.submit` is the asyncio entry point (no thread hop for the
caller), :meth:`Ledger.execute` the blocking one. Reads load accounts through
the library's repository (snapshots keep a load short).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import MutableOrImmutableAggregate
from eventsourcing.persistence import JSONTranscoder, Transcoder

from service.adapters.recorders import LedgerRecorder
from service.application.account_run import Command, Committed, Job, JobOutcome, Replay, Settled
from service.application.committer import Committer
from service.application.idempotency import IdempotencyRequest
from service.application.transcodings import FastJSONTranscoder, register_domain_transcodings
from service.config import APPLICATION_NAME
from service.domain.account import Account
from service.domain.errors import IdempotencyKeyReused, LedgerError, Unavailable
from service.domain.events import LedgerEntry
from service.domain.published import WritePublic, render_balance, render_entry
from service.domain.values import account_uuid

__all__ = ["Command", "Ledger", "Write", "WriteResult"]


WRITTEN_MAX = 1_000_000
"""Accounts whose last written position is remembered (then it starts over)."""


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(frozen=True)
class WriteResult:
    """A write's answer: ``body`` = ``{"entry", "balance"}``, and ``replayed``
    when it repeats an earlier answer (``Idempotent-Replayed``)."""

    body: WritePublic
    replayed: bool = False
    position: int = 0

    @classmethod
    def of(cls, committed: Committed) -> WriteResult:
        position = committed.position
        body: WritePublic = {
            "entry": render_entry(committed.entry, position),
            "balance": render_balance(committed.outcome.balance, position),
        }
        return cls(body, committed.replayed, position)


@dataclass(frozen=True)
class Write:
    """A planned write: ``command`` on ``account_id`` and its idempotency request."""

    account_id: str
    command: Command
    idempotency: IdempotencyRequest | None = None


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
        self.snapshot_interval = self.snapshotting_intervals.get(Account, 0)
        self.clock = clock
        self.committer = Committer(self, int(self.env.get("ACCOUNT_CACHE") or 10_000))
        self.saved = threading.Event()
        """Set after every commit: wakes a projection that polls (SQLite)."""
        self.written: dict[str, int] = {}
        """Position of the last entry this process recorded, per account (for
        read-your-writes on balance reads without ``min_position``)."""
        self.committer.after_commit = self._committed
        if self.env.get("CREATE_GROUP_FUNCTION", "y").lower() in ("y", "yes", "true", "1"):
            self.ledger_recorder.create_group_function()

    @property
    def ledger_recorder(self) -> LedgerRecorder:
        recorder: Any = self.recorder
        return recorder  # type: ignore[no-any-return]

    def construct_transcoder(self) -> Transcoder:
        transcoder = FastJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)

    def _committed(self, committed: list[Committed]) -> None:
        if len(self.written) > WRITTEN_MAX:
            self.written.clear()
        for c in committed:
            self.written[c.entry.account_id] = c.position
        self.saved.set()

    def close(self) -> None:
        self.committer.close()
        super().close()

    # Writes ------------------------------------------------------------------

    def job(
        self,
        account_id: str,
        command: Command | None,
        idempotency: IdempotencyRequest | None,
        future: Future[JobOutcome] | asyncio.Future[JobOutcome],
    ) -> Job:
        """A :class:`Job` for :meth:`submit_jobs` (``command=None``: settle only)."""
        return Job(account_id, command, idempotency, future, self.clock)

    def submit_jobs(self, jobs: list[Job]) -> None:
        """Queues jobs for the committer (kept together and in order)."""
        self.committer.submit(jobs)

    async def submit_write(self, write: Write) -> WriteResult:
        """Runs the write's command on its account and records its entry
        (asyncio; answered once committed).

        Raises:
            LedgerError: what the command raises (402, 404, 409, 422), or
                IdempotencyKeyReused (422), Unavailable (503) when the
                database fails.
        """
        results = await self.submit_many([write])
        result = results[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def submit_many(self, writes: list[Write]) -> list[WriteResult | LedgerError]:
        """Runs writes in order (the same account's in request order), all
        queued together; each answers its result or its error."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[JobOutcome]] = [loop.create_future() for _ in writes]
        self.submit_jobs(
            [
                self.job(w.account_id, w.command, w.idempotency, f)
                for w, f in zip(writes, futures, strict=True)
            ]
        )
        outcomes = [await f for f in futures]
        if any(isinstance(o, Replay) for o in outcomes):
            return await asyncio.to_thread(self._answers, outcomes)
        return self._answers(outcomes)

    def execute_write(self, write: Write) -> WriteResult:
        """:meth:`submit_write`, blocking (for threads, tests and tools)."""
        future: Future[JobOutcome] = Future()
        job = self.job(write.account_id, write.command, write.idempotency, future)
        self.submit_jobs([job])
        return self.answer(future.result())

    def _answers(self, outcomes: list[JobOutcome]) -> list[WriteResult | LedgerError]:
        answers: list[WriteResult | LedgerError] = []
        for outcome in outcomes:
            try:
                answers.append(self.answer(outcome))
            except LedgerError as error:
                answers.append(error)
        return answers

    def answer(self, outcome: JobOutcome) -> WriteResult:
        """The :class:`WriteResult` of a job's outcome (blocking for a replay,
        which reads the stored answer).

        Raises:
            LedgerError: the job's error.
        """
        if isinstance(outcome, Committed):
            return WriteResult.of(outcome)
        if isinstance(outcome, Replay):
            return self.replay_record(outcome.record.account_id, outcome.record)
        if isinstance(outcome, LedgerError):
            raise outcome
        if isinstance(outcome, Exception):
            raise Unavailable("the write failed; retry") from outcome
        raise TypeError(outcome)

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
        return self.replay_record(account_id, record)

    def replay_record(self, account_id: str, record: Any) -> WriteResult:
        """The answer a stored idempotency record names, rebuilt from the log."""
        entry, position = self.entry_at(account_id, record.version)
        account = self.get_account(account_id, record.version)
        body: WritePublic = {
            "entry": render_entry(entry, position),
            "balance": render_balance(account.balance(), position),
        }
        return WriteResult(body, replayed=True, position=position)

    def settle(self, account_id: str) -> int:
        """Records the account's due hold and credit expiries (the sweeper's
        command); returns how many entries were recorded (0 when none were due).

        Raises:
            Unavailable: the database failed (503).
        """
        future: Future[JobOutcome] = Future()
        self.submit_jobs([self.job(account_id, None, None, future)])
        outcome = future.result()
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, Settled)
        return outcome.count

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
