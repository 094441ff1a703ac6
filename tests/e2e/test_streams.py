"""The running app over HTTP and SSE, on PostgreSQL + Redis and on the embedded
default (SQLite + in-process broker)."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
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


@pytest.fixture(scope="module", params=["postgres+redis", "sqlite"])
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        db = tmp_path_factory.mktemp("sqlite") / "ledger.db"
        settings = Settings(
            database_url=f"sqlite:///{db}",
            admin_api_key=ADMIN_KEY,
            sse_ping_seconds=1,
            redis_url=None,
        )
        with running_app(settings) as url:
            yield url
        return
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(
            database_url=db_url, redis_url=redis_url, admin_api_key=ADMIN_KEY, sse_ping_seconds=1
        )
        with running_app(settings) as url:
            yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
        yield http


def new_account() -> str:
    return f"acct-{uuid.uuid4().hex[:10]}"


def post(client: httpx.Client, account: str, kind: str, amount: int) -> dict[str, Any]:
    response = client.post(
        f"/v1/accounts/{account}/{kind}",
        json={"amount": amount, **({"reason": "test"} if kind == "grants" else {})},
    )
    assert response.status_code == 201, response.text
    written: dict[str, Any] = response.json()
    return written


def test_a_balance_stream_sends_the_snapshot_then_every_later_balance_in_order(
    base_url: str, client: httpx.Client
) -> None:
    account = new_account()
    stream = StreamReader(f"{base_url}/v1/accounts/{account}/balance/stream", AUTH)
    try:
        assert stream.status == 200
        assert stream.content_type is not None
        assert stream.content_type.startswith("text/event-stream")
        first = stream.next()
        assert first.retry == 3000
        snapshot = stream.next_data()
        assert snapshot.event == "balance"
        assert snapshot.json()["version"] == 0
        assert snapshot.json()["available"] == 0

        post(client, account, "purchases", 1000)
        for amount in (10, 20, 30, 40, 50):
            post(client, account, "consumptions", amount)

        frames = [stream.next_data() for _ in range(6)]
        versions = [f.json()["version"] for f in frames]
        positions = [int(f.id or 0) for f in frames]
        assert versions == [1, 2, 3, 4, 5, 6]
        assert positions == sorted(positions) and len(set(positions)) == 6
        assert all(int(f.id or 0) == f.json()["position"] for f in frames)
        assert frames[-1].json()["available"] == 1000 - 150
    finally:
        stream.close()


def test_a_balance_stream_sends_ping_comments(base_url: str) -> None:
    stream = StreamReader(f"{base_url}/v1/accounts/{new_account()}/balance/stream", AUTH)
    try:
        frames = [stream.next(timeout=5, skip_comments=False) for _ in range(4)]
        assert any("ping" in frame.comments for frame in frames)
    finally:
        stream.close()


def test_resuming_at_the_current_position_repeats_no_snapshot(
    base_url: str, client: httpx.Client
) -> None:
    account = new_account()
    written = post(client, account, "purchases", 500)
    position = written["balance"]["position"]
    client.get(f"/v1/accounts/{account}/balance", params={"min_position": position, "wait": 10})
    stream = StreamReader(
        f"{base_url}/v1/accounts/{account}/balance/stream", {**AUTH, "Last-Event-ID": str(position)}
    )
    try:
        later = post(client, account, "consumptions", 5)
        frame = stream.next_data()
        assert frame.json()["version"] == 2
        assert int(frame.id or 0) == later["balance"]["position"]
    finally:
        stream.close()


def test_an_entries_stream_replays_history_then_follows_live_entries_once_each(
    base_url: str, client: httpx.Client
) -> None:
    account = new_account()
    post(client, account, "purchases", 1000)
    post(client, account, "consumptions", 7)
    stream = StreamReader(f"{base_url}/v1/accounts/{account}/entries/stream?last_event_id=0", AUTH)
    try:
        replayed = [stream.next_data() for _ in range(2)]
        assert [f.json()["type"] for f in replayed] == ["purchase", "consumption"]
        post(client, account, "consumptions", 8)
        post(client, account, "consumptions", 9)
        live = [stream.next_data() for _ in range(2)]
        frames = replayed + live
        assert [f.json()["version"] for f in frames] == [1, 2, 3, 4]
        assert all(f.event == "entry" for f in frames)
        assert [f.json()["amount"] for f in live] == [8, 9]
        with pytest.raises(queue.Empty):  # nothing more: none twice
            stream.next_data(timeout=1.5)
    finally:
        stream.close()


def test_an_entries_stream_without_last_event_id_sends_live_entries_only(
    base_url: str, client: httpx.Client
) -> None:
    account = new_account()
    post(client, account, "purchases", 100)
    stream = StreamReader(f"{base_url}/v1/accounts/{account}/entries/stream", AUTH)
    try:
        assert stream.next().retry == 3000  # subscribed: live entries from here on
        post(client, account, "consumptions", 3)
        frame = stream.next_data()
        assert frame.json()["type"] == "consumption"
        assert frame.json()["version"] == 2
    finally:
        stream.close()


def test_the_all_accounts_stream_carries_every_accounts_balance(
    base_url: str, client: httpx.Client
) -> None:
    first, second = new_account(), new_account()
    stream = StreamReader(f"{base_url}/v1/balances/stream", AUTH)
    try:
        assert stream.next().retry == 3000  # subscribed: live balances from here on
        post(client, first, "purchases", 10)
        post(client, second, "grants", 20)
        seen: dict[str, int] = {}
        while len(seen) < 2 or first not in seen or second not in seen:
            frame = stream.next_data()
            seen[frame.json()["account_id"]] = frame.json()["available"]
        assert seen[first] == 10 and seen[second] == 20
    finally:
        stream.close()


def test_a_stream_token_reads_its_own_accounts_stream_only(
    base_url: str, client: httpx.Client
) -> None:
    account = new_account()
    post(client, account, "purchases", 42)
    token = client.post(f"/v1/accounts/{account}/stream-tokens", json={"ttl_seconds": 60}).json()[
        "token"
    ]
    stream = StreamReader(f"{base_url}/v1/accounts/{account}/balance/stream?access_token={token}")
    try:
        assert stream.status == 200
        assert stream.next_data().json()["account_id"] == account
    finally:
        stream.close()
    other = httpx.get(
        f"{base_url}/v1/accounts/{new_account()}/balance/stream",
        params={"access_token": token},
        timeout=10,
    )
    assert other.status_code == 403


def test_a_stream_keeps_delivering_while_the_bridge_is_down(tmp_path: Path) -> None:
    """Redis unreachable: the stream falls back to reading the balance table."""
    with fresh_postgres_database() as db_url:
        settings = Settings(
            database_url=db_url, redis_url="redis://127.0.0.1:1/0", admin_api_key=ADMIN_KEY
        )
        with (
            running_app(settings) as url,
            httpx.Client(base_url=url, headers=AUTH, timeout=30) as http,
        ):
            account = new_account()
            stream = StreamReader(f"{url}/v1/accounts/{account}/balance/stream", AUTH)
            try:
                assert stream.next_data().json()["version"] == 0
                post(http, account, "purchases", 77)
                frame = stream.next_data(timeout=10)
                assert frame.json()["available"] == 77
            finally:
                stream.close()


def test_an_expired_hold_reaches_the_balance_stream_within_15_seconds(
    base_url: str, client: httpx.Client
) -> None:
    account = new_account()
    post(client, account, "purchases", 100)
    placed = client.post(f"/v1/accounts/{account}/holds", json={"amount": 40, "ttl_seconds": 1})
    assert placed.status_code == 201, placed.text
    stream = StreamReader(f"{base_url}/v1/accounts/{account}/balance/stream", AUTH)
    try:
        frame = stream.next_data()
        while frame.json()["version"] < 3:
            frame = stream.next_data(timeout=15)
        assert frame.json()["held"] == 0
        assert frame.json()["available"] == 100
    finally:
        stream.close()
    entries = client.get(f"/v1/accounts/{account}/entries").json()["entries"]
    assert [e["type"] for e in entries] == ["purchase", "hold", "hold_expiry"]
    assert entries[2]["hold_id"] == placed.json()["entry"]["hold_id"]


def test_a_stream_ends_within_a_ping_of_its_key_being_revoked(
    base_url: str, client: httpx.Client
) -> None:
    name = f"reader-{uuid.uuid4().hex[:8]}"
    created = client.post("/v1/api-keys", json={"name": name, "scopes": ["read"]})
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    account = new_account()
    stream = StreamReader(f"{base_url}/v1/accounts/{account}/balance/stream", key)
    try:
        assert stream.status == 200
        stream.next_data()
        assert client.delete(f"/v1/api-keys/{name}").status_code == 204
        assert stream.ended(3.0), "the stream outlived its revoked key"  # ping every 1 s
        r = httpx.get(f"{base_url}/v1/accounts/{account}/balance/stream", headers=key)
        assert r.status_code == 401
    finally:
        stream.close()


def test_a_stream_ends_within_a_ping_of_its_stream_token_expiring(
    base_url: str, client: httpx.Client
) -> None:
    account = new_account()
    issued = client.post(f"/v1/accounts/{account}/stream-tokens", json={"ttl_seconds": 2})
    token = issued.json()["token"]
    url = f"{base_url}/v1/accounts/{account}/balance/stream?access_token={token}"
    stream = StreamReader(url)
    try:
        assert stream.status == 200
        stream.next_data()
        assert not stream.ended(0.5)  # still valid
        assert stream.ended(5.0), "the stream outlived its token"  # 2 s TTL + 1 s ping
        assert httpx.get(url).status_code == 401
    finally:
        stream.close()
