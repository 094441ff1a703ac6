"""Wires one process: ledger application, balance view, bridge, key store,
projection and sweeper, from :class:`~service.config.Settings`."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import sys
from dataclasses import dataclass, field

from projections.balances import BalanceView
from projections.broker import Broker, make_broker
from projections.channels import KEYS
from projections.hub import StreamHub
from service.adapters.availability import DatabaseGuard
from service.adapters.key_cache import KeyCache
from service.adapters.keys import KeyStore, bootstrap_admin, open_key_store
from service.adapters.leader import DELIVERY_LOCK_KEY, LOCK_KEY, Leadership
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
    delivery: Leadership | None = None
    """Its candidacy to lead webhook delivery (standing by for ``ledger deliver``)."""
    dispatcher: WebhookDispatcher | None = None
    sweeper: Sweeper | None = None
    started: bool = field(default=False)

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """Migrates the database and builds the components (nothing started).

        Prints a generated admin API key once when no key exists and
        ``LEDGER_ADMIN_API_KEY`` is unset.
        """
        ledger, balances = open_ledger(settings)
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
            runtime.delivery = make_leadership(settings, DELIVERY_LOCK_KEY)
            runtime.dispatcher = make_dispatcher(settings, webhook_store, runtime.delivery)
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
        if self.delivery is not None:
            self.delivery.start()
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
        if self.delivery is not None:
            await loop.run_in_executor(None, self.delivery.stop)
        await loop.run_in_executor(None, self.leadership.stop)
        await self.hub.close()
        await self.guard.close()
        await self.broker.close()
        self.keys.close()
        self.webhooks.store.close()
        await self.ledger.ledger_recorder.close_connection()
        self.ledger.close()
        self.started = False


def open_ledger(settings: Settings) -> tuple[Ledger, BalanceView]:
    """Readies this process for the database (each statement planned, bounded
    connection attempts, the schema migrated), then opens the ledger and its
    balance view under the startup lock (``service.adapters.migrate``).

    Raises:
        sqlalchemy.exc.OperationalError: the database is unreachable.
    """
    plan_each_statement()
    bound_connection_attempts()
    migrate(settings)
    with startup_lock(settings):
        return Ledger(env=settings.eventsourcing_env()), open_balance_view(settings)


def make_dispatcher(
    settings: Settings, store: WebhookStore, leadership: Leadership, niceness: int | None = None
) -> WebhookDispatcher:
    """The webhook dispatcher, delivering while ``leadership`` leads; its
    thread niceness is ``LEDGER_WEBHOOK_NICENESS`` unless given."""
    return WebhookDispatcher(
        store,
        settings.webhook_retry_delays,
        settings.webhook_allow_insecure,
        leadership,
        retention_seconds=settings.webhook_retention_seconds,
        niceness=settings.webhook_niceness if niceness is None else niceness,
    )


def make_leadership(settings: Settings, key: int = LOCK_KEY) -> Leadership:
    """This process's candidacy to lead the deployment's projection and sweeper
    (``LOCK_KEY``) or its webhook delivery (``DELIVERY_LOCK_KEY``): a PostgreSQL
    advisory lock; on SQLite the one process leads."""
    if settings.backend != "postgres":
        return Leadership(None)
    return Leadership(
        settings.postgres_conninfo(), key=key, standby=settings.projection_standby_seconds
    )
