"""Webhooks out over HTTP (contract v1.1, "Out: balance alerts and entries,
signed"): endpoints, the exact alerts of a scripted balance path, Standard
Webhooks signatures checked with the ``standardwebhooks`` library, retries with
the same ``webhook-id``, delivery after a restart, and refused URLs.

Each test runs its own app on SQLite or PostgreSQL + Redis, with insecure URLs
allowed (the receiver listens on 127.0.0.1) and short retry delays.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from standardwebhooks import Webhook

from service.api.app import create_app
from service.config import Settings
from tests.helpers.receiver import Call, webhook_receiver
from tests.helpers.servers import fresh_postgres_database, fresh_redis_database

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer test-admin-key"}
ALERTS = ["balance.low", "balance.depleted", "balance.recovered"]
AppFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def app_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppFactory]:
    """Opens apps on one database (the same for every app of the test)."""

    def settings(url: str, **extra: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": url,
            "admin_api_key": SecretStr("test-admin-key"),
            "webhook_allow_insecure": True,
            "webhook_retry_seconds": "0.2,0.2",
            **extra,
        }
        return Settings(**values)

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"

        @contextmanager
        def sqlite_app(**extra: Any) -> Iterator[TestClient]:
            with TestClient(create_app(settings(url, **extra))) as client:
                yield client

        yield sqlite_app
        return
    with fresh_postgres_database() as pg_url, fresh_redis_database() as redis_url:

        @contextmanager
        def postgres_app(**extra: Any) -> Iterator[TestClient]:
            app = create_app(settings(pg_url, redis_url=redis_url, **extra))
            with TestClient(app) as client:
                yield client

        yield postgres_app


def _endpoint(client: TestClient, url: str, events: list[str], **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/webhook-endpoints", json={"url": url, "events": events, **fields}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _write(client: TestClient, account: str, kind: str, amount: int) -> dict[str, Any]:
    response = client.post(f"/v1/accounts/{account}/{kind}", json={"amount": amount}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _verified(secret: str, call: Call) -> dict[str, Any]:
    """The call's body, once ``standardwebhooks`` accepted its signature."""
    payload: dict[str, Any] = Webhook(secret).verify(call.body, call.headers)
    return payload


def _deliveries(client: TestClient, endpoint_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=ADMIN)
    assert response.status_code == 200, response.text
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


def _wait_for_status(client: TestClient, endpoint_id: str, status: str, count: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if sum(d["status"] == status for d in _deliveries(client, endpoint_id)) >= count:
            return
        time.sleep(0.05)  # polls the deliveries list itself
    raise AssertionError(f"not {count} {status}: {_deliveries(client, endpoint_id)}")


def test_an_endpoint_is_created_with_its_secret_shown_once_listed_and_deleted(
    app_factory: AppFactory,
) -> None:
    with app_factory() as client:
        created = _endpoint(
            client, "https://hooks.example.com/x", ALERTS, low_balance_threshold=100
        )
        assert created["secret"].startswith("whsec_")
        assert len(created["secret"]) >= 6 + 32
        assert created["events"] == ALERTS and created["low_balance_threshold"] == 100
        listed = client.get("/v1/webhook-endpoints", headers=ADMIN).json()["endpoints"]
        assert [e["id"] for e in listed] == [created["id"]]
        assert "secret" not in listed[0]
        assert (
            client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=ADMIN).status_code
            == 204
        )
        again = client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=ADMIN)
        assert (again.status_code, again.json()["code"]) == (404, "not-found")
        assert client.get("/v1/webhook-endpoints", headers=ADMIN).json() == {"endpoints": []}


def test_unknown_types_and_low_alerts_without_a_threshold_are_refused(
    app_factory: AppFactory,
) -> None:
    with app_factory() as client:
        for body in (
            {"url": "https://hooks.example.com/x", "events": ["balance.sideways"]},
            {"url": "https://hooks.example.com/x", "events": ["balance.low"]},
            {"url": "https://hooks.example.com/x", "events": []},
        ):
            response = client.post("/v1/webhook-endpoints", json=body, headers=ADMIN)
            assert (response.status_code, response.json()["code"]) == (422, "validation-error")
        assert (
            client.post(
                "/v1/webhook-endpoints", json={"url": "x", "events": ["entry.created"]}
            ).status_code
            == 401
        )


def test_private_and_plain_http_urls_are_refused_unless_insecure_is_allowed(
    app_factory: AppFactory,
) -> None:
    with app_factory(webhook_allow_insecure=False) as client:
        for url in (
            "http://hooks.example.com/x",
            "https://localhost/x",
            "https://127.0.0.1/x",
            "https://10.0.0.8/x",
            "https://169.254.169.254/latest",
        ):
            response = client.post(
                "/v1/webhook-endpoints", json={"url": url, "events": ["entry.created"]},
                headers=ADMIN,
            )  # fmt: skip
            assert (response.status_code, response.json()["code"]) == (422, "validation-error")
        assert client.get("/v1/webhook-endpoints", headers=ADMIN).json() == {"endpoints": []}


