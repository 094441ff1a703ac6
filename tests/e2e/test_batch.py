"""``POST /v1/batch`` (contract v1.1, "Batched writes") over HTTP, on SQLite and
on PostgreSQL + Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers.apps import app_client

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer test-admin-key"}


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)],
)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("ledger")
    with app_client(request.param, folder, admin_api_key="test-admin-key") as c:
        yield c


def new_account() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def batch(
    client: TestClient, *ops: dict[str, Any], headers: dict[str, str] = ADMIN
) -> list[dict[str, Any]]:
    r = client.post("/v1/batch", json={"operations": list(ops)}, headers=headers)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    assert len(results) == len(ops)
    return results


def entries(client: TestClient, account: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/accounts/{account}/entries", params={"limit": 1000}, headers=ADMIN)
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["entries"]
    return found


def test_operations_answer_in_order_each_seeing_the_ones_before_it(client: TestClient) -> None:
    a, b = new_account(), new_account()
    results = batch(
        client,
        {"op": "purchase", "account_id": a, "amount": 100, "payment_reference": "pi_1"},
        {"op": "grant", "account_id": b, "amount": 50, "reason": "welcome"},
        {"op": "consume", "account_id": a, "amount": 30, "model": "gpt-4o"},
        {"op": "deduct", "account_id": b, "amount": 5, "reason": "fix"},
        {"op": "hold", "account_id": a, "amount": 20, "ttl_seconds": 60},
    )
    assert [r["status"] for r in results] == [201] * 5
    assert [r["balance"]["available"] for r in results] == [100, 50, 70, 45, 50]
    assert [r["entry"]["version"] for r in results] == [1, 1, 2, 2, 3]
    assert results[4]["balance"]["held"] == 20
    of_a = [r["entry"]["position"] for r in results if r["entry"]["account_id"] == a]
    assert of_a == sorted(of_a)
    assert [e["type"] for e in entries(client, a)] == ["purchase", "consumption", "hold"]


def test_a_refused_operation_writes_nothing_and_leaves_the_others_alone(
    client: TestClient,
) -> None:
    a = new_account()
    results = batch(
        client,
        {"op": "purchase", "account_id": a, "amount": 10},
        {"op": "consume", "account_id": a, "amount": 11},
        {"op": "consume", "account_id": a, "amount": 4},
        {"op": "consume", "account_id": a, "amount": 1.5},
        {"op": "teleport", "account_id": a, "amount": 1},
        {"op": "consume", "account_id": "not valid!", "amount": 1},
    )
    assert [r["status"] for r in results] == [201, 402, 201, 422, 422, 422]
    refused = results[1]["problem"]
    assert refused["code"] == "insufficient-balance"
    assert (refused["available"], refused["requested"]) == (10, 11)
    assert {r["problem"]["code"] for r in results[3:]} == {"validation-error"}
    assert [(e["type"], e["amount"]) for e in entries(client, a)] == [
        ("purchase", 10),
        ("consumption", 4),
    ]


def test_captures_releases_and_refunds_name_their_hold_or_consumption(
    client: TestClient,
) -> None:
    a = new_account()
    first = batch(
        client,
        {"op": "purchase", "account_id": a, "amount": 100},
        {"op": "hold", "account_id": a, "amount": 40},
        {"op": "consume", "account_id": a, "amount": 10},
    )
    hold_id, consumption = first[1]["entry"]["hold_id"], first[2]["entry"]["id"]
    results = batch(
        client,
        {"op": "capture", "account_id": a, "hold_id": hold_id, "amount": 15},
        {"op": "release", "account_id": a, "hold_id": hold_id},
        {"op": "refund", "account_id": a, "entry_id": consumption, "amount": 4},
        {"op": "refund", "account_id": a, "entry_id": consumption, "amount": 7},
        {"op": "capture", "account_id": a, "hold_id": str(uuid.uuid4())},
        {"op": "refund", "account_id": a, "entry_id": "not-a-uuid"},
        {"op": "release", "account_id": a},
    )
    statuses = [(r["status"], r.get("problem", {}).get("code")) for r in results]
    assert statuses == [
        (201, None),
        (409, "hold-not-active"),
        (201, None),
        (409, "refund-exceeds-consumption"),
        (404, "hold-not-found"),
        (404, "entry-not-found"),
        (422, "validation-error"),
    ]
    assert results[2]["balance"]["available"] == 100 - 10 - 15 + 4


def test_idempotency_keys_are_shared_with_single_writes_in_both_directions(
    client: TestClient,
) -> None:
    a = new_account()
    client.post(f"/v1/accounts/{a}/purchases", json={"amount": 100}, headers=ADMIN)
    single = client.post(
        f"/v1/accounts/{a}/consumptions",
        json={"amount": 7, "model": "m"},
        headers={**ADMIN, "Idempotency-Key": "k-1"},
    )
    assert single.status_code == 201
    results = batch(
        client,
        {"op": "consume", "account_id": a, "amount": 7, "model": "m", "idempotency_key": "k-1"},
        {"op": "consume", "account_id": a, "amount": 8, "idempotency_key": "k-1"},
        {"op": "consume", "account_id": a, "amount": 9, "idempotency_key": "k-2"},
        {"op": "consume", "account_id": a, "amount": 9, "idempotency_key": "k-2"},
    )
    assert results[0]["status"] == 201 and results[0]["idempotent_replayed"] is True
    assert results[0]["entry"] == single.json()["entry"]
    assert results[0]["balance"] == single.json()["balance"]
    assert results[1]["problem"]["code"] == "idempotency-key-reused"
    assert "idempotent_replayed" not in results[2]
    assert results[3]["idempotent_replayed"] is True
    assert results[3]["entry"]["id"] == results[2]["entry"]["id"]
    again = client.post(
        f"/v1/accounts/{a}/consumptions",
        json={"amount": 9},
        headers={**ADMIN, "Idempotency-Key": "k-2"},
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["entry"]["id"] == results[2]["entry"]["id"]
    assert [e["amount"] for e in entries(client, a)] == [100, 7, 9]


def test_a_key_without_the_scope_gets_a_403_result_per_operation(client: TestClient) -> None:
    r = client.post(
        "/v1/api-keys",
        json={"name": f"r-{uuid.uuid4().hex[:8]}", "scopes": ["consume"]},
        headers=ADMIN,
    )
    consumer = {"Authorization": f"Bearer {r.json()['key']}"}
    a = new_account()
    results = batch(
        client,
        {"op": "purchase", "account_id": a, "amount": 10},
        {"op": "grant", "account_id": a, "amount": 10, "reason": "x"},
        {"op": "consume", "account_id": a, "amount": 1},
        headers=consumer,
    )
    assert [(r["status"], r["problem"]["code"]) for r in results] == [
        (403, "forbidden"),
        (403, "forbidden"),
        (402, "insufficient-balance"),
    ]
    assert entries(client, a) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"operations": []},
        {"operations": "x"},
        {"operations": [1]},
        [],
        {"operations": [{}] * 1001},
    ],
)
def test_a_malformed_envelope_is_refused_whole_and_writes_nothing(
    client: TestClient, body: Any
) -> None:
    r = client.post("/v1/batch", json=body, headers=ADMIN)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation-error"


def test_credentials_and_body_limits_apply_to_the_whole_request(client: TestClient) -> None:
    assert client.post("/v1/batch", json={"operations": []}).status_code == 401
    assert client.post("/v1/batch", content=b"{nope", headers=ADMIN).status_code == 400
    a = new_account()
    big = [{"op": "purchase", "account_id": a, "amount": 1, "metadata": {"n": "x" * 1100}}] * 1000
    assert client.post("/v1/batch", json={"operations": big}, headers=ADMIN).status_code == 413
    fits = [{"op": "purchase", "account_id": a, "amount": 1, "metadata": {"n": "x" * 700}}] * 1000
    r = client.post("/v1/batch", json={"operations": fits}, headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["results"][-1]["balance"]["available"] == 1000
