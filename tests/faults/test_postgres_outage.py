"""Contract v1.1, "Errors": while PostgreSQL is unreachable every request that
needs it is answered 503 ``unavailable`` (with ``Retry-After``) within 5
seconds, ``/healthz`` stays 200, and service resumes by itself within 5 seconds
of PostgreSQL's return — for a refused connection and a black hole alike.
PostgreSQL is cut through a TCP proxy the test owns."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import serving_ledgers
from tests.helpers.proxy import Mode, tcp_proxy
from tests.helpers.servers import ADMIN_KEY, fresh_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE = 5.0


def requests_needing_the_database(account: str) -> list[tuple[str, str, dict[str, object] | None]]:
    """``(method, path, json body)`` of routes that need PostgreSQL."""
    return [
        ("POST", f"/v1/accounts/{account}/purchases", {"amount": 5}),
        ("POST", f"/v1/accounts/{account}/consumptions", {"amount": 1}),
        ("GET", f"/v1/accounts/{account}/entries", None),
        ("GET", f"/v1/accounts/{account}/balance?as_of_version=1", None),
        ("GET", f"/v1/accounts/{account}/balance?min_position=1000000", None),
        ("GET", f"/v1/accounts/{account}/entries/stream", None),
        ("GET", f"/v1/accounts/{account}/holds", None),
        ("GET", f"/v1/accounts/{account}/credits", None),
        ("GET", "/v1/entries", None),
        ("GET", "/v1/api-keys", None),
        ("POST", "/v1/batch", {"operations": [{"op": "purchase", "account_id": account,
                                               "amount": 1}]}),
        ("GET", "/readyz", None),
    ]  # fmt: skip


def timed(
    client: httpx.Client, method: str, path: str, body: object
) -> tuple[int, float, dict[str, str | None]]:
    started = time.monotonic()
    response = client.request(method, path, json=body)
    elapsed = time.monotonic() - started
    is_problem = response.headers.get("content-type", "").startswith("application/problem")
    return (
        response.status_code,
        elapsed,
        {
            "retry_after": response.headers.get("retry-after"),
            "code": response.json().get("code") if is_problem else None,
        },
    )


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_requests_get_a_prompt_503_while_postgres_is_cut_and_service_resumes_after(
    mode: Mode, tmp_path: Path
) -> None:
    with fresh_postgres_database() as db_url, tcp_proxy("127.0.0.1", 5432) as proxy:
        database = db_url.rsplit("/", 1)[1]
        settings = {
            "LEDGER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}",
            "LEDGER_ADMIN_API_KEY": ADMIN_KEY,
        }
        with serving_ledgers(settings, tmp_path) as (ledger,):
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            account = f"outage-{uuid.uuid4().hex[:8]}"
            with httpx.Client(base_url=ledger.url, headers=headers, timeout=30) as client:
                bought = client.post(f"/v1/accounts/{account}/purchases", json={"amount": 50})
                assert bought.status_code == 201, bought.text
                proxy.set_mode(mode)
                calls = requests_needing_the_database(account) * 2  # warm and cold
                with ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(lambda c: timed(client, *c), calls))
                for (method, path, _), (status, elapsed, problem) in zip(
                    calls, answers, strict=True
                ):
                    assert elapsed < DEADLINE, f"{method} {path} took {elapsed:.1f} s"
                    assert status == 503, f"{method} {path} answered {status} during the cut"
                    assert problem["code"] == "unavailable" and problem["retry_after"], problem
                health = client.get("/healthz")
                assert health.status_code == 200
                metrics = client.get("/metrics")
                assert metrics.status_code == 200 and "ledger_store_up 0.0" in metrics.text
                proxy.set_mode("pass")
                restored = time.monotonic()
                while True:  # bounded by the contract's 5 s, polled on the answer itself
                    again = client.post(f"/v1/accounts/{account}/purchases", json={"amount": 5})
                    if again.status_code == 201:
                        break
                    assert time.monotonic() - restored < DEADLINE, again.text
                    time.sleep(0.1)
                assert time.monotonic() - restored < DEADLINE
                assert client.get("/readyz").status_code == 200
                entries = client.get(f"/v1/accounts/{account}/entries").json()["entries"]
                assert [e["amount"] for e in entries] == [50, 5]  # nothing left by the 503s
