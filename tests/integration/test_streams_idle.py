"""Idle streams cost no store queries: 1,000 balance streams on one app over
real PostgreSQL and Redis, the store reads counted on the real view/recorder."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import resource
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from service.api.app import create_app
from service.config import Settings
from service.runtime import Runtime
from tests.helpers.servers import (
    ADMIN_KEY,
    free_port,
    fresh_postgres_database,
    fresh_redis_database,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STREAMS = 1000
IDLE_SECONDS = 3.0


def counting(calls: collections.Counter[str], name: str, function: Callable[..., Any]) -> Any:
    """``function``, counting its calls in ``calls[name]`` (the real call runs)."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return function(*args, **kwargs)

    return counted


def count_store_reads(runtime: Runtime) -> collections.Counter[str]:
    """Counts every read the streams and the hub can make of the store."""
    calls: collections.Counter[str] = collections.Counter()
    view = runtime.balances
    for name in ("get_balance", "balances_after", "position"):
        setattr(view, name, counting(calls, name, getattr(view, name)))
    recorder = runtime.ledger.ledger_recorder
    for name in ("select_entries", "version_at_position"):
        setattr(recorder, name, counting(calls, name, getattr(recorder, name)))
    return calls


@contextlib.contextmanager
def serving(runtime: Runtime) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


def streams_we_can_open() -> int:
    """Raises the soft file limit if needed (client + server end per stream)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * STREAMS + 500
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        soft = limit
    return min(STREAMS, (soft - 500) // 2)


async def open_stream(port: int, account: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Opens a balance stream and reads up to its snapshot frame."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/accounts/{account}/balance/stream HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\n\r\n".encode()
    )
    received = b""
    while b"event: balance" not in received:
        chunk = await asyncio.wait_for(reader.read(65536), 30)
        assert chunk, received
        received += chunk
    return reader, writer


async def pings_within(reader: asyncio.StreamReader, seconds: float) -> int:
    pings = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                pings += chunk.count(b": ping\n")
    return pings


def test_a_thousand_idle_balance_streams_cause_no_store_queries_and_get_their_pings() -> None:
    count = streams_we_can_open()
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(
            database_url=db_url, redis_url=redis_url, admin_api_key=ADMIN_KEY, sse_ping_seconds=1
        )
        runtime = Runtime.create(settings)
        calls = count_store_reads(runtime)
        with serving(runtime) as port:

            async def main() -> tuple[collections.Counter[str], list[int]]:
                streams = []
                for start in range(0, count, 250):
                    batch = range(start, min(count, start + 250))
                    streams += await asyncio.gather(
                        *(open_stream(port, f"idle-{n}-{uuid.uuid4().hex[:6]}") for n in batch)
                    )
                assert calls["get_balance"] >= count  # each read its snapshot once
                before = calls.copy()
                pings = await asyncio.gather(
                    *(pings_within(reader, IDLE_SECONDS) for reader, _ in streams)
                )
                during = calls - before
                for _, writer in streams:
                    writer.close()
                return during, pings

            during, pings = asyncio.run(main())
    assert sum(during.values()) <= IDLE_SECONDS / 2, during  # the hub's safety poll at most
    assert min(pings) >= IDLE_SECONDS - 1  # every stream pinged every second
