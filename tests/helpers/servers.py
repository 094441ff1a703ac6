"""Real backing services and a real running app for integration and e2e tests.

Each test run gets a PostgreSQL database and a Redis database of its own, and
drops / flushes them afterwards; nothing depends on an earlier run's state.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import redis
import uvicorn

from service.config import Settings

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379"
ADMIN_KEY = "test-admin-key-0123456789"


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "ledger_test") -> Iterator[str]:
    """Creates a new database and yields its URL; drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_redis_database() -> Iterator[str]:
    """Yields the URL of an emptied Redis logical database (1–15); flushes it after.

    Pub/sub channels are server-wide, so channel names are made unique by the
    tests through their account ids, not by the database number.
    """
    db = random.randint(1, 15)  # noqa: S311
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_app(settings: Settings) -> Iterator[str]:
    """Runs ``create_app(settings)`` under uvicorn in a thread; yields its base URL."""
    from service.api.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
