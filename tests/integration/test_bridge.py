"""The projection and the Redis bridge on real PostgreSQL and Redis."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from projections.broker import RedisBroker
from projections.channels import ALL_BALANCES, balance_channel, entries_channel
from projections.runner import ProjectionService, open_balance_view
from service.adapters.migrate import migrate
from service.application import commands
from service.application.ledger import Ledger
from service.config import Settings
from tests.helpers.servers import fresh_postgres_database, fresh_redis_database

pytestmark = pytest.mark.integration


@pytest.fixture
def settings() -> Iterator[Settings]:
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(database_url=db_url, redis_url=redis_url)
        migrate(settings)
        yield settings


def wait_for_message(pubsub: redis.client.PubSub, timeout: float = 10.0) -> dict:
    """The next published message (subscribe confirmations skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.01))
        if message is not None and message["type"] == "message":
            return json.loads(message["data"])
    raise AssertionError("nothing published")


def test_each_projected_balance_is_published_on_redis_with_its_position(settings: Settings) -> None:
    account = f"bridge-{uuid.uuid4().hex[:8]}"
    assert settings.redis_url is not None
    listener = redis.Redis.from_url(settings.redis_url)
    pubsub = listener.pubsub()
    pubsub.subscribe(balance_channel(account), ALL_BALANCES, entries_channel(account))
    ledger = Ledger(env=settings.eventsourcing_env())
    broker = RedisBroker(settings.redis_url)
    projection = ProjectionService(settings, broker, ledger)
    projection.start()
    try:
        bought = commands.purchase(ledger, account, 300, actor="it", idem=None)
        spent = commands.consume(ledger, account, 120, actor="it", idem=None)
        messages = [wait_for_message(pubsub) for _ in range(6)]
        balances = [m for m in messages if "available" in m and m["account_id"] == account]
        entries = [m for m in messages if "type" in m]
        assert [b["position"] for b in balances] == sorted(b["position"] for b in balances)
        assert balances[-1]["position"] == spent.position
        assert balances[-1]["available"] == 180
        assert [e["position"] for e in entries] == [bought.position, spent.position]
    finally:
        projection.stop()
        pubsub.close()
        listener.close()
        ledger.close()


def test_a_restarted_projection_neither_loses_nor_double_applies(settings: Settings) -> None:
    account = f"restart-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(env=settings.eventsourcing_env())
    view = open_balance_view(settings)
    first = ProjectionService(settings, None, ledger)
    first.start()
    commands.purchase(ledger, account, 1000, actor="it", idem=None)
    written = commands.consume(ledger, account, 1, actor="it", idem=None)
    view_wait(view, written.position)
    first.stop()
    for _ in range(5):
        written = commands.consume(ledger, account, 10, actor="it", idem=None)
    second = ProjectionService(settings, None, ledger)
    second.start()
    try:
        view_wait(view, written.position)
        balance = view.get_balance(account)
        assert balance is not None
        assert balance["available"] == 1000 - 1 - 50
        assert balance["consumed"] == 51
        assert balance["version"] == 7
    finally:
        second.stop()
        ledger.close()


def view_wait(view: object, position: int) -> None:
    """Waits on the view's tracking position (never on a sleep)."""
    from projections.balances import BalanceView

    assert isinstance(view, BalanceView)
    view.wait("Ledger", position, timeout=15)
