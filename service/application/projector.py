"""Runs the balance projection in batches, in the leader process only (the
projection of ``projections`` over this application's log).

The runner reads up to ``BATCH`` entries after the view's tracking position,
applies them in one transaction (``BalanceView.apply_batch``), publishes one
message per changed account and the new position, and repeats; when it has
caught up it waits for the next commit: PostgreSQL ``LISTEN`` on the event
table's channel (the recorders ``NOTIFY`` it), or the local ``saved`` event on
SQLite. A supervisor restarts it after a failure (e.g. the database is down).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.persistence import InfrastructureFactory, Notification
from eventsourcing.utils import Environment
from psycopg.sql import SQL, Identifier

from projections.balances import BalanceProjection, BalanceView, publish_batch, tracking_at
from projections.batch import plan_batch
from projections.broker import Broker
from projections.outbox import Outbox
from projections.views import BALANCE_VIEWS, BalanceTable
from service.adapters.leader import Leadership
from service.application.ledger import Ledger
from service.config import Settings
from service.domain.events import LedgerEntry

log = logging.getLogger(__name__)

BATCH = 2000
"""Most log entries applied per transaction."""
IDLE_WAIT = 0.5
"""Longest wait for a commit notification before looking again (seconds)."""
LINGER = 0.004
"""After a notification, how long more commits may gather before the next
batch is read (seconds): fewer, larger transactions under load."""


def _entry(ledger: Ledger, notification: Notification) -> LedgerEntry:
    entry = ledger.mapper.to_domain_event(notification)
    assert isinstance(entry, LedgerEntry)
    return entry


def open_balance_view(settings: Settings) -> BalanceView:
    """The balance view of the configured database (its tables are created by
    the migrations: run ``migrate(settings)`` first)."""
    view_class = BALANCE_VIEWS[settings.backend]
    env = Environment(BalanceProjection.name, settings.eventsourcing_env())
    factory: InfrastructureFactory[Any] = InfrastructureFactory.construct(env=env)
    view = factory.tracking_recorder(view_class)
    assert isinstance(view, BalanceView)
    return view


class ProjectionService:
    """Keeps the batched balance projection running while this process leads."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker | None,
        ledger: Ledger | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.ledger = ledger
        self.leadership = leadership or Leadership(None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.leadership.is_leader.is_set() and self.leadership.conninfo is None:
            self.leadership.start()
        self._thread = threading.Thread(target=self._supervise, name="projection", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self.ledger is not None:
            self.ledger.saved.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            if not self.leadership.is_leader.wait(0.5):
                continue
            try:
                self._follow()
            except Exception:
                log.exception("balance projection failed; restarting in 1 s")
                self._stop.wait(1.0)

    def _follow(self) -> None:
        ledger = self.ledger or Ledger(env=self.settings.eventsourcing_env())
        view = open_balance_view(self.settings)
        if isinstance(view, BalanceTable):  # webhook messages commit with the balances
            view.outbox = Outbox(view.dialect)
        topics = list(BalanceProjection.topics)
        with self._wakeups(ledger) as wait:
            position = view.position()
            while not self._stop.is_set() and self.leadership.is_leader.is_set():
                ledger.saved.clear()
                notifications = ledger.recorder.select_notifications(
                    start=position, limit=BATCH, topics=topics, inclusive_of_start=False
                )
                if notifications:
                    plan = plan_batch([(_entry(ledger, n), n.id) for n in notifications])
                    balances = view.apply_batch(plan, tracking_at(plan.last), position)
                    if balances is None:  # another runner moved the position
                        position = view.position()
                        continue
                    position = plan.last
                    if self.broker is not None:
                        publish_batch(self.broker, plan, balances)
                    if len(notifications) == BATCH:
                        continue
                wait()

    @contextlib.contextmanager
    def _wakeups(self, ledger: Ledger) -> Iterator[Any]:
        """A function that waits for the next commit (at most ``IDLE_WAIT``)."""
        if self.settings.backend != "postgres":
            yield lambda: ledger.saved.wait(min(self.settings.poll_seconds, IDLE_WAIT))
            return
        recorder: Any = ledger.recorder
        with psycopg.connect(
            self.settings.postgres_conninfo(), autocommit=True, connect_timeout=5
        ) as conn:
            conn.execute(SQL("LISTEN {}").format(Identifier(recorder.channel_name)))

            def wait() -> None:
                for _ in conn.notifies(timeout=IDLE_WAIT, stop_after=1):
                    time.sleep(LINGER)

            yield wait
