"""``POST /v1/webhooks/stripe`` over HTTP (contract v1.1, "In: payments from
Stripe"): statuses, problem codes and what is recorded.

One app per module and backend (SQLite; PostgreSQL with Redis), with a Stripe
webhook secret; every test uses its own accounts and event ids. Events are
signed as Stripe signs them: ``Stripe-Signature: t=<unix>,v1=<hex>``, the hex
HMAC-SHA256 of ``"<t>.<body>"`` keyed with the secret
(https://docs.stripe.com/webhooks#verify-manually). Whether anything was
recorded is read from the account's entries (the event store itself).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.app import create_app
from service.config import Settings
from tests.helpers.apps import app_client

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer test-admin-key"}
PROBLEM = "application/problem+json"
SECRET = "whsec_" + secrets.token_hex(24)
ROUTE = "/v1/webhooks/stripe"


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)],
)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("ledger")
    with app_client(
        request.param,
        folder,
        schema="ledger",
        admin_api_key=SecretStr("test-admin-key"),
        stripe_webhook_secret=SecretStr(SECRET),
    ) as c:
        yield c


# Helpers --------------------------------------------------------------------


def new_account() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def signature(payload: bytes, timestamp: int | None = None, secret: str = SECRET) -> str:
    """The hex ``v1`` signature Stripe computes for ``payload`` at ``timestamp``."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def stripe_header(payload: bytes, timestamp: int | None = None, secret: str = SECRET) -> str:
    """``Stripe-Signature`` as Stripe sends it: ``t=<unix>,v1=<hex>``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(payload, t, secret)}"


def session(
    account: str | None,
    tokens: Any = "5000",
    *,
    payment_status: str = "paid",
    payment_intent: str | None = "pi_3Qx",
    metadata_account: str | None = None,
) -> dict[str, Any]:
    """A checkout session as Stripe sends it (the fields the ledger reads,
    and some it does not)."""
    metadata: dict[str, Any] = {}
    if tokens is not None:
        metadata["tokens"] = tokens
    if metadata_account is not None:
        metadata["account_id"] = metadata_account
    return {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "amount_total": 1999,
        "currency": "usd",
        "client_reference_id": account,
        "customer": "cus_123",
        "metadata": metadata,
        "mode": "payment",
        "payment_intent": payment_intent,
        "payment_status": payment_status,
        "status": "complete",
    }


def event(
    data_object: dict[str, Any],
    event_type: str = "checkout.session.completed",
    event_id: str | None = None,
) -> bytes:
    """A Stripe event's body, as sent: its exact bytes are what is signed."""
    body = {
        "id": event_id or new_event_id(),
        "object": "event",
        "api_version": "2025-06-30.basil",
        "created": int(time.time()),
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(body, indent=2).encode()


def deliver(client: TestClient, payload: bytes, header: str | None = "sign") -> httpx.Response:
    """POSTs ``payload`` as Stripe does; ``header="sign"`` signs it now."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if header == "sign":
        headers["Stripe-Signature"] = stripe_header(payload)
    elif header is not None:
        headers["Stripe-Signature"] = header
    response: httpx.Response = client.post(ROUTE, content=payload, headers=headers)
    return response


def assert_received(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"received": True}


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    assert body["title"] and "detail" in body
    return body


def entries(client: TestClient, account: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/accounts/{account}/entries", params={"limit": 1000}, headers=ADMIN)
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["entries"]
    return found


def balance(client: TestClient, account: str, position: int) -> dict[str, Any]:
    r = client.get(
        f"/v1/accounts/{account}/balance",
        params={"min_position": position, "wait": 5},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert "stale" not in body
    return body


# Purchases ------------------------------------------------------------------


def test_a_paid_completed_checkout_session_credits_its_tokens_and_answers_received(
    client: TestClient,
) -> None:
    account = new_account()
    event_id = new_event_id()
    assert_received(deliver(client, event(session(account, "5000"), event_id=event_id)))
    [entry] = entries(client, account)
    assert entry["type"] == "purchase"
    assert entry["amount"] == 5000
    assert entry["delta_available"] == 5000
    assert entry["actor"] == "stripe"
    assert entry["idempotency_key"] == f"stripe:{event_id}"
    assert entry["payment_reference"] == "pi_3Qx"
    assert entry["metadata"] == {}
    assert balance(client, account, entry["position"])["available"] == 5000


def test_a_redelivered_event_records_nothing_new(client: TestClient) -> None:
    account = new_account()
    event_id = new_event_id()
    payload = event(session(account, "700", payment_intent="pi_redelivered"), event_id=event_id)
    assert_received(deliver(client, payload))
    time.sleep(1.1)  # Stripe redelivers later, signed anew
    assert_received(deliver(client, payload))
    assert_received(deliver(client, payload))
    [entry] = entries(client, account)
    assert (entry["idempotency_key"], entry["actor"]) == (f"stripe:{event_id}", "stripe")
    assert entry["payment_reference"] == "pi_redelivered"
    current = balance(client, account, entry["position"])
    assert (current["available"], current["purchased"], current["version"]) == (700, 700, 1)


def test_an_async_payment_succeeded_event_credits_the_session_tokens(client: TestClient) -> None:
    account = new_account()
    data = session(account, "1200", payment_status="paid", payment_intent="pi_async")
    assert_received(deliver(client, event(data, "checkout.session.async_payment_succeeded")))
    [entry] = entries(client, account)
    assert (entry["type"], entry["amount"], entry["payment_reference"]) == (
        "purchase",
        1200,
        "pi_async",
    )


def test_an_unpaid_completion_then_its_async_success_credits_once(client: TestClient) -> None:
    account = new_account()
    data = session(account, "300", payment_status="unpaid")
    assert_received(deliver(client, event(data, "checkout.session.completed")))
    assert entries(client, account) == []
    paid = {**data, "payment_status": "paid"}
    assert_received(deliver(client, event(paid, "checkout.session.async_payment_succeeded")))
    assert [e["amount"] for e in entries(client, account)] == [300]


def test_metadata_account_id_names_the_account_when_client_reference_id_is_absent(
    client: TestClient,
) -> None:
    account = new_account()
    data = session(None, "42", metadata_account=account)
    del data["client_reference_id"]
    assert_received(deliver(client, event(data)))
    assert [(e["amount"], e["actor"]) for e in entries(client, account)] == [(42, "stripe")]


def test_client_reference_id_wins_over_metadata_account_id(client: TestClient) -> None:
    account, other = new_account(), new_account()
    assert_received(deliver(client, event(session(account, "9", metadata_account=other))))
    assert [e["amount"] for e in entries(client, account)] == [9]
    assert entries(client, other) == []


def test_the_session_id_is_the_payment_reference_when_it_has_no_payment_intent(
    client: TestClient,
) -> None:
    account = new_account()
    data = session(account, "10", payment_intent=None)
    assert_received(deliver(client, event(data)))
    [entry] = entries(client, account)
    assert entry["payment_reference"] == data["id"]


def test_an_event_and_the_equal_purchase_under_its_key_replay_each_other(
    client: TestClient,
) -> None:
    account = new_account()
    event_id = new_event_id()
    assert_received(deliver(client, event(session(account, "50"), event_id=event_id)))
    r = client.post(
        f"/v1/accounts/{account}/purchases",
        json={"amount": 50, "payment_reference": "pi_3Qx"},
        headers={**ADMIN, "Idempotency-Key": f"stripe:{event_id}"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["idempotent-replayed"] == "true"
    assert r.json()["entry"]["actor"] == "stripe"
    assert len(entries(client, account)) == 1


# Acknowledged, nothing recorded ---------------------------------------------


@pytest.mark.parametrize("payment_status", ["unpaid", "no_payment_required"])
def test_a_completed_session_not_paid_answers_received_and_records_nothing(
    client: TestClient, payment_status: str
) -> None:
    account = new_account()
    assert_received(deliver(client, event(session(account, payment_status=payment_status))))
    assert entries(client, account) == []


@pytest.mark.parametrize(
    "event_type",
    [
        "payment_intent.succeeded",
        "checkout.session.expired",
        "checkout.session.async_payment_failed",
    ],
)
def test_an_event_type_the_ledger_ignores_answers_received_and_records_nothing(
    client: TestClient, event_type: str
) -> None:
    account = new_account()
    assert_received(deliver(client, event(session(account), event_type)))
    assert entries(client, account) == []


# Refused: 400 ---------------------------------------------------------------


def test_a_signature_made_with_another_secret_is_a_400_and_records_nothing(
    client: TestClient,
) -> None:
    account = new_account()
    payload = event(session(account))
    header = stripe_header(payload, secret="whsec_" + secrets.token_hex(24))
    assert_problem(deliver(client, payload, header), 400, "malformed-request")
    assert entries(client, account) == []


def test_a_signature_of_another_body_is_a_400_and_records_nothing(client: TestClient) -> None:
    account = new_account()
    payload = event(session(account, "5000"))
    tampered = payload.replace(b'"5000"', b'"9999"')
    assert tampered != payload
    assert_problem(deliver(client, tampered, stripe_header(payload)), 400, "malformed-request")
    assert entries(client, account) == []


def test_a_signature_older_than_300_seconds_is_a_400_and_records_nothing(
    client: TestClient,
) -> None:
    account = new_account()
    payload = event(session(account))
    header = stripe_header(payload, int(time.time()) - 301)
    body = assert_problem(deliver(client, payload, header), 400, "malformed-request")
    assert "tolerance" in body["detail"]
    assert entries(client, account) == []


def test_a_signature_a_little_under_300_seconds_old_is_accepted(client: TestClient) -> None:
    account = new_account()
    payload = event(session(account, "3"))
    assert_received(deliver(client, payload, stripe_header(payload, int(time.time()) - 290)))
    assert [e["amount"] for e in entries(client, account)] == [3]


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "t=1700000000"])
def test_a_missing_or_unreadable_signature_header_is_a_400_and_records_nothing(
    client: TestClient, header: str | None
) -> None:
    account = new_account()
    assert_problem(deliver(client, event(session(account)), header), 400, "malformed-request")
    assert entries(client, account) == []


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"", b"[]", b'"evt"', b"{}", b'{"id": "evt_1"}', b'{"type": "x"}', b"\xff\xfe"],
)
def test_a_signed_body_that_is_not_a_stripe_event_is_a_400(
    client: TestClient, payload: bytes
) -> None:
    if payload == b"\xff\xfe":  # not UTF-8: sign the bytes anyway
        header = f"t={int(time.time())},v1={signature(payload)}"
    else:
        header = stripe_header(payload)
    assert_problem(deliver(client, payload, header), 400, "malformed-request")


def test_a_paid_session_event_without_its_session_is_a_400(client: TestClient) -> None:
    payload = json.dumps(
        {"id": new_event_id(), "type": "checkout.session.completed", "data": {}}
    ).encode()
    assert_problem(deliver(client, payload), 400, "malformed-request")


def test_a_header_with_two_v1_signatures_is_accepted_when_the_second_matches(
    client: TestClient,
) -> None:
    account = new_account()
    payload = event(session(account, "77"))
    t = int(time.time())
    old = signature(payload, t, "whsec_" + secrets.token_hex(24))
    header = f"t={t},v1={old},v1={signature(payload, t)},v0={'0' * 64}"
    assert_received(deliver(client, payload, header))
    assert [e["amount"] for e in entries(client, account)] == [77]


# Refused: 422 ---------------------------------------------------------------


def test_a_paid_session_without_an_account_id_is_a_422(client: TestClient) -> None:
    data = session(None)
    body = assert_problem(deliver(client, event(data)), 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "data", "object", "client_reference_id"]


@pytest.mark.parametrize("account", ["", "-starts-with-dash", "has space", "x" * 129, "ünï"])
def test_a_paid_session_with_an_invalid_account_id_is_a_422(
    client: TestClient, account: str
) -> None:
    body = assert_problem(deliver(client, event(session(account))), 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "data", "object", "client_reference_id"]


def test_an_invalid_metadata_account_id_is_a_422(client: TestClient) -> None:
    data = session(None, metadata_account="no/slashes")
    body = assert_problem(deliver(client, event(data)), 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "data", "object", "metadata", "account_id"]


@pytest.mark.parametrize(
    "tokens",
    [
        None,
        "",
        "0",
        "-5",
        "abc",
        "12.5",
        "1e3",
        " 5",
        "+5",
        "5_000",
        "²",
        "1000000000000001",
        0,
        2.0,
    ],
)
def test_a_paid_session_without_a_positive_integer_of_tokens_is_a_422_and_records_nothing(
    client: TestClient, tokens: Any
) -> None:
    account = new_account()
    body = assert_problem(deliver(client, event(session(account, tokens))), 422, "validation-error")
    assert body["errors"] == [
        {"loc": ["body", "data", "object", "metadata", "tokens"], "msg": body["errors"][0]["msg"]}
    ]
    assert entries(client, account) == []


def test_the_largest_amount_of_tokens_is_accepted(client: TestClient) -> None:
    account = new_account()
    assert_received(deliver(client, event(session(account, str(10**15)))))
    assert [e["amount"] for e in entries(client, account)] == [10**15]


def test_a_paid_session_without_account_and_tokens_names_both_errors(client: TestClient) -> None:
    body = assert_problem(deliver(client, event(session(None, None))), 422, "validation-error")
    assert [e["loc"][-1] for e in body["errors"]] == ["client_reference_id", "tokens"]


def test_a_refused_event_retried_once_fixed_is_recorded(client: TestClient) -> None:
    """Stripe retries a 422; a new event of the fixed session then records it."""
    account = new_account()
    assert_problem(deliver(client, event(session(account, "zero"))), 422, "validation-error")
    assert_received(deliver(client, event(session(account, "8"))))
    assert [e["amount"] for e in entries(client, account)] == [8]


def test_a_ledger_refusal_answers_as_the_purchase_would(client: TestClient) -> None:
    account = new_account()
    event_id = new_event_id()
    r = client.post(
        f"/v1/accounts/{account}/purchases",
        json={"amount": 1},
        headers={**ADMIN, "Idempotency-Key": f"stripe:{event_id}"},
    )
    assert r.status_code == 201, r.text
    r = deliver(client, event(session(account, "5"), event_id=event_id))
    assert_problem(r, 422, "idempotency-key-reused")
    assert len(entries(client, account)) == 1


# Method and documentation ---------------------------------------------------


def test_a_get_is_a_405_that_allows_post(client: TestClient) -> None:
    r = client.get(ROUTE)
    assert_problem(r, 405, "method-not-allowed")
    assert "POST" in r.headers["allow"]


def test_the_route_is_documented_with_its_signature_header_and_answers(
    client: TestClient,
) -> None:
    operation = client.get("/openapi.json").json()["paths"][ROUTE]["post"]
    assert {int(s) for s in operation["responses"]} == {200, 400, 404, 413, 422, 503}
    assert "security" not in operation
    [header] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Stripe-Signature"


# Off ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[None, ""], ids=["unset", "empty"])
def client_without_secret(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    path = tmp_path_factory.mktemp("ledger") / "l.db"
    secret = None if request.param is None else SecretStr(request.param)
    settings = Settings(
        database_url=f"sqlite:///{path}",
        admin_api_key=SecretStr("test-admin-key"),
        stripe_webhook_secret=secret,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_the_route_is_a_404_like_any_unknown_route_when_the_secret_is_unset(
    client_without_secret: TestClient,
) -> None:
    account = new_account()
    payload = event(session(account))
    r = deliver(client_without_secret, payload)
    body = assert_problem(r, 404, "not-found")
    assert body == client_without_secret.post("/v1/webhooks/nothing-here").json()
    assert entries(client_without_secret, account) == []
