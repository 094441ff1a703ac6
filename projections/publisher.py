"""Publishing to Redis off the caller's path: a bounded queue and one thread.

The projection must never wait for the bridge. :meth:`BackgroundPublisher.put`
appends to a bounded queue and returns at once; one daemon thread sends what
has gathered in one pipelined round trip. When Redis fails (refused, or a black
hole that never answers: each attempt is bounded by the client's 1 s socket
timeouts) the batch is dropped and the thread backs off, 0.1 s doubling to 5 s;
while it backs off, and whenever the queue is full, messages are dropped too.
Every drop calls ``on_lost`` so readers catch up from the store (see
``Broker.epoch``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import redis

log = logging.getLogger(__name__)

EXACT = b"J"
"""Prefix of a message encoded by ``json`` (integers beyond 64 bits, which
orjson neither writes nor reads exactly); see :func:`decode`."""

QUEUE_LIMIT = 100_000
"""Most messages waiting to be sent; beyond it the oldest are dropped."""
FIRST_BACKOFF, LAST_BACKOFF = 0.1, 5.0
"""Seconds between attempts after a failure: doubling from the first to the last."""


class BackgroundPublisher:
    """Sends ``(channel, message)`` pairs to Redis from its own thread, in order."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._on_lost = on_lost
        self._clock = clock
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._ready = threading.Condition()
        self._backoff = 0.0
        self._retry_at = 0.0
        self._closed = False
        self.dropped = 0
        """Messages dropped so far (failure, backoff or full queue)."""
        self._thread = threading.Thread(target=self._run, name="bridge-publisher", daemon=True)
        self._thread.start()

    @property
    def backing_off(self) -> bool:
        """True while the last attempt failed and the next is not due yet."""
        return self._clock() < self._retry_at

    def put(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Queues ``messages`` for sending; never blocks on Redis, never raises."""
        if self.backing_off:
            self._drop(len(messages))
            return
        with self._ready:
            self._queue.extend(messages)
            overflow = len(self._queue) - QUEUE_LIMIT
            for _ in range(max(overflow, 0)):
                self._queue.popleft()
            self._ready.notify()
        if overflow > 0:
            self._drop(overflow)

    def close(self, timeout: float = 1.0) -> None:
        """Stops the thread after what is queued (waiting at most ``timeout`` s)."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)
        self._client.close()

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._on_lost()

    def _take(self) -> list[tuple[str, dict[str, Any]]] | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if not self._queue:
                return None
            batch = list(self._queue)
            self._queue.clear()
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    for channel, message in batch:
                        pipe.publish(self._namespace + channel, encode(message))
                    pipe.execute()
            except Exception as error:  # never let one failure end the thread
                self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF), LAST_BACKOFF)
                self._retry_at = self._clock() + self._backoff
                log.warning("bridge publish failed: %s; next try in %.1f s", error, self._backoff)
                with self._ready:
                    lost = len(batch) + len(self._queue)
                    self._queue.clear()
                self._drop(lost)
            else:
                self._backoff = 0.0


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as JSON bytes: orjson, or ``json`` behind :data:`EXACT` for
    what orjson cannot write (integers beyond 64 bits)."""
    try:
        return orjson.dumps(message)
    except TypeError:
        return EXACT + json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes) -> Any:
    """The message :func:`encode` made (integers exact)."""
    if data.startswith(EXACT):
        return json.loads(data[1:])
    return orjson.loads(data)
