"""The pub/sub bridge: Redis in production, an in-process broker by default.

The projection publishes from its own thread (:meth:`Broker.publish_many` is
synchronous, never blocks on Redis and never raises: a bridge outage must not
stop or slow the projection; see ``projections.publisher``).
Each process keeps ONE Redis connection that pattern-subscribes to every ledger
channel; the messages are handed to listeners registered with
:meth:`Broker.add_listener` (one channel) or :meth:`Broker.add_prefix_listener`
(every channel starting with a prefix), always on the event loop that
registered them. Messages are JSON objects (``dict``), parsed once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from projections.channels import PREFIX
from projections.publisher import BackgroundPublisher, decode

log = logging.getLogger(__name__)

Message = dict[str, Any]
Listener = Callable[[Message], None]
"""Called on the event loop with each message of one channel."""
PrefixListener = Callable[[str, Message], None]
"""Called on the event loop with ``(channel, message)``."""


class Broker(Protocol):
    """Publishes JSON messages on channels; listeners get them in order."""

    @property
    def healthy(self) -> bool:
        """False while the bridge is known to be down (the hub then polls)."""
        ...

    @property
    def epoch(self) -> int:
        """Bumped whenever messages may have been lost (listener reconnected,
        a publish failed): readers then catch up from the store once."""
        ...

    def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        """Publishes ``(channel, message)`` pairs in order, in one round trip;
        thread-safe, never raises."""
        ...

    def add_listener(self, channel: str, callback: Listener) -> Callable[[], None]:
        """Calls ``callback(message)`` on the running loop for each message of
        exactly ``channel``; returns a function that removes it."""
        ...

    def add_prefix_listener(self, prefix: str, callback: PrefixListener) -> Callable[[], None]:
        """Calls ``callback(channel, message)`` for each channel starting with
        ``prefix``; returns a function that removes it."""
        ...

    async def start(self) -> None:
        """Starts background work on the running loop."""
        ...

    async def close(self) -> None:
        """Stops background work and closes connections."""
        ...


class _Listeners:
    """The process's listeners, all on one event loop (the loop of the first)."""

    def __init__(self) -> None:
        self._exact: dict[str, list[Listener]] = {}
        self._prefixed: list[tuple[str, PrefixListener]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add_listener(self, channel: str, callback: Listener) -> Callable[[], None]:
        self._loop = asyncio.get_running_loop()
        self._exact.setdefault(channel, []).append(callback)
        return lambda: self._exact.get(channel, []).remove(callback)

    def add_prefix_listener(self, prefix: str, callback: PrefixListener) -> Callable[[], None]:
        self._loop = asyncio.get_running_loop()
        entry = (prefix, callback)
        self._prefixed.append(entry)
        return lambda: self._prefixed.remove(entry)

    def dispatch(self, channel: str, message: Message) -> None:
        """Hands one message to its listeners (on the loop); never raises."""
        for callback in tuple(self._exact.get(channel, ())):
            self._call(callback, message)
        for prefix, prefixed in tuple(self._prefixed):
            if channel.startswith(prefix):
                self._call(prefixed, channel, message)

    def dispatch_many(self, messages: list[tuple[str, Message]]) -> None:
        for channel, message in messages:
            self.dispatch(channel, message)

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("bridge listener failed")


class InProcessBroker(_Listeners):
    """Broker for one process (the embedded default, no Redis needed)."""

    healthy = True
    epoch = 0

    def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self.dispatch_many, messages)
        except RuntimeError:  # loop closed
            return

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisBroker(_Listeners):
    """Broker over Redis pub/sub (``LEDGER_REDIS_URL``). Healthy while the
    listener connection is up; it reconnects by itself every second."""

    def __init__(self, url: str, namespace: str = "") -> None:
        super().__init__()
        self.url = url
        self.namespace = namespace
        """Prefixed to every channel on Redis: pub/sub ignores the database
        number, so deployments sharing a Redis server keep apart."""
        self._healthy = False
        self._epoch = 0
        self._task: asyncio.Task[None] | None = None
        self._publisher = BackgroundPublisher(
            redis.Redis.from_url(
                url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=10
            ),
            namespace,
            on_lost=self._lost,
        )

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def epoch(self) -> int:
        return self._epoch

    def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        self._publisher.put(messages)

    def _lost(self) -> None:
        self._epoch += 1  # messages lost: listeners catch up from the store

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="redis-bridge")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._healthy = False
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._publisher.close)

    async def _listen_forever(self) -> None:
        while True:
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=1.0, socket_keepalive=True
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(f"{self.namespace}{PREFIX}:*")
                    self._epoch += 1
                    self._healthy = True
                    await self._receive(client, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._healthy:
                    log.warning("bridge subscription lost: %s; retrying", error)
                self._healthy = False
                await asyncio.sleep(1.0)
            finally:
                self._healthy = False
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _receive(self, client: aioredis.Redis, pubsub: aioredis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is None:
                await asyncio.wait_for(client.ping(), 2.0)  # idle: is the link alive?
                continue
            try:
                data = decode(message["data"])
            except ValueError:
                log.warning("bridge: ignored a message that is not JSON")
                continue
            self.dispatch(message["channel"].decode()[len(self.namespace) :], data)


def make_broker(redis_url: str | None, namespace: str = "") -> Broker:
    """A :class:`RedisBroker` for ``redis_url`` (channels prefixed with
    ``namespace``), else an :class:`InProcessBroker`."""
    return RedisBroker(redis_url, namespace) if redis_url else InProcessBroker()
