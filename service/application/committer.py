"""Group commit: one thread per process runs every write, many per transaction.

Callers queue :class:`Job` lists (a ``/v1/batch`` request is one list, kept
together and in order). The committer takes everything waiting (up to
``max_group`` jobs; while one transaction commits the next group gathers, so
groups grow with the load and a lone write waits for nobody), runs each
account's jobs in arrival order on the account it keeps in memory (no reload,
no copy), and records all the group's entries and idempotency records in one
transaction (``service.adapters.group_commit``). A job refused by the domain
(402, 409, 422) writes nothing and leaves the others alone. When another
process wrote one of the accounts meanwhile, or a job's idempotency key turns
out to be stored already, only that account is reloaded and its jobs re-run,
inside the same transaction. No job is answered before its commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from service.adapters.group_commit import Existing, GroupWrite, Refused
from service.adapters.idempotency_records import IdempotencyRecord
from service.application.account_run import AccountRun, Committed, Job, JobOutcome
from service.domain.account import Account
from service.domain.errors import Unavailable
from service.domain.values import account_uuid

log = logging.getLogger(__name__)

MAX_GROUP = 2000
"""Most jobs recorded in one transaction."""
MAX_ATTEMPTS = 30
"""Tries of one group whose accounts other processes keep moving."""


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
        self._queue: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self._cache: OrderedDict[str, Account] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, jobs: list[Job]) -> None:
        """Queues ``jobs`` (kept together, in order); each job's future gets
        its :data:`JobOutcome` once its group is committed (or refused)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="committer", daemon=True)
                    self._thread.start()
        self._queue.put(jobs)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    # The thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = list(first)
            while len(jobs) < self.max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                jobs.extend(more)
            import os
            import time as _t

            _t0 = _t.perf_counter()
            try:
                outcomes = self._commit_group(jobs)
                if os.environ.get("LEDGER_DEBUG_GROUPS"):
                    print(
                        "group",
                        len(jobs),
                        "%.2fms" % ((_t.perf_counter() - _t0) * 1000),
                        flush=True,
                    )
            except Exception as error:  # the store failed: nothing was written
                log.warning("group commit of %d writes failed: %s", len(jobs), error)
                self._cache.clear()
                failure = Unavailable("the ledger's database is unavailable; retry", retry_after=1)
                outcomes = [failure] * len(jobs)
            _resolve(jobs, outcomes)

    def _commit_group(self, jobs: list[Job]) -> list[JobOutcome]:
        by_account: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            by_account[job.account_id].append(job)
        runs: dict[str, AccountRun] = {}
        for account_id, account_jobs in by_account.items():
            runs[account_id] = self._run_account(self._cached(account_id), account_jobs, {})
        existing: Existing = {}
        try:
            for _ in range(MAX_ATTEMPTS):
                result = self.ledger.ledger_recorder.record_group(self._group_write(runs, existing))
                if not isinstance(result, Refused):
                    break
                # Another process wrote some of the accounts, or some keys are
                # stored: re-run only those accounts, on their stored state.
                existing.update(result.existing)
                for account_id, run in list(runs.items()):
                    if account_uuid(account_id) in result.conflicted or run.hits(result.existing):
                        self._cache.pop(account_id, None)
                        runs[account_id] = self._run_account(
                            self._load(account_id), run.jobs, existing
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

    def _cached(self, account_id: str) -> Account:
        account = self._cache.get(account_id)
        if account is not None:
            self._cache.move_to_end(account_id)
            return account
        return self._load(account_id)

    def _load(self, account_id: str) -> Account:
        try:
            account: Account = self.ledger.repository.get(account_uuid(account_id))
        except AggregateNotFoundError:
            account = Account(account_id=account_id)
        self._remember(account_id, account)
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
        try:
            snapshots.put([Account.Snapshot.take(run.account)])
        except Exception as error:  # a missed snapshot only costs a longer load
            log.warning("snapshot of %s failed: %s", run.account.account_id, error)


def _resolve(jobs: list[Job], outcomes: list[JobOutcome]) -> None:
    """Hands each job its outcome: at once for a thread's future, and with one
    wake-up per event loop for asyncio futures."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], JobOutcome]]]
    by_loop = defaultdict(list)
    for job, outcome in zip(jobs, outcomes, strict=True):
        future = job.future
        if isinstance(future, Future):
            if not future.done():
                future.set_result(outcome)
        else:
            by_loop[future.get_loop()].append((future, outcome))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_results, items)
        except RuntimeError:  # the loop is closed: nobody waits any more
            continue


def _set_results(items: list[tuple[asyncio.Future[Any], JobOutcome]]) -> None:
    for future, outcome in items:
        if not future.done():
            future.set_result(outcome)


__all__ = ["Committer", "IdempotencyRecord"]