def test_a_scripted_balance_path_sends_each_alert_once_signed(app_factory: AppFactory) -> None:
    with webhook_receiver() as receiver, app_factory() as client:
        endpoint = _endpoint(client, receiver.url, ALERTS, low_balance_threshold=100)
        account = f"user-{uuid.uuid4().hex[:10]}"
        for kind, amount in [
            ("purchases", 500),
            ("consumptions", 410),  # 90: low
            ("purchases", 30),  # 120: recovered
            ("consumptions", 120),  # 0: depleted
            ("purchases", 40),  # 40: still depleted, nothing
            ("purchases", 160),  # 200: recovered
        ]:
            _write(client, account, kind, amount)
        calls = receiver.wait_for(4)
        bodies = [_verified(endpoint["secret"], call) for call in calls]
        assert [b["type"] for b in bodies] == [
            "balance.low",
            "balance.recovered",
            "balance.depleted",
            "balance.recovered",
        ]
        assert [b["data"]["balance"]["available"] for b in bodies] == [90, 120, 0, 200]
        assert all(b["data"]["threshold"] == 100 for b in bodies)
        assert all(b["data"]["account_id"] == account for b in bodies)
        assert [b["data"]["entry"]["version"] for b in bodies] == [2, 3, 4, 6]
        assert len({call.headers["webhook-id"] for call in calls}) == 4
        _wait_for_status(client, endpoint["id"], "delivered", 4)
        assert len(receiver.calls) == 4


def test_entry_created_carries_exactly_what_the_write_answered(app_factory: AppFactory) -> None:
    with webhook_receiver() as receiver, app_factory() as client:
        endpoint = _endpoint(client, receiver.url, ["entry.created"])
        account = f"user-{uuid.uuid4().hex[:10]}"
        answers = [
            _write(client, account, "purchases", 700),
            _write(client, account, "consumptions", 5),
        ]
        bodies = [_verified(endpoint["secret"], c) for c in receiver.wait_for(2)]
        assert [b["type"] for b in bodies] == ["entry.created", "entry.created"]
        assert [b["data"] for b in bodies] == answers
        assert bodies[0]["timestamp"] == answers[0]["entry"]["recorded_at"]


def test_a_failed_delivery_is_retried_with_the_same_webhook_id(app_factory: AppFactory) -> None:
    with webhook_receiver() as receiver, app_factory() as client:
        receiver.answers = [500]
        endpoint = _endpoint(client, receiver.url, ["entry.created"])
        _write(client, f"user-{uuid.uuid4().hex[:10]}", "purchases", 10)
        first, second = receiver.wait_for(2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        _verified(endpoint["secret"], second)
        _wait_for_status(client, endpoint["id"], "delivered", 1)
        [delivery] = _deliveries(client, endpoint["id"])
        assert (delivery["attempts"], delivery["last_response_status"]) == (2, 204)
        assert delivery["next_attempt_at"] is None


def _metric(client: TestClient, name: str) -> float:
    """The value of the sample ``name`` (with its labels) in ``/metrics``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} in /metrics")


def test_the_outbox_metrics_count_messages_attempts_by_result_and_their_latency(
    app_factory: AppFactory,
) -> None:
    with webhook_receiver() as receiver, app_factory() as client:
        receiver.answers = [500]
        endpoint = _endpoint(client, receiver.url, ["entry.created"])
        _write(client, f"user-{uuid.uuid4().hex[:10]}", "purchases", 10)
        _wait_for_status(client, endpoint["id"], "delivered", 1)
        assert _metric(client, "ledger_webhook_outbox_depth") == 0
        assert _metric(client, 'ledger_webhook_messages{status="delivered"}') == 1
        assert _metric(client, 'ledger_webhook_messages{status="pending"}') == 0
        assert _metric(client, 'ledger_webhook_attempts_recorded{result="success"}') == 1
        assert _metric(client, 'ledger_webhook_attempts_recorded{result="error"}') == 1
        # Both attempts timed, deployment-wide: a local receiver answers in under 10 s.
        assert _metric(client, "ledger_webhook_delivery_duration_seconds_count") == 2
        assert _metric(client, 'ledger_webhook_delivery_duration_seconds_bucket{le="10.0"}') == 2
        assert 0 < _metric(client, "ledger_webhook_delivery_duration_seconds_sum") < 20


def test_a_message_retried_holds_back_the_next_until_it_has_failed(
    app_factory: AppFactory,
) -> None:
    with webhook_receiver() as receiver, app_factory() as client:
        receiver.answers = [503, 503, 503]  # the first message fails all 3 attempts
        endpoint = _endpoint(client, receiver.url, ["entry.created"])
        account = f"user-{uuid.uuid4().hex[:10]}"
        _write(client, account, "purchases", 10)
        _write(client, account, "purchases", 20)
        calls = receiver.wait_for(4)
        ids = [call.headers["webhook-id"] for call in calls]
        assert ids[0] == ids[1] == ids[2] != ids[3]
        amounts = [json.loads(call.body)["data"]["entry"]["amount"] for call in calls]
        assert amounts == [10, 10, 10, 20]
        _wait_for_status(client, endpoint["id"], "delivered", 1)
        statuses = [d["status"] for d in _deliveries(client, endpoint["id"])]
        assert statuses == ["delivered", "failed"]  # newest first


def test_a_message_pending_when_the_service_stops_is_delivered_after_its_restart(
    app_factory: AppFactory,
) -> None:
    with webhook_receiver() as receiver:
        receiver.answers = [503]
        with app_factory(webhook_retry_seconds="1") as client:
            endpoint = _endpoint(client, receiver.url, ["entry.created"])
            _write(client, f"user-{uuid.uuid4().hex[:10]}", "purchases", 10)
            [first] = receiver.wait_for(1)
        # Stopped after the first attempt failed: the message waits in the outbox.
        with app_factory(webhook_retry_seconds="1") as client:
            _, second = receiver.wait_for(2)
            assert second.headers["webhook-id"] == first.headers["webhook-id"]
            _verified(endpoint["secret"], second)
            _wait_for_status(client, endpoint["id"], "delivered", 1)
