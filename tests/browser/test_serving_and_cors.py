"""How the service serves /ui/ and answers cross-origin requests (over HTTP,
no browser: the headers a browser decides on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from tests.helpers.servers import ADMIN_KEY

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
APP_ORIGIN = "https://app.example.com"


def client_for(path: Path, cors_origins: str = "") -> TestClient:
    settings = Settings(
        database_url=f"sqlite:///{path}", admin_api_key=ADMIN_KEY, cors_origins=cors_origins
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with client_for(tmp_path_factory.mktemp("ui") / "l.db") as c:
        yield c


def test_the_dashboard_is_served_with_a_policy_that_allows_its_own_origin_only(
    client: TestClient,
) -> None:
    for path in ("/ui/", "/ui/accounts/user-42"):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["referrer-policy"] == "no-referrer"
    module = client.get("/ui/tokenledger.js")
    assert module.headers["content-type"].startswith("text/javascript")
    assert "export function watchBalance" in module.text
    assert "export declare function watchBalance" in client.get("/ui/tokenledger.d.ts").text
    assert client.get("/ui", follow_redirects=False).headers["location"] == "ui/"


def test_ui_files_answer_304_to_their_etag_and_404_for_anything_else(client: TestClient) -> None:
    first = client.get("/ui/app.css")
    again = client.get("/ui/app.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    for path in ("/ui/nothing.js", "/ui/accounts/not%20an%20id", "/ui/../service/config.py"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")


def test_the_ui_routes_stay_out_of_the_openapi_document(client: TestClient) -> None:
    assert not [path for path in client.get("/openapi.json").json()["paths"] if "/ui" in path]


def test_the_browser_clients_reads_answer_any_origin_and_the_rest_none_by_default(
    client: TestClient,
) -> None:
    origin = {"Origin": "https://shop.example.net"}
    preflight = client.options(
        "/v1/accounts/user-42/balance/stream",
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, last-event-id",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "last-event-id" in allowed and "if-none-match" in allowed
    assert "access-control-allow-credentials" not in preflight.headers

    client.post("/v1/accounts/user-42/purchases", json={"amount": 5}, headers=AUTH)
    read = client.get("/v1/accounts/user-42/balance", headers={**origin, **AUTH})
    assert read.headers["access-control-allow-origin"] == "*"
    assert "etag" in read.headers["access-control-expose-headers"].lower()
    refused = client.get("/v1/accounts/user-42/balance", headers=origin)
    assert refused.status_code == 401  # readable by the page: it can tell why
    assert refused.headers["access-control-allow-origin"] == "*"
    assert (
        client.get("/ui/tokenledger.js", headers=origin).headers["access-control-allow-origin"]
        == "*"
    )

    write = client.options(
        "/v1/accounts/user-42/purchases",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in write.headers
    keys = client.get("/v1/api-keys", headers={**origin, **AUTH})
    assert "access-control-allow-origin" not in keys.headers
    assert "access-control-allow-origin" not in client.get("/readyz", headers=origin).headers


def test_ledger_cors_origins_opens_every_route_to_the_origins_it_lists(tmp_path: Path) -> None:
    with client_for(tmp_path / "l.db", cors_origins=f"{APP_ORIGIN}/, https://other.example") as c:
        preflight = c.options(
            "/v1/accounts/user-42/purchases",
            headers={
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["vary"] == "Origin"
        write = c.post(
            "/v1/accounts/user-42/purchases",
            json={"amount": 5},
            headers={"Origin": APP_ORIGIN, **AUTH},
        )
        assert write.status_code == 201
        assert write.headers["access-control-allow-origin"] == APP_ORIGIN
        stranger = c.post(
            "/v1/accounts/user-42/purchases",
            json={"amount": 5},
            headers={"Origin": "https://evil.example", **AUTH},
        )
        assert "access-control-allow-origin" not in stranger.headers


def test_the_browser_clients_reads_send_cors_headers_without_an_origin_too(
    client: TestClient,
) -> None:
    """A shared cache must never keep a variant of these answers without them."""
    client.post("/v1/accounts/user-cache/purchases", json={"amount": 3}, headers=AUTH)
    read = client.get("/v1/accounts/user-cache/balance", headers=AUTH)
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == "*"
    script = client.get("/ui/tokenledger.js")
    assert script.headers["access-control-allow-origin"] == "*"
    keys = client.get("/v1/api-keys", headers=AUTH)
    assert "access-control-allow-origin" not in keys.headers
