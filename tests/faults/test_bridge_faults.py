"""Issue 7, item 2: an unreachable Redis never slows the projection's
publishing, and the bridge recovers by itself once Redis is back. Redis is cut
through a proxy the test owns (refuse and black-hole modes)."""

from __future__ import annotations

import time

import pytest
import redis

from projections.broker import RedisBroker
from projections.channels import POSITIONS
from tests.helpers.proxy import Mode, tcp_proxy
from tests.helpers.servers import fresh_redis_database

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_publishing_to_a_cut_redis_returns_at_once_and_resumes_after(mode: Mode) -> None:
    with fresh_redis_database() as redis_url, tcp_proxy("127.0.0.1", 6379) as proxy:
        db = redis_url.rsplit("/", 1)[1]
        namespace = f"fault-{time.monotonic_ns()}:"
        broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/{db}", namespace)
        # redis-py leaves Redis.pubsub() unannotated (its result, PubSub, is typed).
        listener = redis.Redis.from_url(redis_url).pubsub()  # type: ignore[no-untyped-call]
        listener.subscribe(namespace + POSITIONS)
        proxy.set_mode(mode)
        slowest = 0.0
        deadline = time.monotonic() + 3.0  # several failed attempts and backoffs
        position = 0
        while time.monotonic() < deadline:
            position += 1
            started = time.perf_counter()
            broker.publish_many([(POSITIONS, {"position": position})])
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.002)
        assert slowest < 0.05, f"a publish waited {slowest * 1000:.1f} ms on a cut Redis"
        assert broker.epoch > 0, "lost messages must bump the epoch (readers catch up)"
        proxy.set_mode("pass")
        received = None
        give_up = time.monotonic() + 10.0  # backoff is at most 5 s
        while received is None and time.monotonic() < give_up:
            position += 1
            broker.publish_many([(POSITIONS, {"position": position})])
            message = listener.get_message(timeout=0.2)
            while message is not None and received is None:
                if message["type"] == "message":
                    received = message
                message = listener.get_message(timeout=0.01)
        assert received is not None, "publishing did not resume after Redis came back"
        listener.close()
