"""Failures inside the service: store outages answer 503, bugs answer 500,
neither leaks details."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer test-admin-key"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    path = tmp_path_factory.mktemp("ledger") / "l.db"
    app = create_app(Settings(database_url=f"sqlite:///{path}", admin_api_key="test-admin-key"))

    @app.get("/test/store-down")
    def store_down() -> None:
        raise sqlite3.OperationalError("database is locked: secret-path /var/db")

    @app.get("/test/bug")
    def bug() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_a_store_failure_answers_503_unavailable_with_retry_after(client: TestClient) -> None:
    r = client.get("/test/store-down")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["Retry-After"].isdigit()
    assert r.json()["code"] == "unavailable"
    assert "secret" not in r.text


def test_an_unexpected_error_answers_a_500_problem_without_details(client: TestClient) -> None:
    r = client.get("/test/bug")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "internal-error"
    assert "secret" not in r.text


def test_a_key_store_outage_answers_503_not_401(
    client: TestClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = client.post(
        "/v1/api-keys", json={"name": "reader", "scopes": ["read"]}, headers=ADMIN
    )
    key = created.json()["key"]

    def down(key_hash: str) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(app.state.runtime.keys, "_by_hash", down)
    r = client.get("/v1/accounts/someone/balance", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 503
    assert r.json()["code"] == "unavailable"


def test_readyz_is_503_when_the_database_is_unreachable(
    client: TestClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> int:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(app.state.runtime.balances, "position", down)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["code"] == "unavailable"
    assert r.json()["checks"]["database"] == "unreachable"
    assert "Retry-After" in r.headers


def test_a_stream_past_ledger_max_streams_is_answered_503(
    client: TestClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = app.state.runtime
    monkeypatch.setattr(runtime.settings, "max_streams", 1)
    monkeypatch.setattr(runtime.hub, "open_streams", 1)
    r = client.get("/v1/accounts/someone/balance/stream", headers=ADMIN)
    assert r.status_code == 503
    assert r.json()["code"] == "unavailable"
    assert r.headers["Retry-After"].isdigit()
