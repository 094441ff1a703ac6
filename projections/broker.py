"""The pub/sub bridge: Redis in production, an in-process broker by default.

The projection publishes from its own thread (:meth:`Broker.publish` is
synchronous and never raises: a bridge outage must not stop the projection);
SSE handlers subscribe from the event loop (:meth:`Broker.subscribe`). Each
process keeps one Redis connection that pattern-subscribes to every ledger
channel and fans messages out to its local subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from projections.channels import PREFIX

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
"""Messages buffered per subscriber; a slower subscriber drops the oldest and
recovers from the balance table / the ledger."""


class Subscription:
    """Messages of one channel for one subscriber, delivered on its event loop."""

    def __init__(self, channel: str, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)

    def deliver(self, message: dict[str, Any]) -> None:
        """Called on the subscriber's loop; drops the oldest when full."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(message)

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or ``None`` after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class Broker(Protocol):
    """Publishes JSON messages on channels; subscribers get them in order."""

    @property
    def healthy(self) -> bool:
        """False while the bridge is known to be down (streams then poll)."""
        ...

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Publishes ``message`` on ``channel``; thread-safe, never raises."""
        ...

    def publish_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Publishes ``(channel, message)`` pairs in order, in one round trip."""
        ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Subscribes for the duration of an ``async with`` block."""
        ...

    async def start(self) -> None:
        """Starts background work on the running loop."""
        ...

    async def close(self) -> None:
        """Stops background work and closes connections."""
        ...


class _LocalFanout:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}

    def dispatch(self, channel: str, message: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs.get(channel, ()))
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.deliver, message)
            except RuntimeError:  # loop closed
                continue

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub = Subscription(channel, asyncio.get_running_loop())
        with self._lock:
            self._subs.setdefault(channel, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subs.get(channel)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subs[channel]


class InProcessBroker(_LocalFanout):
    """Broker for one process (the embedded default, no Redis needed)."""

    healthy = True

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.dispatch(channel, message)

    def publish_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        for channel, message in messages:
            self.dispatch(channel, message)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisBroker(_LocalFanout):
    """Broker over Redis pub/sub (``LEDGER_REDIS_URL``)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._publisher = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=10
        )
        self._healthy = False
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self._healthy

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.publish_many([(channel, message)])

    def publish_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            with self._publisher.pipeline(transaction=False) as pipe:
                for channel, message in messages:
                    pipe.publish(channel, json.dumps(message, separators=(",", ":")))
                pipe.execute()
        except redis.RedisError as error:
            self._healthy = False
            log.warning("bridge publish failed: %s", error)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="redis-bridge")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            self._publisher.close()

    async def _listen_forever(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1.0)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(f"{PREFIX}:*")
                    self._healthy = True
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=5.0
                        )
                        if message is None:
                            await client.ping()
                            continue
                        self.dispatch(message["channel"].decode(), json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._healthy = False
                log.warning("bridge subscription lost: %s; retrying", error)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()


def make_broker(redis_url: str | None) -> Broker:
    """A :class:`RedisBroker` for ``redis_url``, else an :class:`InProcessBroker`."""
    return RedisBroker(redis_url) if redis_url else InProcessBroker()
