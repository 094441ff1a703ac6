"""Wires one process: ledger application, balance view, bridge, key store,
projection and sweeper, from :class:`~service.config.Settings`."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass, field

from projections.balances import BalanceView
from projections.broker import Broker, make_broker
from projections.channels import KEYS
from projections.hub import StreamHub
from service.adapters import webhook_metrics
from service.adapters.availability import DatabaseGuard
from service.adapters.key_cache import KeyCache
from service.adapters.keys import KeyStore, bootstrap_admin, open_key_store
from service.adapters.leader import Leadership
from service.adapters.migrate import migrate, startup_lock
from service.adapters.webhook_store import WebhookStore, open_webhook_store
from service.application.api_keys import ApiKeys
from service.application.feeds import LiveFeeds
from service.application.ledger import Ledger
from service.application.projector import ProjectionService, open_balance_view
from service.application.queries import LedgerQueries
from service.application.sweeper import Sweeper
from service.application.webhook_dispatcher import WebhookDispatcher
from service.application.webhooks import WebhookEndpoints
from service.config import Settings, bound_connection_attempts, plan_each_statement

log = logging.getLogger(__name__)

STOP_SECONDS = 3.0
"""Longest clean stop of ``ledger project`` before it exits anyway."""
GC_THRESHOLDS = (50_000, 50, 100)
"""Allocations between young collections, and the older generations' ratios
(CPython's default is 700, 10, 10)."""
SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits (default 0.005)."""


@dataclass
class Runtime:
    """Everything a process serves with. Build with :meth:`create`."""

    settings: Settings
    ledger: Ledger
    balances: BalanceView
    broker: Broker
    keys: KeyStore
    secret_key: str
    hub: StreamHub
    key_cache: KeyCache
    leadership: Leadership
    guard: DatabaseGuard
    queries: LedgerQueries
    feeds: LiveFeeds
    api_keys: ApiKeys
    webhooks: WebhookEndpoints
    projection: ProjectionService | None = None
    dispatcher: WebhookDispatcher | None = None
    sweeper: Sweeper | None = None
    started: bool = field(default=False)

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """Migrates the database and builds the components (nothing started).

        Prints a generated admin API key once when no key exists and
        ``LEDGER_ADMIN_API_KEY`` is unset.
        """
        plan_each_statement()
        bound_connection_attempts()
        migrate(settings)
        with startup_lock(settings):
            ledger = Ledger(env=settings.eventsourcing_env())
            balances = open_balance_view(settings)
        broker = make_broker(settings.redis_url, settings.deployment_namespace)
        keys = open_key_store(settings)
        created = bootstrap_admin(keys, settings)
        if created is not None:
            print(
                f"Created the first admin API key (shown once, store it now): {created}",
                flush=True,
            )
        secret = (
            settings.secret_key.get_secret_value()
            if settings.secret_key
            else secrets.token_urlsafe(32)
        )
        hub = StreamHub(broker, balances, ledger)
        leadership = make_leadership(settings)
        guard = DatabaseGuard(
            settings.postgres_conninfo() if settings.backend == "postgres" else None
        )
        ledger.committer.guard = guard
        key_cache = KeyCache(keys)
        webhook_store = open_webhook_store(settings)
        runtime = cls(
            settings,
            ledger,
            balances,
            broker,
            keys,
            secret,
            hub,
            key_cache,
            leadership,
            guard,
            LedgerQueries(ledger, balances, hub, guard),
            LiveFeeds(ledger, balances, hub, guard, settings.sse_ping_seconds),
            ApiKeys(keys, key_cache, broker, guard),
            WebhookEndpoints(webhook_store, guard, settings.webhook_allow_insecure),
        )
        if settings.run_projection:
            runtime.projection = ProjectionService(settings, broker, ledger, leadership)
            runtime.sweeper = Sweeper(ledger, balances, settings.sweep_seconds, leadership)
            runtime.dispatcher = make_dispatcher(settings, webhook_store, leadership)
        return runtime

    async def start(self) -> None:
        """Starts the bridge, the projection thread and the sweeper."""
        # The committer and the projection wait on the database with the GIL
        # released; the default 5 ms switch interval would make each of their
        # round trips wait up to 5 ms more for a busy event loop to yield it.
        sys.setswitchinterval(SWITCH_INTERVAL)
        # Long-lived objects (modules, the app, cached accounts) out of the
        # collector's way: fewer, shorter pauses on the write path.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.ledger.committer.bind(asyncio.get_running_loop())
        add_listener = getattr(self.broker, "add_listener", None)
        if add_listener is not None:
            add_listener(KEYS, lambda message: self.key_cache.forget(str(message["revoked"])))
        await self.broker.start()
        await self.hub.start()
        if self.settings.run_projection:
            self.leadership.start()
        if self.projection is not None:
            self.projection.start()
        if self.sweeper is not None:
            self.sweeper.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        self.started = True

    async def stop(self) -> None:
        """Stops background work and closes connections."""
        loop = asyncio.get_running_loop()
        if self.dispatcher is not None:
            await loop.run_in_executor(None, self.dispatcher.stop)
        if self.sweeper is not None:
            await loop.run_in_executor(None, self.sweeper.stop)
        if self.projection is not None:
            await loop.run_in_executor(None, self.projection.stop)
        await loop.run_in_executor(None, self.leadership.stop)
        await self.hub.close()
        await self.guard.close()
        await self.broker.close()
        self.keys.close()
        self.webhooks.store.close()
        await self.ledger.ledger_recorder.close_connection()
        self.ledger.close()
        self.started = False


def make_dispatcher(
    settings: Settings, store: WebhookStore, leadership: Leadership
) -> WebhookDispatcher:
    """The webhook dispatcher of the leading process (see ``make_leadership``)."""
    return WebhookDispatcher(
        store,
        settings.webhook_retry_delays,
        settings.webhook_allow_insecure,
        leadership,
        observe=webhook_metrics.observe,
        niceness=settings.webhook_niceness,
    )


def make_leadership(settings: Settings) -> Leadership:
    """The deployment-wide leader election of this process (PostgreSQL advisory
    lock; on SQLite the one process leads)."""
    if settings.backend != "postgres":
        return Leadership(None)
    return Leadership(settings.postgres_conninfo(), standby=settings.projection_standby_seconds)


def run_projection_forever(settings: Settings, parent_pid: int | None = None) -> None:
    """``ledger project``: the projection and the sweeper without HTTP, until
    SIGINT/SIGTERM, or until process ``parent_pid`` is gone (``ledger serve``'s
    projection process ends with its server). Publishes on the bridge when
    ``LEDGER_REDIS_URL`` is set."""
    plan_each_statement()
    bound_connection_attempts()
    migrate(settings)
    with startup_lock(settings):
        ledger = Ledger(env=settings.eventsourcing_env())
        view = open_balance_view(settings)
    broker = make_broker(settings.redis_url, settings.deployment_namespace)
    leadership = make_leadership(settings)
    projection = ProjectionService(settings, broker, ledger, leadership)
    sweeper = Sweeper(ledger, view, settings.sweep_seconds, leadership)
    webhook_store = open_webhook_store(settings)
    dispatcher = make_dispatcher(settings, webhook_store, leadership)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Set from another thread: the handler runs on the main thread, which
        # may be inside ``done.wait()`` holding the event's lock (deadlock).
        signal.signal(sig, lambda *_: threading.Thread(target=done.set).start())
    if parent_pid is not None:
        threading.Thread(
            target=_end_with_parent, args=(parent_pid, done), name="parent-watch", daemon=True
        ).start()
    leadership.start()
    projection.start()
    sweeper.start()
    dispatcher.start()
    log.info("projection running on %s", settings.backend)
    done.wait()
    # Stopping is bounded: whatever still runs after STOP_SECONDS is cut
    # (an unfinished batch rolls back; the tracking position keeps it exactly-once).
    threading.Timer(STOP_SECONDS, os._exit, args=(0,)).start()
    dispatcher.stop()
    sweeper.stop()
    projection.stop()
    leadership.stop()
    webhook_store.close()
    ledger.close()


def _end_with_parent(parent_pid: int, done: threading.Event) -> None:
    """Sets ``done`` once this process's parent is no longer ``parent_pid``
    (it died; the process was re-parented), checking every second."""
    while not done.wait(1.0):
        if os.getppid() != parent_pid:
            log.warning("the serving process %d is gone; stopping", parent_pid)
            done.set()
