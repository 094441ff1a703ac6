"""A slow reader of ``/v1/balances/stream`` (contract v1.1): intermediate
balances may be skipped, but after writes stop the last frame of each account
is its current balance. On PostgreSQL + Redis and on the embedded default."""

from __future__ import annotations

import contextlib
import queue
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config import Settings
from tests.helpers.servers import (
    ADMIN_KEY,
    fresh_postgres_database,
    fresh_redis_database,
    running_app,
)
from tests.helpers.sse import StreamReader

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
ACCOUNTS = 8
WRITES = 60


@pytest.fixture(scope="module", params=["postgres+redis", "sqlite"])
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        db: Path = tmp_path_factory.mktemp("sqlite") / "ledger.db"
        settings = Settings(database_url=f"sqlite:///{db}", admin_api_key=ADMIN_KEY, redis_url=None)
        with running_app(settings) as url:
            yield url
        return
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(database_url=db_url, redis_url=redis_url, admin_api_key=ADMIN_KEY)
        with running_app(settings) as url:
            yield url


def write_burst(base_url: str, account: str) -> int:
    """A purchase then ``WRITES`` consumptions; the last write's position."""
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
        last = http.post(f"/v1/accounts/{account}/purchases", json={"amount": 10_000})
        assert last.status_code == 201, last.text
        for amount in range(1, WRITES + 1):
            last = http.post(f"/v1/accounts/{account}/consumptions", json={"amount": amount})
            assert last.status_code == 201, last.text
        return int(last.json()["balance"]["position"])


def test_a_slow_reader_of_every_balance_ends_with_each_accounts_current_balance(
    base_url: str,
) -> None:
    accounts = [f"slow-{n}-{uuid.uuid4().hex[:8]}" for n in range(ACCOUNTS)]
    stream = StreamReader(f"{base_url}/v1/balances/stream", AUTH, paused=True, receive_buffer=4096)
    try:
        with ThreadPoolExecutor(ACCOUNTS) as pool:
            positions = list(pool.map(lambda a: write_burst(base_url, a), accounts))
        current = {}
        with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
            for account, position in zip(accounts, positions, strict=True):
                answer = http.get(
                    f"/v1/accounts/{account}/balance",
                    params={"min_position": position, "wait": 10},
                )
                assert answer.status_code == 200, answer.text
                current[account] = answer.json()
        stream.resume()
        last: dict[str, dict[str, Any]] = {}
        while any(last.get(account) != current[account] for account in accounts):
            frame = stream.next_data(timeout=15)
            balance = frame.json()
            assert int(frame.id or 0) == balance["position"]
            if balance["account_id"] in current:
                previous = last.get(balance["account_id"])
                assert previous is None or previous["position"] < balance["position"]
                last[balance["account_id"]] = balance
        # Nothing of these accounts follows (Redis channels are server-wide:
        # other test runs' accounts may pass by).
        deadline = time.monotonic() + 1.5
        with contextlib.suppress(queue.Empty):
            while (remaining := deadline - time.monotonic()) > 0:
                extra = stream.next_data(timeout=remaining).json()
                assert extra["account_id"] not in current, f"after the current balance: {extra}"
    finally:
        stream.close()
