"""One account's jobs of a commit group, run in order on its aggregate.

Before each job the account is settled at the job's time (due hold and credit
expiries are recorded as the ledger's own entries), so a job refused by the
domain leaves nothing of its own behind. Idempotency keys are checked against
the stored records found under the group's lock and against the earlier jobs
of the same group: a repeat of a successful job answers that job's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.persistence import StoredEvent

from service.adapters.group_commit import Existing
from service.adapters.idempotency_records import IdempotencyRecord
from service.application.idempotency import IdempotencyRequest
from service.domain.account import Account, Outcome
from service.domain.errors import IdempotencyKeyReused, LedgerError
from service.domain.events import LedgerEntry

Command = Callable[[Account, datetime], Outcome]
"""A command on an account at a time: returns its entry and balance after it."""


@dataclass(frozen=True)
class Committed:
    """A job's entry, the balance right after it, the entry's ``position``,
    and whether it repeats an earlier answer."""

    entry: LedgerEntry
    outcome: Outcome
    position: int
    replayed: bool = False


@dataclass(frozen=True)
class Replay:
    """The job's idempotency key is stored: answer the write it names."""

    record: IdempotencyRecord


@dataclass(frozen=True)
class Settled:
    """A settle-only job (the sweeper's): how many expiry entries it recorded."""

    count: int


JobOutcome = Committed | Replay | Settled | Exception
"""What a job's future receives (errors as values, never raised)."""


@dataclass(eq=False)
class Job:
    """One write: ``command`` on ``account_id`` (``None``: only settle), its
    idempotency request and the future to resolve."""

    account_id: str
    command: Command | None
    idempotency: IdempotencyRequest | None
    future: Future[JobOutcome] | asyncio.Future[JobOutcome]
    clock: Callable[[], datetime] = field(repr=False)


@dataclass(frozen=True)
class _SameAs:
    index: int


@dataclass
class AccountRun:
    """The jobs of one account in one group, and what each came to."""

    account: Account
    jobs: list[Job]
    base: int
    results: list[Outcome | Exception | Replay | Settled | _SameAs]
    events: list[Any] = field(default_factory=list)
    stored: list[StoredEvent] = field(default_factory=list)

    @classmethod
    def run(cls, account: Account, jobs: list[Job], existing: Existing) -> AccountRun:
        """Runs ``jobs`` in order on ``account`` (mutated; its new events pending)."""
        base = account.version - len(account.pending_events)
        results: list[Outcome | Exception | Replay | Settled | _SameAs] = []
        done: dict[str, tuple[str, int]] = {}
        for index, job in enumerate(jobs):
            results.append(_run_job(account, job, index, existing, done))
        return cls(account, jobs, base, results)

    def hits(self, existing: Existing) -> bool:
        """Whether one of the jobs' keys is stored (the run must be redone)."""
        return any(
            j.idempotency is not None and (j.account_id, j.idempotency.key) in existing
            for j in self.jobs
        )

    def collect(self, to_stored: Callable[[Any], StoredEvent]) -> None:
        """Takes the pending events (none when no entry is among them) and
        their stored form."""
        events = list(self.account.collect_events())
        self.events = events if any(isinstance(e, LedgerEntry) for e in events) else []
        self.stored = [to_stored(e) for e in self.events]

    def idempotency_keys(self) -> Iterator[tuple[str, str]]:
        """``(account_id, key)`` of the jobs that carry an idempotency key."""
        for job in self.jobs:
            if job.idempotency is not None:
                yield job.account_id, job.idempotency.key

    def idempotency_records(self) -> Iterator[IdempotencyRecord]:
        for job, result in zip(self.jobs, self.results, strict=True):
            if job.idempotency is not None and isinstance(result, Outcome):
                yield IdempotencyRecord(
                    job.account_id,
                    job.idempotency.key,
                    job.idempotency.fingerprint,
                    result.entry.originator_version,
                )

    def committed(self, positions: dict[tuple[Any, int], int]) -> list[Committed]:
        """Turns the successful results into :class:`Committed` (after commit)."""
        done: list[Committed] = []
        for index, result in enumerate(self.results):
            if isinstance(result, Outcome):
                entry = result.entry
                position = positions[(entry.originator_id, entry.originator_version)]
                committed = Committed(entry, result, position)
                self.results[index] = _Done(committed)  # type: ignore[call-overload]
                done.append(committed)
        return done

    def outcomes(self) -> Iterator[tuple[Job, JobOutcome]]:
        for job, result in zip(self.jobs, self.results, strict=True):
            yield job, self._outcome(result)

    def _outcome(self, result: Any) -> JobOutcome:
        if isinstance(result, _SameAs):
            earlier = self._outcome(self.results[result.index])
            if isinstance(earlier, Committed):
                return Committed(earlier.entry, earlier.outcome, earlier.position, True)
            return earlier
        if isinstance(result, _Done):
            return result.committed
        assert not isinstance(result, Outcome), "answered before its commit"
        return result  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Done:
    committed: Committed


def _run_job(
    account: Account,
    job: Job,
    index: int,
    existing: Existing,
    done: dict[str, tuple[str, int]],
) -> Outcome | Exception | Replay | Settled | _SameAs:
    idem = job.idempotency
    if idem is not None:
        record = existing.get((job.account_id, idem.key))
        earlier = done.get(idem.key)
        fingerprint = record.fingerprint if record else earlier[0] if earlier else None
        if fingerprint is not None and fingerprint != idem.fingerprint:
            return IdempotencyKeyReused(
                f"Idempotency-Key {idem.key!r} was used with a different request"
            )
        if record is not None:
            return Replay(record)
        if earlier is not None:
            return _SameAs(earlier[1])
    now = job.clock()
    settled = account.settle(now)
    if job.command is None:
        return Settled(len(settled))
    mark = len(account.pending_events)
    try:
        outcome = job.command(account, now)
    except LedgerError as error:
        if len(account.pending_events) != mark:
            raise RuntimeError("a refused command changed the account") from error
        return error
    if idem is not None:
        done[idem.key] = (idem.fingerprint, index)
    return outcome
