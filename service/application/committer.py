"""Group commit on the event loop: every write of a process, many per transaction.

Callers queue :class:`Job` lists (a ``/v1/batch`` request is one list, kept
together and in order). One drain task takes everything waiting (up to
``max_group`` jobs) while the previous group's transaction is in flight, so
groups grow with the load and a lone write waits for nobody. It runs each
account's jobs in arrival order on the account it keeps in memory (no reload,
no copy) and records the group's entries and idempotency records in one
transaction, one round trip (``service.adapters.group_commit``). A job refused
by the domain (402, 409, 422) writes nothing and leaves the others alone. When
another process wrote one of the accounts meanwhile, or a job's idempotency
key turns out to be stored, only those accounts are reloaded and re-run. No job
is answered before its commit.

Everything runs on one event loop (the server's; a private one in a thread for
blocking callers), so the write path never contends for the GIL with a thread
of its own; only loading an account that is not in memory goes to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from service.adapters.availability import DatabaseGuard
from service.adapters.group_commit import Existing, GroupWrite, Refused, UnknownOutcome
from service.application.account_run import AccountRun, Committed, Job, JobOutcome
from service.domain.account import Account
from service.domain.errors import Unavailable
from service.domain.values import account_uuid

log = logging.getLogger(__name__)

MAX_GROUP = 2000
"""Most jobs recorded in one transaction."""
MAX_ATTEMPTS = 30
"""Tries of one group whose accounts other processes keep moving."""
CONTENDED_SECONDS = 10.0
"""After another process wrote one of our accounts, how long each group first
fast-forwards its accounts (one query) rather than rely on conflicts."""
ANSWER_SECONDS = 4.3
"""From a group's start, how long the committer tries to learn whether a group
whose answer was lost is committed, before answering its writes 503 with the
outcome unknown."""


class Committer:
    """Runs jobs in groups on cached accounts; see the module docstring.

    ``ledger`` is the :class:`~service.application.ledger.Ledger` (its
    repository loads accounts, its mapper and recorder store entries).
    ``cache_size``: accounts kept in memory (least recently used leave first).
    """

    def __init__(self, ledger: Any, cache_size: int, max_group: int = MAX_GROUP) -> None:
        self.ledger = ledger
        self.cache_size = cache_size
        self.max_group = max_group
        self.after_commit: Callable[[list[Committed]], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Job] = []
        self._draining = False
        self._cache: OrderedDict[str, Account] = OrderedDict()
        self._private: threading.Thread | None = None
        self._contended_until = 0.0
        self._guard = threading.Lock()
        self.guard: DatabaseGuard | None = None
        """The process's database circuit breaker: while the database is
        down, groups are answered 503 at once."""

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs on ``loop`` (the server's), unless a loop was chosen before."""
        with self._guard:
            if self.loop is None:
                self.loop = loop

    def submit(self, jobs: list[Job]) -> None:
        """Queues ``jobs`` (kept together, in order); each job's future gets
        its :data:`JobOutcome` once its group is committed (or refused).
        Callable from any thread and any loop."""
        loop = self._ensure_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._enqueue(jobs)
        else:
            loop.call_soon_threadsafe(self._enqueue, jobs)

    def close(self) -> None:
        private, self._private = self._private, None
        if private is not None and self.loop is not None:
            loop = self.loop
            closing = asyncio.run_coroutine_threadsafe(
                self.ledger.ledger_recorder.close_connection(), loop
            )
            with contextlib.suppress(Exception):
                closing.result(2.0)
            loop.call_soon_threadsafe(loop.stop)
            private.join(5)
            if not private.is_alive():  # stopped: its sockets and selector go too
                loop.close()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self.loop is None:  # blocking callers only: a loop of our own
                loop = asyncio.new_event_loop()
                self._private = threading.Thread(
                    target=loop.run_forever, name="committer", daemon=True
                )
                self._private.start()
                self.loop = loop
            return self.loop

    # On the loop ----------------------------------------------------------

    def _enqueue(self, jobs: list[Job]) -> None:
        self._pending.extend(jobs)
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                jobs = self._pending[: self.max_group]
                del self._pending[: self.max_group]
                try:
                    if self.guard is not None:
                        self.guard.check()
                    outcomes = await self._commit_group(jobs)
                except Unavailable as error:
                    outcomes = [error] * len(jobs)
                except Exception as error:  # the store failed: nothing was written
                    log.warning("group commit of %d writes failed: %s", len(jobs), error)
                    self._cache.clear()
                    if self.guard is not None:
                        self.guard.failed()
                    failure = Unavailable("the ledger's database is unavailable; retry")
                    outcomes = [failure] * len(jobs)
                _resolve(jobs, outcomes)
        finally:
            self._draining = False

    async def _commit_group(self, jobs: list[Job]) -> list[JobOutcome]:
        by_account: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            by_account[job.account_id].append(job)
        accounts = await self._accounts(list(by_account))
        runs = {a: self._run_account(accounts[a], js, {}) for a, js in by_account.items()}
        existing: Existing = {}
        try:
            for _ in range(MAX_ATTEMPTS):
                result = await self._record(self._group_write(runs, existing))
                if not isinstance(result, Refused):
                    break
                # Another process wrote some of the accounts, or some keys are
                # stored: re-run only those accounts, on their stored state.
                existing.update(result.existing)
                if result.conflicted:
                    self._contended_until = time.monotonic() + CONTENDED_SECONDS
                redo = [
                    a
                    for a, run in runs.items()
                    if account_uuid(a) in result.conflicted or run.hits(result.existing)
                ]
                for account_id in redo:
                    self._cache.pop(account_id, None)
                fresh = await self._accounts(redo)
                for account_id in redo:
                    runs[account_id] = self._run_account(
                        fresh[account_id], runs[account_id].jobs, existing
                    )
            else:
                raise Unavailable("too many concurrent writes to these accounts; retry")
        except BaseException:
            for account_id in runs:
                self._cache.pop(account_id, None)
            raise
        committed = self._after_commit(runs, result)
        by_job = {id(job): outcome for run in runs.values() for job, outcome in run.outcomes()}
        if committed and self.after_commit is not None:
            self.after_commit(committed)
        return [by_job[id(job)] for job in jobs]

    async def _record(self, write: GroupWrite) -> list[int] | Refused:
        """Records ``write``. When its answer is lost, finds out whether it
        was committed (``resolve_group_async``), for up to
        :data:`ANSWER_SECONDS` from its start: committed → its positions, as if answered;
        not committed → :class:`Unavailable` (nothing written); still unknown
        → :class:`Unavailable` saying so (a retry with the same
        Idempotency-Key answers the write once it is known)."""
        recorder = self.ledger.ledger_recorder
        started = time.monotonic()
        alive = self.guard.probe if self.guard is not None else None
        try:
            result: list[int] | Refused = await recorder.record_group_async(write, alive)
            return result
        except UnknownOutcome as unknown:
            if self.guard is not None:
                self.guard.failed()
            # Answer within about 4.5 s of the group's start when the database
            # stays away (contract v1.1: 503 within 5 s), trying at least 1 s.
            give_up = max(started + ANSWER_SECONDS, time.monotonic() + 1.0)
            while True:
                left = give_up - time.monotonic()
                try:
                    positions: list[int] | None = await recorder.resolve_group_async(
                        write, unknown.session, min(left, 1.5)
                    )
                except Exception as error:
                    if time.monotonic() + 0.2 >= give_up:
                        log.error(
                            "outcome of a group of %d entries unknown (%s); entries %s",
                            len(write.events),
                            error,
                            [(str(e.originator_id), e.originator_version) for e in write.events],
                        )
                        raise Unavailable(
                            "the ledger's database stopped answering while this write was"
                            " being recorded; its outcome is not known yet: retry with the"
                            " same Idempotency-Key"
                        ) from error
                    await asyncio.sleep(0.2)
                    continue
                if positions is None:
                    raise Unavailable("the ledger's database is unavailable; retry") from None
                log.info("a group whose answer was lost is committed: answered")
                return positions

    def _run_account(self, account: Account, jobs: list[Job], existing: Existing) -> AccountRun:
        run = AccountRun.run(account, jobs, existing)
        run.collect(self.ledger.mapper.to_stored_event)
        return run

    @staticmethod
    def _group_write(runs: dict[str, AccountRun], existing: Existing) -> GroupWrite:
        write = GroupWrite()
        for account_id, run in runs.items():
            # Every account of the group, written or refused: a refusal on an
            # account another process moved on (a hold placed there) is re-run.
            write.versions[account_uuid(account_id)] = run.base
            write.keys.extend(k for k in run.idempotency_keys() if k not in existing)
            write.events.extend(run.stored)
            write.idempotency.extend(run.idempotency_records())
        return write

    def _after_commit(self, runs: dict[str, AccountRun], positions: list[int]) -> list[Committed]:
        at: dict[tuple[UUID, int], int] = {}
        i = 0
        for run in runs.values():
            for event in run.events:
                at[(event.originator_id, event.originator_version)] = positions[i]
                i += 1
        committed: list[Committed] = []
        for account_id, run in runs.items():
            committed.extend(run.committed(at))
            if run.events:
                self._remember(account_id, run.account)
                self._snapshot_if_due(run)
            elif run.account.version == 0:  # never stored: do not keep it
                self._cache.pop(account_id, None)
        return committed

    # Accounts in memory ---------------------------------------------------

    async def _accounts(self, account_ids: list[str]) -> dict[str, Account]:
        """The accounts, from memory or (in a thread) from the store."""
        found: dict[str, Account] = {}
        missing = []
        for account_id in account_ids:
            account = self._cache.get(account_id)
            if account is None:
                missing.append(account_id)
            else:
                self._cache.move_to_end(account_id)
                found[account_id] = account
        if found and time.monotonic() < self._contended_until:
            await self._fast_forward(found)
        if missing:

            def load() -> list[Account]:
                return [self._load(a) for a in missing]

            loaded = await (self.guard.call(load) if self.guard else asyncio.to_thread(load))
            for account_id, account in zip(missing, loaded, strict=True):
                self._remember(account_id, account)
                found[account_id] = account
        return found

    async def _fast_forward(self, accounts: dict[str, Account]) -> None:
        """Applies what other processes recorded since (one query)."""
        by_id = {account.id: account for account in accounts.values()}
        recorder = self.ledger.ledger_recorder
        stored = await recorder.events_after_async({i: a.version for i, a in by_id.items()})
        to_event = self.ledger.mapper.to_domain_event
        for event in map(to_event, stored):
            event.mutate(by_id[event.originator_id])

    def _load(self, account_id: str) -> Account:
        try:
            account: Account = self.ledger.repository.get(account_uuid(account_id))
        except AggregateNotFoundError:
            account = Account(account_id=account_id)
        return account

    def _remember(self, account_id: str, account: Account) -> None:
        if self.cache_size <= 0:
            return
        self._cache[account_id] = account
        self._cache.move_to_end(account_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _snapshot_if_due(self, run: AccountRun) -> None:
        interval = self.ledger.snapshot_interval
        snapshots = self.ledger.snapshots
        if snapshots is None or not interval:
            return
        if max(run.base, 0) // interval == run.account.version // interval:
            return
        snapshot = Account.Snapshot.take(run.account)
        account_id = run.account.account_id

        def put() -> None:  # in a thread: the store may be slow or gone
            try:
                snapshots.put([snapshot])
            except Exception as error:  # a missed snapshot only costs a longer load
                log.warning("snapshot of %s failed: %s", account_id, error)

        threading.Thread(target=put, name="snapshot", daemon=True).start()


def _resolve(jobs: list[Job], outcomes: list[JobOutcome]) -> None:
    """Hands each job its outcome: at once on this loop or a thread's future,
    with one wake-up per other event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], JobOutcome]]]
    by_loop = defaultdict(list)
    here = asyncio.get_running_loop()
    for job, outcome in zip(jobs, outcomes, strict=True):
        future = job.future
        if isinstance(future, Future) or future.get_loop() is here:
            if not future.done():
                future.set_result(outcome)
        else:
            by_loop[future.get_loop()].append((future, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
            loop.call_soon_threadsafe(_set_results, items)


def _set_results(items: list[tuple[asyncio.Future[Any], JobOutcome]]) -> None:
    for future, outcome in items:
        if not future.done():
            future.set_result(outcome)
