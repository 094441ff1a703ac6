"""The projection and the Redis bridge on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from projections.broker import RedisBroker
from projections.channels import POSITIONS, account_channel
from service.adapters.migrate import migrate
from service.application import commands
from service.application.ledger import Ledger
from service.application.projector import ProjectionService, open_balance_view
from service.config import Settings
from tests.helpers.servers import fresh_postgres_database, fresh_redis_database

pytestmark = pytest.mark.integration


@pytest.fixture
def settings() -> Iterator[Settings]:
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(database_url=db_url, redis_url=redis_url)
        migrate(settings)
        yield settings


def wait_for_message(
    pubsub: redis.client.PubSub, timeout: float = 10.0
) -> tuple[str, dict[str, Any]]:
    """The next published ``(channel, message)`` (subscribe confirmations skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.01))
        if message is not None and message["type"] == "message":
            return message["channel"].decode(), json.loads(message["data"])
    raise AssertionError("nothing published")


def test_each_projected_batch_is_published_on_redis_with_its_position(settings: Settings) -> None:
    account = f"bridge-{uuid.uuid4().hex[:8]}"
    assert settings.redis_url is not None
    listener = redis.Redis.from_url(settings.redis_url)
    # redis-py leaves Redis.pubsub() unannotated (its result, PubSub, is typed).
    pubsub = listener.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(account_channel(account), POSITIONS)
    ledger = Ledger(env=settings.eventsourcing_env())
    broker = RedisBroker(settings.redis_url)
    projection = ProjectionService(settings, broker, ledger)
    projection.start()
    try:
        bought = ledger.execute_write(commands.purchase(account, 300, actor="it", idem=None))
        spent = ledger.execute_write(commands.consume(account, 120, actor="it", idem=None))
        entries: list[dict[str, Any]] = []
        balances: list[dict[str, Any]] = []
        announced = 0  # a position announced after our last entry
        while announced < spent.position:
            channel, message = wait_for_message(pubsub)
            if channel == POSITIONS:  # (other deployments' too: channels are server-wide)
                if balances and balances[-1]["position"] == spent.position:
                    announced = message["position"]
                continue
            assert channel == account_channel(account)
            assert message["balance"]["position"] == message["entries"][-1]["position"]
            balances.append(message["balance"])
            entries.extend(message["entries"])
        assert [e["position"] for e in entries] == [bought.position, spent.position]
        assert [e["version"] for e in entries] == [1, 2]
        assert [e["type"] for e in entries] == ["purchase", "consumption"]
        assert [b["position"] for b in balances] == sorted(b["position"] for b in balances)
        assert balances[-1]["position"] == spent.position
        assert balances[-1]["available"] == 180
        assert balances[-1]["version"] == 2
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
    ledger.execute_write(commands.purchase(account, 1000, actor="it", idem=None))
    written = ledger.execute_write(commands.consume(account, 1, actor="it", idem=None))
    view_wait(view, written.position)
    first.stop()
    for _ in range(5):
        written = ledger.execute_write(commands.consume(account, 10, actor="it", idem=None))
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


def test_a_listener_gets_its_channels_messages_once_over_the_process_subscription(
    settings: Settings,
) -> None:
    assert settings.redis_url is not None
    channel = f"ledger:keys-{uuid.uuid4().hex[:8]}"

    async def main() -> list[dict[str, Any]]:
        broker = RedisBroker(settings.redis_url or "")
        got: list[dict[str, Any]] = []
        arrived = asyncio.Event()

        def on_message(message: dict[str, Any]) -> None:
            got.append(message)
            arrived.set()

        broker.add_listener(channel, on_message)
        await broker.start()
        try:
            deadline = time.monotonic() + 10
            while not broker.healthy:  # the listener connection is up
                assert time.monotonic() < deadline, "the bridge did not connect"
                await asyncio.sleep(0.01)
            await asyncio.to_thread(broker.publish_many, [(channel, {"revoked": "k1"})])
            await asyncio.wait_for(arrived.wait(), 10)
        finally:
            await broker.close()
        return got

    assert asyncio.run(main()) == [{"revoked": "k1"}]


def test_an_unreachable_bridge_is_unhealthy_and_a_failed_publish_neither_raises_nor_sticks(
    settings: Settings,
) -> None:
    async def main() -> None:
        broker = RedisBroker("redis://127.0.0.1:1/0")
        await broker.start()
        try:
            epoch = broker.epoch
            broker.publish_many([(POSITIONS, {"position": 1})])  # queued: returns at once
            deadline = time.monotonic() + 5
            while broker.epoch == epoch and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert broker.epoch == epoch + 1  # the failed send: streams catch up from the store
            assert not broker.healthy
        finally:
            await broker.close()

    asyncio.run(main())
