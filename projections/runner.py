"""Runs the balance projection: a subscription on PostgreSQL, polling on SQLite.

On PostgreSQL the library's :class:`~eventsourcing.projection.ProjectionRunner`
follows the notification log through LISTEN/NOTIFY. The SQLite recorder has no
subscriptions, so the same projection is driven by polling the notification log
after the view's tracking position (woken at once by local saves). Either way a
supervisor restarts the projection after a failure (e.g. the database is down).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import Environment

from projections.balances import BalanceProjection, BalanceView
from projections.broker import Broker
from projections.views import PostgresBalanceView, SQLiteBalanceView
from service.application.ledger import Ledger
from service.config import Settings

log = logging.getLogger(__name__)

BATCH = 500
"""Notifications read per poll on SQLite."""


def open_balance_view(settings: Settings) -> BalanceView:
    """The balance view of the configured database (tracking table created)."""
    view_class = PostgresBalanceView if settings.backend == "postgres" else SQLiteBalanceView
    env = Environment(BalanceProjection.name, settings.eventsourcing_env())
    factory: InfrastructureFactory[Any] = InfrastructureFactory.construct(env=env)
    view = factory.tracking_recorder(view_class)
    assert isinstance(view, BalanceView)
    return view


def bound_projection(broker: Broker | None) -> type[BalanceProjection]:
    """The projection class publishing on ``broker`` after each commit."""
    return type(
        "BalanceProjection",
        (BalanceProjection,),
        {"name": BalanceProjection.name, "broker": broker},
    )


class ProjectionService:
    """Keeps the balance projection running in a background thread."""

    def __init__(
        self, settings: Settings, broker: Broker | None, ledger: Ledger | None = None
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.ledger = ledger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: ProjectionRunner[Any, Any] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="projection", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        runner = self._runner
        if runner is not None:
            runner.stop()
        if self.ledger is not None:
            self.ledger.saved.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                if self.settings.backend == "postgres":
                    self._follow_postgres()
                else:
                    self._poll_sqlite()
            except Exception:
                log.exception("balance projection failed; restarting in 1 s")
                self._stop.wait(1.0)

    def _follow_postgres(self) -> None:
        with ProjectionRunner(
            application_class=Ledger,
            projection_class=bound_projection(self.broker),
            view_class=PostgresBalanceView,
            env=self.settings.eventsourcing_env(),
        ) as runner:
            self._runner = runner
            try:
                while not self._stop.is_set():
                    runner.run_forever(timeout=0.5)
            finally:
                self._runner = None

    def _poll_sqlite(self) -> None:
        ledger = self.ledger or Ledger(env=self.settings.eventsourcing_env())
        view = open_balance_view(self.settings)
        projection = bound_projection(self.broker)(view)
        topics = list(projection.topics)
        while not self._stop.is_set():
            ledger.saved.clear()
            notifications = ledger.recorder.select_notifications(
                start=view.position(), limit=BATCH, topics=topics, inclusive_of_start=False
            )
            for notification in notifications:
                event = ledger.mapper.to_domain_event(notification)
                projection.process_event(event, Tracking(ledger.name, notification.id))
            if len(notifications) < BATCH:
                ledger.saved.wait(self.settings.poll_seconds)
