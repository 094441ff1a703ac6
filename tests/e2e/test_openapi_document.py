"""The OpenAPI document (``/openapi.json``) says what each route answers: the
statuses, media types, headers and shapes the fuzzer (``tests/fuzz``) holds
the app to. Regression tests for what fuzzing found wrong in it, and for the
405 ``Allow`` header."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.app import create_app
from service.config import Settings
from service.domain.values import ACCOUNT_ID_PATTERN
from tests.helpers.servers import running_app
from tests.helpers.sse import StreamReader

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer test-admin-key"}
PROBLEM = "application/problem+json"

# (method, path) -> every status it can answer (success included).
STATUSES: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/webhooks/stripe"): {200, 400, 404, 413, 422, 503},
    ("post", "/v1/webhook-endpoints"): {201, 400, 401, 403, 413, 422, 503},
    ("get", "/v1/webhook-endpoints"): {200, 401, 403, 503},
    ("delete", "/v1/webhook-endpoints/{id}"): {204, 401, 403, 404, 503},
    ("get", "/v1/webhook-endpoints/{id}/deliveries"): {200, 401, 403, 404, 422, 503},
    ("post", "/v1/accounts/{account_id}/purchases"): {201, 400, 401, 403, 409, 413, 422, 503},
    ("post", "/v1/accounts/{account_id}/grants"): {201, 400, 401, 403, 409, 413, 422, 503},
    ("post", "/v1/accounts/{account_id}/consumptions"): {
        201, 400, 401, 402, 403, 409, 413, 422, 503,
    },
    ("post", "/v1/accounts/{account_id}/deductions"): {
        201, 400, 401, 402, 403, 409, 413, 422, 503,
    },
    ("post", "/v1/accounts/{account_id}/consumptions/{entry_id}/refunds"): {
        201, 400, 401, 403, 404, 409, 413, 422, 503,
    },
    ("post", "/v1/accounts/{account_id}/holds"): {201, 400, 401, 402, 403, 409, 413, 422, 503},
    ("post", "/v1/accounts/{account_id}/holds/{hold_id}/capture"): {
        201, 400, 401, 403, 404, 409, 413, 422, 503,
    },
    ("post", "/v1/accounts/{account_id}/holds/{hold_id}/release"): {
        201, 400, 401, 403, 404, 409, 413, 422, 503,
    },
    ("patch", "/v1/accounts/{account_id}"): {200, 400, 401, 403, 409, 413, 422, 503},
    ("post", "/v1/batch"): {200, 400, 401, 413, 422, 503},
    ("get", "/v1/accounts/{account_id}/balance"): {200, 304, 401, 403, 404, 422, 503},
    ("get", "/v1/accounts/{account_id}/statement"): {200, 401, 403, 404, 422, 503},
    ("get", "/v1/accounts/{account_id}/entries"): {200, 401, 403, 404, 422, 503},
    ("get", "/v1/accounts/{account_id}/holds"): {200, 401, 403, 404, 422, 503},
    ("get", "/v1/accounts/{account_id}/credits"): {200, 401, 403, 404, 422, 503},
    ("get", "/v1/entries"): {200, 401, 403, 422, 503},
    ("get", "/v1/api-keys"): {200, 401, 403, 503},
    ("post", "/v1/api-keys"): {201, 400, 401, 403, 409, 413, 422, 503},
    ("delete", "/v1/api-keys/{name}"): {204, 401, 403, 404, 409, 503},
    ("post", "/v1/accounts/{account_id}/stream-tokens"): {201, 400, 401, 403, 413, 422, 503},
    ("get", "/v1/accounts/{account_id}/balance/stream"): {200, 401, 403, 422, 503},
    ("get", "/v1/accounts/{account_id}/entries/stream"): {200, 401, 403, 422, 503},
    ("get", "/v1/balances/stream"): {200, 401, 403, 422, 503},
    ("get", "/healthz"): {200},
    ("get", "/readyz"): {200, 503},
    ("get", "/metrics"): {200},
}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path = tmp_path_factory.mktemp("ledger") / "l.db"
    settings = Settings(database_url=f"sqlite:///{path}", admin_api_key=SecretStr("test-admin-key"))
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    document: dict[str, Any] = r.json()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(spec).validate()


def test_each_route_documents_exactly_the_statuses_it_can_answer(spec: dict[str, Any]) -> None:
    documented = {
        (method, path): {int(status) for status in operation["responses"]}
        for method, path, operation in operations(spec)
    }
    assert documented == STATUSES


def test_every_reference_in_the_document_names_one_of_its_components(
    spec: dict[str, Any],
) -> None:
    components = set(spec["components"]["schemas"])
    for reference in references(spec):
        assert reference.startswith("#/components/schemas/"), reference
        assert reference.removeprefix("#/components/schemas/") in components, reference


def test_every_error_answer_is_documented_as_problem_json_with_the_problem_shape(
    spec: dict[str, Any],
) -> None:
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            assert set(response["content"]) == {PROBLEM}, (method, path, status)
            schema = response["content"][PROBLEM]["schema"]
            assert {"type", "title", "status", "detail", "code"} <= set(schema["required"])


def test_503_and_401_document_their_retry_after_and_www_authenticate_headers(
    spec: dict[str, Any],
) -> None:
    for _, _, operation in operations(spec):
        responses = operation["responses"]
        if "503" in responses:
            assert responses["503"]["headers"]["Retry-After"]["required"] is True
        if "401" in responses:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_every_account_id_path_parameter_carries_the_account_id_pattern(
    spec: dict[str, Any],
) -> None:
    seen = 0
    for method, path, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] == "account_id":
                seen += 1
                assert parameter["schema"]["pattern"] == ACCOUNT_ID_PATTERN.pattern, (method, path)
    assert seen == sum(1 for _, path, _ in operations(spec) if "{account_id}" in path)


def test_the_streams_are_documented_as_server_sent_events_of_balances_and_entries(
    spec: dict[str, Any],
) -> None:
    expected = {
        "/v1/accounts/{account_id}/balance/stream": ("balance", "BalancePublic"),
        "/v1/accounts/{account_id}/entries/stream": ("entry", "EntryPublic"),
        "/v1/balances/stream": ("balance", "BalancePublic"),
    }
    for path, (event, model) in expected.items():
        operation = spec["paths"][path]["get"]
        content = operation["responses"]["200"]["content"]
        assert set(content) == {"text/event-stream"}
        item = content["text/event-stream"]["schema"]  # one event
        assert item["properties"]["event"] == {"const": event}
        data = item["properties"]["data"]
        assert data["contentSchema"] == {"$ref": f"#/components/schemas/{model}"}
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "Last-Event-ID" in headers


def test_the_batch_body_constrains_only_its_envelope_as_a_malformed_operation_is_a_result(
    client: TestClient, spec: dict[str, Any]
) -> None:
    schema = spec["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]
    operations_schema = schema["schema"]["properties"]["operations"]
    assert (operations_schema["minItems"], operations_schema["maxItems"]) == (1, 1000)
    item = operations_schema["items"]
    assert item["type"] == "object" and "required" not in item
    assert all(set(p) == {"description"} for p in item["properties"].values())
    r = client.post("/v1/batch", json={"operations": [{"op": "hold"}]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert (result["status"], result["problem"]["code"]) == (422, "validation-error")


def test_revoking_a_key_names_it_by_path_and_documents_no_fastapi_422(
    client: TestClient, spec: dict[str, Any]
) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    name = f"k-{uuid.uuid4().hex[:10]}"
    r = client.post("/v1/api-keys", json={"name": name, "scopes": ["read"]}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert client.delete(f"/v1/api-keys/{name}", headers=ADMIN).status_code == 204
    assert client.delete(f"/v1/api-keys/{name}", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/api-keys", {"GET", "POST"}),
        ("PUT", "/v1/api-keys", {"GET", "POST"}),
        ("OPTIONS", "/v1/accounts/user-1/holds", {"GET", "POST"}),
        ("DELETE", "/v1/accounts/user-1/balance", {"GET"}),
        ("GET", "/v1/accounts/user-1/purchases", {"POST"}),
    ],
)
def test_a_405_lists_in_allow_every_method_its_path_takes(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    r = client.request(method, path, headers=ADMIN)
    assert r.status_code == 405
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "method-not-allowed"
    assert {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"} == allowed


def test_as_of_is_documented_as_a_date_time_and_takes_any_rfc_3339_fraction(
    client: TestClient, spec: dict[str, Any]
) -> None:
    parameters = spec["paths"]["/v1/accounts/{account_id}/balance"]["get"]["parameters"]
    [as_of] = [p for p in parameters if p["name"] == "as_of"]
    assert as_of["schema"]["format"] == "date-time"
    account = f"user-{uuid.uuid4().hex[:12]}"
    r = client.post(f"/v1/accounts/{account}/purchases", json={"amount": 5}, headers=ADMIN)
    assert r.status_code == 201, r.text
    for moment in ("2999-01-01T00:00:00.1234567890Z", "2999-01-01 00:00:00Z"):
        r = client.get(f"/v1/accounts/{account}/balance", params={"as_of": moment}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["available"] == 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running app (streams need a real server: a test client reads to the end)."""
    path = tmp_path_factory.mktemp("ledger") / "l.db"
    settings = Settings(
        database_url=f"sqlite:///{path}",
        admin_api_key=SecretStr("test-admin-key"),
        sse_ping_seconds=1,
    )
    with running_app(settings) as url:
        yield url


@pytest.mark.parametrize("value", ["+5", "1_0", "-0", "5.0", "\u00b2"])
def test_a_last_event_id_that_is_not_decimal_digits_is_refused_before_the_stream_starts(
    server: str, value: str
) -> None:
    headers = {k.encode(): v.encode() for k, v in ADMIN.items()}
    headers[b"Last-Event-ID"] = value.encode("latin-1")
    url = f"{server}/v1/accounts/user-1/balance/stream"
    with httpx.stream("GET", url, headers=headers, timeout=10) as r:
        assert r.status_code == 422
        r.read()
    assert r.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


def test_an_empty_last_event_id_is_as_if_absent(server: str) -> None:
    url = f"{server}/v1/accounts/user-1/balance/stream"
    stream = StreamReader(url, {**ADMIN, "Last-Event-ID": ""})
    try:
        assert stream.status == 200
        assert stream.next_data().json()["version"] == 0  # the snapshot: not resuming
    finally:
        stream.close()
