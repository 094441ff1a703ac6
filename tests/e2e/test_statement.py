"""``GET /v1/accounts/{id}/statement`` (contract v1.1, "Reads") over HTTP, on
the running app with PostgreSQL + Redis and with the embedded default (SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.domain.published import BalancePublic
from tests.helpers.servers import (
    ADMIN_KEY,
    fresh_postgres_database,
    fresh_redis_database,
    running_app,
)

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
PROBLEM = "application/problem+json"
FAR_PAST, FAR_FUTURE = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
STATEMENT_KEYS = {"account_id", "from", "to", "opening", "closing", "totals"} | {
    "first_version",
    "last_version",
}
BALANCE_KEYS = set(BalancePublic.__required_keys__)


@pytest.fixture(
    scope="module",
    params=[pytest.param("postgres", marks=pytest.mark.integration), "sqlite"],
)
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


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
        yield http


def new_account() -> str:
    return f"acct-{uuid.uuid4().hex[:10]}"


def write(client: httpx.Client, account: str, kind: str, amount: int) -> dict[str, Any]:
    extra = {"reason": "test"} if kind in ("grants", "deductions") else {}
    r = client.post(f"/v1/accounts/{account}/{kind}", json={"amount": amount, **extra})
    assert r.status_code == 201, r.text
    written: dict[str, Any] = r.json()
    return written


def history(client: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    """A new account with four entries (purchase 1000, consumption 100, grant
    50, consumption 30); answers it and the writes' bodies."""
    account = new_account()
    kinds = [("purchases", 1000), ("consumptions", 100), ("grants", 50), ("consumptions", 30)]
    return account, [write(client, account, kind, amount) for kind, amount in kinds]


def get_statement(
    client: httpx.Client, account: str, start: str | None, end: str | None, **headers: str
) -> httpx.Response:
    params = {name: value for name, value in (("from", start), ("to", end)) if value is not None}
    return client.get(f"/v1/accounts/{account}/statement", params=params, headers=headers)


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    return body


def test_a_statement_answers_the_contract_shape_with_balances_totals_and_versions(
    client: httpx.Client,
) -> None:
    account, writes = history(client)
    r = get_statement(client, account, FAR_PAST, FAR_FUTURE)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == STATEMENT_KEYS
    assert set(body["opening"]) == set(body["closing"]) == BALANCE_KEYS
    assert (body["account_id"], body["from"], body["to"]) == (
        account,
        "2000-01-01T00:00:00.000000Z",
        "2999-01-01T00:00:00.000000Z",
    )
    assert (body["opening"]["version"], body["opening"]["position"]) == (0, 0)
    assert body["opening"]["hash"] == "0" * 64
    assert body["closing"] == writes[-1]["balance"]
    assert body["totals"] == {
        "purchase": {"count": 1, "amount": 1000},
        "grant": {"count": 1, "amount": 50},
        "consumption": {"count": 2, "amount": 130},
    }
    assert (body["first_version"], body["last_version"]) == (1, 4)


def test_the_closing_hash_is_the_hash_of_the_last_entry_in_the_window(
    client: httpx.Client,
) -> None:
    account, writes = history(client)
    entries = writes[1]["entry"], writes[2]["entry"]
    start, end = entries[0]["recorded_at"], writes[3]["entry"]["recorded_at"]
    r = get_statement(client, account, start, end)  # [v2, v4): v2 and v3
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["first_version"], body["last_version"]) == (2, 3)
    assert body["closing"]["hash"] == entries[1]["hash"]
    assert body["closing"]["position"] == entries[1]["position"]
    assert body["opening"] == writes[0]["balance"]
    assert body["totals"] == {
        "grant": {"count": 1, "amount": 50},
        "consumption": {"count": 1, "amount": 100},
    }
    page = client.get(f"/v1/accounts/{account}/entries").json()["entries"]
    assert page[2]["hash"] == body["closing"]["hash"]


def test_a_window_without_entries_answers_empty_totals_and_null_versions(
    client: httpx.Client,
) -> None:
    account, writes = history(client)
    r = get_statement(client, account, "2001-01-01T00:00:00Z", "2001-01-02T00:00:00Z")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"] == {}
    assert body["first_version"] is None and body["last_version"] is None
    assert body["opening"] == body["closing"]
    assert body["closing"]["version"] == 0


def test_from_and_to_are_echoed_in_rfc3339_utc_with_microseconds(client: httpx.Client) -> None:
    account, _ = history(client)
    r = get_statement(client, account, "2026-01-01T02:00:00.5+02:00", "2026-01-01t00:00:01z")
    assert r.status_code == 200, r.text
    assert (r.json()["from"], r.json()["to"]) == (
        "2026-01-01T00:00:00.500000Z",
        "2026-01-01T00:00:01.000000Z",
    )


@pytest.mark.parametrize(
    ("start", "end", "loc"),
    [
        (None, FAR_FUTURE, ["query", "from"]),
        (FAR_PAST, None, ["query", "to"]),
        ("yesterday", FAR_FUTURE, ["query", "from"]),
        (FAR_PAST, "2026-01-01T00:00:00", ["query", "to"]),  # no offset
        (FAR_FUTURE, FAR_FUTURE, ["query", "to"]),
        (FAR_FUTURE, FAR_PAST, ["query", "to"]),
    ],
)
def test_a_missing_or_bad_window_is_a_422_naming_the_parameter(
    client: httpx.Client, start: str | None, end: str | None, loc: list[str]
) -> None:
    account, _ = history(client)
    body = problem(get_statement(client, account, start, end), 422, "validation-error")
    assert [error["loc"] for error in body["errors"]] == [loc]


def test_an_account_without_entries_is_a_404(client: httpx.Client) -> None:
    problem(get_statement(client, new_account(), FAR_PAST, FAR_FUTURE), 404, "account-not-found")


def test_a_key_without_read_scope_or_a_stream_token_is_refused_with_403(
    client: httpx.Client,
) -> None:
    account, _ = history(client)
    name = f"k-{uuid.uuid4().hex[:8]}"
    r = client.post("/v1/api-keys", json={"name": name, "scopes": ["consume"]})
    assert r.status_code == 201, r.text
    consume_only = f"Bearer {r.json()['key']}"
    r = client.post(f"/v1/accounts/{account}/stream-tokens", json={})
    assert r.status_code == 201, r.text
    stream_token = f"Bearer {r.json()['token']}"
    for credentials in (consume_only, stream_token):
        r = get_statement(client, account, FAR_PAST, FAR_FUTURE, Authorization=credentials)
        problem(r, 403, "forbidden")


def test_no_credentials_is_a_401(base_url: str) -> None:
    r = httpx.get(
        f"{base_url}/v1/accounts/{new_account()}/statement",
        params={"from": FAR_PAST, "to": FAR_FUTURE},
        timeout=30,
    )
    problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
