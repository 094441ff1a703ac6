"""Contract v1 (API.md) over HTTP: status codes, problem codes, headers.

One app (SQLite, bootstrap admin key) per module; every test uses its own
accounts. Projection waits use ``min_position=<write position>&wait=5``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.helpers.apps import app_client

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer test-admin-key"}
PROBLEM = "application/problem+json"


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)],
)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("ledger")
    with app_client(request.param, folder, schema="ledger", admin_api_key="test-admin-key") as c:
        yield c


def new_account() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def make_key(client: TestClient, *scopes: str) -> dict[str, str]:
    r = client.post(
        "/v1/api-keys",
        json={"name": f"k-{uuid.uuid4().hex[:10]}", "scopes": list(scopes)},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def purchase(client: TestClient, account: str, amount: int = 1000, **extra: Any) -> dict[str, Any]:
    r = client.post(
        f"/v1/accounts/{account}/purchases", json={"amount": amount, **extra}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    written: dict[str, Any] = r.json()
    return written


def balance(
    client: TestClient, account: str, position: int, headers: dict[str, str] = ADMIN
) -> dict[str, Any]:
    r = client.get(
        f"/v1/accounts/{account}/balance",
        params={"min_position": position, "wait": 5},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert "stale" not in body
    return body


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    assert body["title"] and "detail" in body
    return body


def entry_count(client: TestClient, account: str) -> int:
    r = client.get(f"/v1/accounts/{account}/entries", params={"limit": 1000}, headers=ADMIN)
    if r.status_code == 404:
        return 0
    return len(r.json()["entries"])


# Operations -----------------------------------------------------------------


def test_healthz_answers_ok(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_reports_the_stores_and_the_projection(client: TestClient) -> None:
    deadline = time.monotonic() + 10  # the Redis bridge connects in the background
    while (r := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["database"] == "ok"
    projection = checks["projection"]
    assert projection["lag"] == projection["head"] - projection["position"]
    assert projection["position"] <= projection["head"]


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "ledger_http_requests_total" in r.text
    assert "ledger_projection_position" in r.text


def test_docs_and_openapi_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/accounts/{account_id}/purchases" in spec["paths"]
    assert "Unknown body fields are refused" in spec["info"]["description"]


def test_openapi_documents_the_writes_served_by_the_fast_path(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    consume = spec["paths"]["/v1/accounts/{account_id}/consumptions"]["post"]
    params = {(p["in"], p["name"]) for p in consume["parameters"]}
    assert {("path", "account_id"), ("header", "Idempotency-Key")} <= params
    assert consume["security"] == [{"HTTPBearer": []}]
    assert "amount" in json.dumps(consume["requestBody"])
    assert "201" in consume["responses"] and "402" in consume["responses"]
    capture = spec["paths"]["/v1/accounts/{account_id}/holds/{hold_id}/capture"]["post"]
    assert ("path", "hold_id") in {(p["in"], p["name"]) for p in capture["parameters"]}
    batch = spec["paths"]["/v1/batch"]["post"]
    assert "operations" in json.dumps(batch["requestBody"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_an_unknown_route_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")


def test_a_wrong_method_is_a_405_problem(client: TestClient) -> None:
    r = client.delete(f"/v1/accounts/{new_account()}/balance", headers=ADMIN)
    assert_problem(r, 405, "method-not-allowed")
    assert "GET" in r.headers["allow"]


# Writes ---------------------------------------------------------------------


def test_a_purchase_answers_201_with_the_entry_and_the_balance_after_it(
    client: TestClient,
) -> None:
    account = new_account()
    r = client.post(
        f"/v1/accounts/{account}/purchases",
        json={"amount": 1000, "payment_reference": "pi_1", "metadata": {"a": 1}},
        headers=ADMIN,
    )
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("application/json")
    entry, bal = r.json()["entry"], r.json()["balance"]
    assert entry["type"] == "purchase"
    assert entry["amount"] == 1000 and entry["delta_available"] == 1000
    assert entry["version"] == 1 and entry["position"] >= 1
    assert entry["actor"] == "bootstrap-admin"
    assert entry["payment_reference"] == "pi_1" and entry["metadata"] == {"a": 1}
    assert entry["recorded_at"].endswith("Z")
    assert entry["reason"] is None and entry["hold_id"] is None
    assert bal["available"] == 1000 and bal["purchased"] == 1000
    assert bal["version"] == 1 and bal["position"] == entry["position"]
    assert "Idempotent-Replayed" not in r.headers


def test_the_largest_amount_is_accepted(client: TestClient) -> None:
    purchase(client, new_account(), 10**15)


def test_a_grant_needs_a_reason_and_is_recorded_with_it(client: TestClient) -> None:
    account = new_account()
    r = client.post(f"/v1/accounts/{account}/grants", json={"amount": 50}, headers=ADMIN)
    body = assert_problem(r, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "reason"]
    r = client.post(
        f"/v1/accounts/{account}/grants", json={"amount": 50, "reason": "welcome"}, headers=ADMIN
    )
    assert r.status_code == 201
    assert r.json()["entry"]["type"] == "grant"
    assert r.json()["entry"]["reason"] == "welcome"
    assert r.json()["balance"]["granted"] == 50


def test_a_consumption_within_the_balance_is_recorded(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 1000)
    r = client.post(
        f"/v1/accounts/{account}/consumptions",
        json={"amount": 120, "operation": "chat.completion", "model": "gpt-4o"},
        headers=ADMIN,
    )
    assert r.status_code == 201
    entry = r.json()["entry"]
    assert entry["type"] == "consumption" and entry["delta_available"] == -120
    assert entry["operation"] == "chat.completion" and entry["model"] == "gpt-4o"
    assert r.json()["balance"]["available"] == 880
    assert r.json()["balance"]["consumed"] == 120


def test_a_consumption_beyond_the_balance_is_refused_with_402(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 100)
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 101}, headers=ADMIN)
    body = assert_problem(r, 402, "insufficient-balance")
    assert body["available"] == 100 and body["requested"] == 101
    assert entry_count(client, account) == 1


def test_a_deduction_takes_tokens_and_is_refused_beyond_the_balance(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 100)
    r = client.post(
        f"/v1/accounts/{account}/deductions",
        json={"amount": 30, "reason": "chargeback"},
        headers=ADMIN,
    )
    assert r.status_code == 201
    assert r.json()["entry"]["type"] == "deduction"
    assert r.json()["balance"]["deducted"] == 30
    r = client.post(
        f"/v1/accounts/{account}/deductions", json={"amount": 71, "reason": "x"}, headers=ADMIN
    )
    assert_problem(r, 402, "insufficient-balance")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount": true}',
        b'{"amount": 1.0}',
        b'{"amount": 1e3}',
        b'{"amount": "5"}',
        b'{"amount": 0}',
        b'{"amount": -1}',
        b'{"amount": 1000000000000001}',
        b'{"amount": null}',
        b"{}",
    ],
)
def test_an_amount_that_is_not_a_positive_integer_up_to_10_15_is_refused_with_422(
    client: TestClient,
    raw: bytes,
) -> None:
    account = new_account()
    purchase(client, account, 1000)
    r = client.post(
        f"/v1/accounts/{account}/consumptions",
        content=raw,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    body = assert_problem(r, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "amount"]
    assert body["errors"][0]["msg"]
    assert entry_count(client, account) == 1


def test_an_unknown_body_field_is_refused_with_422(client: TestClient) -> None:
    r = client.post(
        f"/v1/accounts/{new_account()}/purchases", json={"amount": 5, "ammount": 5}, headers=ADMIN
    )
    body = assert_problem(r, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "ammount"]


def test_a_body_that_is_not_json_is_refused_with_400(client: TestClient) -> None:
    for raw in (b'{"amount": 5', b"amount=5", b'{"amount": NaN}', b"\xff\xfe"):
        r = client.post(
            f"/v1/accounts/{new_account()}/purchases",
            content=raw,
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert_problem(r, 400, "malformed-request")


def test_a_json_body_that_is_not_an_object_is_refused_with_422(client: TestClient) -> None:
    for raw in (b"[1]", b"5", b'"x"', b"null"):
        r = client.post(
            f"/v1/accounts/{new_account()}/purchases",
            content=raw,
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert_problem(r, 422, "validation-error")


def test_a_body_over_64_kib_is_refused_with_413(client: TestClient) -> None:
    big = json.dumps({"amount": 5, "metadata": {"x": "y" * 70_000}}).encode()
    r = client.post(
        f"/v1/accounts/{new_account()}/purchases",
        content=big,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert_problem(r, 413, "payload-too-large")


def test_a_streamed_body_over_64_kib_is_refused_with_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"amount": 5, "metadata": {"x": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}}'

    r = client.post(
        f"/v1/accounts/{new_account()}/purchases",
        content=chunks(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert_problem(r, 413, "payload-too-large")


def test_metadata_with_too_many_keys_or_bytes_is_refused_with_422(client: TestClient) -> None:
    account = new_account()
    many = {f"k{i}": i for i in range(51)}
    r = client.post(
        f"/v1/accounts/{account}/purchases", json={"amount": 5, "metadata": many}, headers=ADMIN
    )
    assert_problem(r, 422, "validation-error")
    big = {"x": "y" * 8200}
    r = client.post(
        f"/v1/accounts/{account}/purchases", json={"amount": 5, "metadata": big}, headers=ADMIN
    )
    assert_problem(r, 422, "validation-error")
    r = client.post(
        f"/v1/accounts/{account}/purchases", json={"amount": 5, "metadata": [1]}, headers=ADMIN
    )
    assert_problem(r, 422, "validation-error")
    ok = {f"k{i}": i for i in range(50)}
    r = client.post(
        f"/v1/accounts/{account}/purchases", json={"amount": 5, "metadata": ok}, headers=ADMIN
    )
    assert r.status_code == 201


@pytest.mark.parametrize("account", ["-leading-dash", "a" * 129, "has space", "ümlaut", "a,b"])
def test_an_account_id_outside_the_syntax_is_refused_with_422(
    client: TestClient,
    account: str,
) -> None:
    r = client.post(f"/v1/accounts/{account}/purchases", json={"amount": 5}, headers=ADMIN)
    body = assert_problem(r, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["path", "account_id"]
    r = client.get(f"/v1/accounts/{account}/balance", headers=ADMIN)
    assert_problem(r, 422, "validation-error")


def test_an_account_id_of_128_characters_from_the_whole_alphabet_is_accepted(
    client: TestClient,
) -> None:
    account = "A0._:@-" + "b" * 121
    purchase(client, account, 5)


def test_a_purchase_with_an_expiry_forms_a_credit_bucket(client: TestClient) -> None:
    account = new_account()
    r = client.post(
        f"/v1/accounts/{account}/purchases",
        json={"amount": 100, "expires_at": "2999-01-01T01:00:00+01:00"},
        headers=ADMIN,
    )
    assert r.status_code == 201
    assert r.json()["entry"]["expires_at"] == "2999-01-01T00:00:00.000000Z"
    purchase(client, account, 50)
    r = client.get(f"/v1/accounts/{account}/credits", headers=ADMIN)
    assert r.status_code == 200
    credits = r.json()["credits"]
    assert [c["amount"] for c in credits] == [100, 50]
    assert credits[0]["type"] == "purchase" and credits[0]["remaining"] == 100
    assert credits[0]["expires_at"] == "2999-01-01T00:00:00.000000Z"
    assert credits[1]["expires_at"] is None


@pytest.mark.parametrize(
    "expires_at", ["2999-01-01T00:00:00", "2999-01-01", "tomorrow", 5, "2000-01-01T00:00:00Z"]
)
def test_an_expiry_that_is_naive_malformed_or_past_is_refused_with_422(
    client: TestClient,
    expires_at: str | int,
) -> None:
    r = client.post(
        f"/v1/accounts/{new_account()}/purchases",
        json={"amount": 5, "expires_at": expires_at},
        headers=ADMIN,
    )
    assert_problem(r, 422, "validation-error")


# Holds and refunds -----------------------------------------------------------


def test_a_hold_reserves_tokens_and_a_capture_consumes_part_and_releases_the_rest(
    client: TestClient,
) -> None:
    account = new_account()
    purchase(client, account, 1000)
    r = client.post(
        f"/v1/accounts/{account}/holds", json={"amount": 300, "operation": "chat"}, headers=ADMIN
    )
    assert r.status_code == 201
    entry = r.json()["entry"]
    hold_id = entry["hold_id"]
    assert entry["type"] == "hold" and hold_id
    assert r.json()["balance"]["held"] == 300 and r.json()["balance"]["available"] == 700
    r = client.get(f"/v1/accounts/{account}/holds", headers=ADMIN)
    assert r.status_code == 200
    [hold] = r.json()["holds"]
    assert hold["hold_id"] == hold_id and hold["amount"] == 300 and hold["operation"] == "chat"
    assert hold["expires_at"].endswith("Z") and hold["created_at"].endswith("Z")
    r = client.post(
        f"/v1/accounts/{account}/holds/{hold_id}/capture", json={"amount": 301}, headers=ADMIN
    )
    assert_problem(r, 422, "validation-error")
    r = client.post(
        f"/v1/accounts/{account}/holds/{hold_id}/capture", json={"amount": 200}, headers=ADMIN
    )
    assert r.status_code == 201
    assert r.json()["entry"]["type"] == "hold_capture"
    assert r.json()["balance"] == {
        **r.json()["balance"],
        "held": 0,
        "available": 800,
        "consumed": 200,
    }
    r = client.post(f"/v1/accounts/{account}/holds/{hold_id}/release", json={}, headers=ADMIN)
    assert_problem(r, 409, "hold-not-active")
    assert client.get(f"/v1/accounts/{account}/holds", headers=ADMIN).json() == {"holds": []}


def test_a_released_hold_returns_its_tokens_and_cannot_be_captured(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 100)
    hold_id = client.post(
        f"/v1/accounts/{account}/holds", json={"amount": 60}, headers=ADMIN
    ).json()["entry"]["hold_id"]
    r = client.post(f"/v1/accounts/{account}/holds/{hold_id}/release", headers=ADMIN)
    assert r.status_code == 201
    assert r.json()["entry"]["type"] == "hold_release"
    assert r.json()["balance"]["available"] == 100 and r.json()["balance"]["held"] == 0
    r = client.post(f"/v1/accounts/{account}/holds/{hold_id}/capture", json={}, headers=ADMIN)
    assert_problem(r, 409, "hold-not-active")


def test_a_hold_ttl_outside_1_to_86400_is_refused_with_422(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 100)
    for ttl in (0, 86401, 1.5, True):
        r = client.post(
            f"/v1/accounts/{account}/holds", json={"amount": 1, "ttl_seconds": ttl}, headers=ADMIN
        )
        assert_problem(r, 422, "validation-error")
    r = client.post(
        f"/v1/accounts/{account}/holds", json={"amount": 1, "ttl_seconds": 86400}, headers=ADMIN
    )
    assert r.status_code == 201


def test_an_unknown_or_malformed_hold_id_is_404_hold_not_found(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 100)
    for hold_id in (str(uuid.uuid4()), "not-a-uuid"):
        r = client.post(f"/v1/accounts/{account}/holds/{hold_id}/capture", json={}, headers=ADMIN)
        assert_problem(r, 404, "hold-not-found")
        r = client.post(f"/v1/accounts/{account}/holds/{hold_id}/release", json={}, headers=ADMIN)
        assert_problem(r, 404, "hold-not-found")


def test_a_refund_defaults_to_what_is_unrefunded_and_cannot_exceed_it(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 1000)
    consumption = client.post(
        f"/v1/accounts/{account}/consumptions", json={"amount": 100}, headers=ADMIN
    ).json()["entry"]
    url = f"/v1/accounts/{account}/consumptions/{consumption['id']}/refunds"
    r = client.post(url, json={"amount": 40, "reason": "bad answer"}, headers=ADMIN)
    assert r.status_code == 201
    assert r.json()["entry"]["type"] == "refund"
    assert r.json()["entry"]["refund_of"] == consumption["id"]
    assert r.json()["balance"]["refunded"] == 40
    r = client.post(url, json={"amount": 61}, headers=ADMIN)
    assert_problem(r, 409, "refund-exceeds-consumption")
    r = client.post(url, json={}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["entry"]["amount"] == 60
    r = client.post(url, json={}, headers=ADMIN)
    assert_problem(r, 409, "refund-exceeds-consumption")


def test_a_refund_of_an_unknown_or_non_consumption_entry_is_404(client: TestClient) -> None:
    account = new_account()
    bought = purchase(client, account, 1000)["entry"]
    for entry_id in (str(uuid.uuid4()), "nope", bought["id"]):
        r = client.post(
            f"/v1/accounts/{account}/consumptions/{entry_id}/refunds", json={}, headers=ADMIN
        )
        assert_problem(r, 404, "entry-not-found")


def test_a_credit_limit_lets_the_balance_go_negative_down_to_it(client: TestClient) -> None:
    account = new_account()
    r = client.patch(f"/v1/accounts/{account}", json={"credit_limit": 100}, headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["entry"]["type"] == "credit_limit_change"
    assert r.json()["balance"]["credit_limit"] == 100
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 100}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["balance"]["available"] == -100
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 1}, headers=ADMIN)
    assert_problem(r, 402, "insufficient-balance")
    for bad in (-1, 1.0, "5", None):
        r = client.patch(f"/v1/accounts/{account}", json={"credit_limit": bad}, headers=ADMIN)
        assert_problem(r, 422, "validation-error")


def test_changing_the_credit_limit_needs_admin(client: TestClient) -> None:
    key = make_key(client, "consume", "purchase", "grant", "read", "audit")
    r = client.patch(f"/v1/accounts/{new_account()}", json={"credit_limit": 1}, headers=key)
    assert_problem(r, 403, "forbidden")


# Idempotency ------------------------------------------------------------------


def test_a_replayed_write_answers_the_original_status_and_body_without_a_new_entry(
    client: TestClient,
) -> None:
    account = new_account()
    purchase(client, account, 1000)
    headers = {**ADMIN, "Idempotency-Key": "req-1"}
    first = client.post(
        f"/v1/accounts/{account}/consumptions", json={"amount": 10}, headers=headers
    )
    assert first.status_code == 201
    assert first.json()["entry"]["idempotency_key"] == "req-1"
    again = client.post(
        f"/v1/accounts/{account}/consumptions", content=b'{ "amount" : 10 }', headers=headers
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert entry_count(client, account) == 2


def test_a_replayed_credit_limit_change_answers_200_again(client: TestClient) -> None:
    account = new_account()
    headers = {**ADMIN, "Idempotency-Key": "limit-1"}
    first = client.patch(f"/v1/accounts/{account}", json={"credit_limit": 5}, headers=headers)
    again = client.patch(f"/v1/accounts/{account}", json={"credit_limit": 5}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_a_key_reused_with_a_different_request_is_refused_with_422(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 1000)
    headers = {**ADMIN, "Idempotency-Key": "req-2"}
    assert (
        client.post(
            f"/v1/accounts/{account}/consumptions", json={"amount": 10}, headers=headers
        ).status_code
        == 201
    )
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 11}, headers=headers)
    assert_problem(r, 422, "idempotency-key-reused")
    r = client.post(f"/v1/accounts/{account}/holds", json={"amount": 10}, headers=headers)
    assert_problem(r, 422, "idempotency-key-reused")
    assert entry_count(client, account) == 2


def test_idempotency_keys_are_scoped_to_the_account(client: TestClient) -> None:
    headers = {**ADMIN, "Idempotency-Key": "same"}
    for account in (new_account(), new_account()):
        r = client.post(f"/v1/accounts/{account}/purchases", json={"amount": 5}, headers=headers)
        assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers


def test_a_refused_write_leaves_its_key_usable(client: TestClient) -> None:
    account = new_account()
    headers = {**ADMIN, "Idempotency-Key": "retry-me"}
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 10}, headers=headers)
    assert_problem(r, 402, "insufficient-balance")
    purchase(client, account, 100)
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 10}, headers=headers)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é"])
def test_an_idempotency_key_outside_1_to_255_printable_ascii_is_refused_with_422(
    client: TestClient,
    key: str,
) -> None:
    r = client.post(
        f"/v1/accounts/{new_account()}/purchases",
        json={"amount": 5},
        headers={**ADMIN, "Idempotency-Key": key.encode("utf-8")},
    )
    body = assert_problem(r, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_an_idempotency_key_of_255_printable_characters_is_accepted(client: TestClient) -> None:
    key = "".join(chr(0x20 + i % 95) for i in range(255))
    r = client.post(
        f"/v1/accounts/{new_account()}/purchases",
        json={"amount": 5},
        headers={**ADMIN, "Idempotency-Key": key},
    )
    assert r.status_code == 201


# Reads ----------------------------------------------------------------------


def test_the_balance_carries_its_position_as_etag_and_answers_304_when_unchanged(
    client: TestClient,
) -> None:
    account = new_account()
    position = purchase(client, account, 1000)["entry"]["position"]
    r = client.get(
        f"/v1/accounts/{account}/balance",
        params={"min_position": position, "wait": 5},
        headers=ADMIN,
    )
    assert r.status_code == 200
    assert r.headers["ETag"] == f'"{position}"'
    assert r.json()["position"] == position and r.json()["available"] == 1000
    r = client.get(
        f"/v1/accounts/{account}/balance", headers={**ADMIN, "If-None-Match": f'"{position}"'}
    )
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["ETag"] == f'"{position}"'
    r = client.get(f"/v1/accounts/{account}/balance", headers={**ADMIN, "If-None-Match": '"0"'})
    assert r.status_code == 200


def test_the_balance_of_an_account_without_entries_is_404(client: TestClient) -> None:
    r = client.get(f"/v1/accounts/{new_account()}/balance", headers=ADMIN)
    assert_problem(r, 404, "account-not-found")
    r = client.get(f"/v1/accounts/{new_account()}/entries", headers=ADMIN)
    assert_problem(r, 404, "account-not-found")


def test_a_balance_not_reaching_min_position_in_time_is_marked_stale(client: TestClient) -> None:
    account = new_account()
    position = purchase(client, account, 7)["entry"]["position"]
    balance(client, account, position)
    r = client.get(
        f"/v1/accounts/{account}/balance",
        params={"min_position": position + 10**9, "wait": 0.1},
        headers=ADMIN,
    )
    assert r.status_code == 200
    assert r.json()["stale"] is True and r.json()["available"] == 7


def test_a_wait_over_10_seconds_is_refused_with_422(client: TestClient) -> None:
    r = client.get(
        f"/v1/accounts/{new_account()}/balance",
        params={"min_position": 1, "wait": 11},
        headers=ADMIN,
    )
    assert_problem(r, 422, "validation-error")


def test_the_balance_as_of_a_version_or_a_time_is_rebuilt_from_the_entries(
    client: TestClient,
) -> None:
    account = new_account()
    first = purchase(client, account, 100)
    second = purchase(client, account, 50)
    r = client.get(f"/v1/accounts/{account}/balance", params={"as_of_version": 1}, headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["available"] == 100 and r.json()["version"] == 1
    assert r.json()["position"] == first["entry"]["position"]
    r = client.get(f"/v1/accounts/{account}/balance", params={"as_of_version": 3}, headers=ADMIN)
    assert r.status_code == 404
    r = client.get(
        f"/v1/accounts/{account}/balance",
        params={"as_of": second["entry"]["recorded_at"]},
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json()["available"] == 150
    r = client.get(
        f"/v1/accounts/{account}/balance", params={"as_of": "2000-01-01T00:00:00Z"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["version"] == 0
    for params in (
        {"as_of": "2000-01-01T00:00:00"},
        {"as_of": "yesterday"},
        {"as_of": "2000-01-01T00:00:00Z", "as_of_version": 1},
        {"as_of_version": -1},
    ):
        r = client.get(f"/v1/accounts/{account}/balance", params=params, headers=ADMIN)
        assert_problem(r, 422, "validation-error")


def test_entries_page_in_version_order_with_a_cursor(client: TestClient) -> None:
    account = new_account()
    for amount in (1, 2, 3):
        purchase(client, account, amount)
    r = client.get(f"/v1/accounts/{account}/entries", params={"limit": 2}, headers=ADMIN)
    assert r.status_code == 200
    page = r.json()
    assert [e["version"] for e in page["entries"]] == [1, 2]
    assert page["next_after_version"] == 2
    r = client.get(
        f"/v1/accounts/{account}/entries", params={"after_version": 2, "limit": 2}, headers=ADMIN
    )
    assert [e["amount"] for e in r.json()["entries"]] == [3]
    assert r.json()["next_after_version"] is None
    for params in ({"limit": 0}, {"limit": 1001}, {"after_version": -1}, {"limit": "x"}):
        r = client.get(f"/v1/accounts/{account}/entries", params=params, headers=ADMIN)
        assert_problem(r, 422, "validation-error")


def test_the_global_feed_needs_audit_and_pages_in_position_order(client: TestClient) -> None:
    account = new_account()
    start = purchase(client, account, 1)["entry"]["position"] - 1
    purchase(client, account, 2)
    auditor = make_key(client, "audit")
    r = client.get("/v1/entries", params={"after_position": start, "limit": 1}, headers=auditor)
    assert r.status_code == 200
    [entry] = r.json()["entries"]
    assert entry["position"] > start and entry["account_id"] == account
    assert r.json()["next_after_position"] == entry["position"]
    r = client.get("/v1/entries", headers=make_key(client, "read"))
    assert_problem(r, 403, "forbidden")


# Authentication and scopes --------------------------------------------------


def test_a_request_without_or_with_an_unknown_key_is_401_with_www_authenticate(
    client: TestClient,
) -> None:
    account = new_account()
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer a.b.c"},
    ):
        r = client.get(f"/v1/accounts/{account}/balance", headers=headers)
        assert_problem(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_credentials_are_checked_before_the_body(client: TestClient) -> None:
    r = client.post(f"/v1/accounts/{new_account()}/consumptions", content=b"{bad")
    assert_problem(r, 401, "unauthorized")
    key = make_key(client, "read")
    r = client.post(
        f"/v1/accounts/{new_account()}/consumptions", json={"amount": True}, headers=key
    )
    assert_problem(r, 403, "forbidden")


@pytest.mark.parametrize(
    ("scope", "path", "body"),
    [
        ("consume", "consumptions", {"amount": 1}),
        ("consume", "holds", {"amount": 1}),
        ("purchase", "purchases", {"amount": 1}),
        ("grant", "grants", {"amount": 1, "reason": "r"}),
        ("grant", "deductions", {"amount": 1, "reason": "r"}),
    ],
)
def test_each_write_needs_its_scope(
    client: TestClient, scope: str, path: str, body: dict[str, Any]
) -> None:
    account = new_account()
    purchase(client, account, 100)
    others = [s for s in ("consume", "purchase", "grant", "read", "audit") if s != scope]
    r = client.post(f"/v1/accounts/{account}/{path}", json=body, headers=make_key(client, *others))
    assert_problem(r, 403, "forbidden")
    r = client.post(f"/v1/accounts/{account}/{path}", json=body, headers=make_key(client, scope))
    assert r.status_code == 201, r.text
    assert r.json()["entry"]["actor"].startswith("k-")


def test_reads_need_the_read_scope(client: TestClient) -> None:
    account = new_account()
    position = purchase(client, account, 100)["entry"]["position"]
    writer = make_key(client, "consume", "purchase", "grant", "audit")
    reader = make_key(client, "read")
    for suffix in ("balance", "entries", "holds", "credits"):
        r = client.get(f"/v1/accounts/{account}/{suffix}", headers=writer)
        assert_problem(r, 403, "forbidden")
    balance(client, account, position, headers=reader)
    for suffix in ("entries", "holds", "credits"):
        assert client.get(f"/v1/accounts/{account}/{suffix}", headers=reader).status_code == 200


# API keys ---------------------------------------------------------------------


def test_an_api_key_is_shown_once_listed_without_secret_and_refused_once_revoked(
    client: TestClient,
) -> None:
    name = f"chat-service-{uuid.uuid4().hex[:6]}"
    r = client.post(
        "/v1/api-keys", json={"name": name, "scopes": ["consume", "read"]}, headers=ADMIN
    )
    assert r.status_code == 201
    created = r.json()
    assert set(created) == {"name", "scopes", "key", "created_at"}
    assert created["name"] == name and created["scopes"] == ["consume", "read"]
    assert created["created_at"].endswith("Z")
    key = {"Authorization": f"Bearer {created['key']}"}
    r = client.get("/v1/api-keys", headers=ADMIN)
    assert r.status_code == 200
    listed = {k["name"]: k for k in r.json()["api_keys"]}
    assert listed[name] == {
        "name": name,
        "scopes": ["consume", "read"],
        "created_at": created["created_at"],
    }
    assert created["key"] not in r.text
    account = new_account()
    purchase(client, account, 10)
    assert (
        client.post(
            f"/v1/accounts/{account}/consumptions", json={"amount": 1}, headers=key
        ).status_code
        == 201
    )
    r = client.delete(f"/v1/api-keys/{name}", headers=ADMIN)
    assert r.status_code == 204 and r.content == b""
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 1}, headers=key)
    assert_problem(r, 401, "unauthorized")
    assert_problem(client.delete(f"/v1/api-keys/{name}", headers=ADMIN), 404, "not-found")


def test_api_key_requests_are_validated(client: TestClient) -> None:
    name = f"dup-{uuid.uuid4().hex[:6]}"
    for body in (
        {"name": "x", "scopes": ["root"]},
        {"name": "has space", "scopes": ["read"]},
        {"name": "x" * 65, "scopes": ["read"]},
        {"name": "x", "scopes": "read"},
        {"name": "x"},
        {"scopes": ["read"]},
    ):
        assert_problem(
            client.post("/v1/api-keys", json=body, headers=ADMIN), 422, "validation-error"
        )
    assert (
        client.post(
            "/v1/api-keys", json={"name": name, "scopes": ["read"]}, headers=ADMIN
        ).status_code
        == 201
    )
    r = client.post("/v1/api-keys", json={"name": name, "scopes": ["read"]}, headers=ADMIN)
    assert r.status_code == 409


def test_api_key_management_needs_admin(client: TestClient) -> None:
    key = make_key(client, "consume", "purchase", "grant", "read", "audit")
    assert_problem(client.get("/v1/api-keys", headers=key), 403, "forbidden")
    r = client.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=key)
    assert_problem(r, 403, "forbidden")
    assert_problem(client.delete("/v1/api-keys/x", headers=key), 403, "forbidden")


def test_an_admin_key_created_through_the_api_can_do_everything(client: TestClient) -> None:
    admin = make_key(client, "admin")
    account = new_account()
    r = client.post(f"/v1/accounts/{account}/purchases", json={"amount": 5}, headers=admin)
    assert r.status_code == 201
    assert client.get("/v1/entries", headers=admin).status_code == 200
    assert client.get("/v1/api-keys", headers=admin).status_code == 200


# Stream tokens ------------------------------------------------------------------


def stream_token(
    client: TestClient, account: str, headers: dict[str, str] = ADMIN, **body: Any
) -> str:
    r = client.post(f"/v1/accounts/{account}/stream-tokens", json=body, headers=headers)
    assert r.status_code == 201, r.text
    data = r.json()
    assert set(data) == {"token", "account_id", "expires_at"}
    assert data["account_id"] == account and data["expires_at"].endswith("Z")
    token: str = data["token"]
    return token


def test_a_stream_token_reads_its_account_balance_and_entries(client: TestClient) -> None:
    account = new_account()
    position = purchase(client, account, 10)["entry"]["position"]
    token = stream_token(client, account, make_key(client, "read"), ttl_seconds=60)
    r = client.get(
        f"/v1/accounts/{account}/balance",
        params={"access_token": token, "min_position": position, "wait": 5},
    )
    assert r.status_code == 200 and r.json()["available"] == 10
    bearer = {"Authorization": f"Bearer {token}"}
    r = client.get(f"/v1/accounts/{account}/entries", headers=bearer)
    assert r.status_code == 200 and len(r.json()["entries"]) == 1


def test_a_stream_token_is_refused_anywhere_else_with_403(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 10)
    token = stream_token(client, account)
    bearer = {"Authorization": f"Bearer {token}"}
    other = new_account()
    purchase(client, other, 10)
    assert_problem(client.get(f"/v1/accounts/{other}/balance", headers=bearer), 403, "forbidden")
    assert_problem(
        client.get(f"/v1/accounts/{other}/entries", params={"access_token": token}),
        403,
        "forbidden",
    )
    for suffix in ("holds", "credits"):
        assert_problem(
            client.get(f"/v1/accounts/{account}/{suffix}", headers=bearer), 403, "forbidden"
        )
    r = client.get(f"/v1/accounts/{account}/balance", params={"as_of_version": 1}, headers=bearer)
    assert_problem(r, 403, "forbidden")
    r = client.post(f"/v1/accounts/{account}/consumptions", json={"amount": 1}, headers=bearer)
    assert_problem(r, 403, "forbidden")
    assert_problem(client.get("/v1/entries", headers=bearer), 403, "forbidden")
    assert_problem(client.get("/v1/api-keys", headers=bearer), 403, "forbidden")
    r = client.post(f"/v1/accounts/{account}/stream-tokens", json={}, headers=bearer)
    assert_problem(r, 403, "forbidden")


def test_a_stream_token_needs_the_read_scope_and_a_ttl_up_to_a_day(client: TestClient) -> None:
    account = new_account()
    r = client.post(
        f"/v1/accounts/{account}/stream-tokens", json={}, headers=make_key(client, "consume")
    )
    assert_problem(r, 403, "forbidden")
    for ttl in (0, 86401, 1.0, "60"):
        r = client.post(
            f"/v1/accounts/{account}/stream-tokens", json={"ttl_seconds": ttl}, headers=ADMIN
        )
        assert_problem(r, 422, "validation-error")
    stream_token(client, account, ttl_seconds=86400)


def test_a_tampered_stream_token_or_one_of_a_revoked_key_is_401(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 10)
    name = f"issuer-{uuid.uuid4().hex[:6]}"
    key = client.post(
        "/v1/api-keys", json={"name": name, "scopes": ["read"]}, headers=ADMIN
    ).json()["key"]
    token = stream_token(client, account, {"Authorization": f"Bearer {key}"})
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    r = client.get(f"/v1/accounts/{account}/entries", params={"access_token": tampered})
    assert_problem(r, 401, "unauthorized")
    assert (
        client.get(f"/v1/accounts/{account}/entries", params={"access_token": token}).status_code
        == 200
    )
    assert client.delete(f"/v1/api-keys/{name}", headers=ADMIN).status_code == 204
    r = client.get(f"/v1/accounts/{account}/entries", params={"access_token": token})
    assert_problem(r, 401, "unauthorized")


def test_an_api_key_in_the_url_is_not_accepted(client: TestClient) -> None:
    r = client.get(
        f"/v1/accounts/{new_account()}/entries", params={"access_token": "test-admin-key"}
    )
    assert_problem(r, 401, "unauthorized")


# No 5xx from bad input --------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "as_of=9999-12-31T23:59:59-01:00",
        "as_of=0001-01-01T00:00:00%2B01:00",
        "as_of=2026-02-30T00:00:00Z",
        "as_of_version=99999999999999999999999",
        "min_position=99999999999999999999999",
        "wait=nan",
        "wait=-1",
    ],
)
def test_out_of_range_balance_queries_are_refused_with_422(client: TestClient, query: str) -> None:
    account = new_account()
    purchase(client, account, 5)
    r = client.get(f"/v1/accounts/{account}/balance?{query}", headers=ADMIN)
    assert_problem(r, 422, "validation-error")


def test_the_largest_cursors_answer_empty_pages(client: TestClient) -> None:
    account = new_account()
    purchase(client, account, 5)
    big = 2**63 - 1
    r = client.get(f"/v1/accounts/{account}/entries", params={"after_version": big}, headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"entries": [], "next_after_version": None}
    r = client.get("/v1/entries", params={"after_position": big}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["entries"] == []
    for params in ({"after_position": big + 1}, {"after_position": 10**30}):
        assert_problem(
            client.get("/v1/entries", params=params, headers=ADMIN), 422, "validation-error"
        )
    r = client.get(
        f"/v1/accounts/{account}/entries", params={"after_version": 10**30}, headers=ADMIN
    )
    assert_problem(r, 422, "validation-error")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"amount": 5, "metadata": {"x": 1e400}}', 422),
        (b'{"amount": 1e400}', 422),
        (b'{"amount": 5, "operation": "\\ud800"}', 400),
        (b'{"amount": 5, "metadata": {"\\udfff": 1}}', 400),
        (b'{"amount": 5, "expires_at": "9999-12-31T23:59:59-01:00"}', 422),
        (b'{"amount": 5, "metadata": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}", 400),
        (b'{"amount": 1' + b"0" * 5000 + b"}", 400),
    ],
)
def test_hostile_bodies_are_refused_without_a_5xx(
    client: TestClient, raw: bytes, status: int
) -> None:
    account = new_account()
    r = client.post(
        f"/v1/accounts/{account}/consumptions",
        content=raw,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)


def test_odd_but_valid_metadata_round_trips(client: TestClient) -> None:
    metadata = {"nul": "\u0000", "big": 10**30, "deep": [[[[1]]]], "emoji": "🪙", "f": 0.5}
    r = client.post(
        f"/v1/accounts/{new_account()}/purchases",
        json={"amount": 5, "metadata": metadata},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert r.json()["entry"]["metadata"] == metadata


def test_a_write_past_2_to_the_53_is_refused_and_the_projection_keeps_up(
    client: TestClient,
) -> None:
    account = new_account()
    for _ in range(9):
        last = purchase(client, account, 10**15)
    r = client.post(f"/v1/accounts/{account}/purchases", json={"amount": 10**15}, headers=ADMIN)
    assert_problem(r, 422, "balance-limit-exceeded")
    entries = client.get(f"/v1/accounts/{account}/entries", headers=ADMIN).json()["entries"]
    assert len(entries) == 9
    projected = balance(client, account, last["entry"]["position"])
    assert projected["available"] == 9 * 10**15 == projected["purchased"]
    assert projected.get("stale") is None


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Last-Event-ID": str(2**63)}, {}),
        ({}, {"last_event_id": 2**63}),
        ({"Last-Event-ID": "x"}, {}),
    ],
)
def test_an_out_of_range_last_event_id_is_refused_before_the_stream_starts(
    client: TestClient, headers: dict[str, str], params: dict[str, int]
) -> None:
    r = client.get(
        f"/v1/accounts/{new_account()}/entries/stream",
        headers={**ADMIN, **headers},
        params=params,
    )
    assert_problem(r, 422, "validation-error")
