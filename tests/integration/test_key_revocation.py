"""Contract v1.1: a revoked API key is refused from the next request on by the
process that revoked it, and by every other process within 1 second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import LedgerProcess, serving_ledgers
from tests.helpers.servers import fresh_postgres_database, fresh_redis_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN = {"Authorization": "Bearer revocation-admin-key-0123456789abcdef"}


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[list[LedgerProcess]]:
    with fresh_postgres_database("ledger_revoke") as db_url, fresh_redis_database() as redis_url:
        settings = {
            "LEDGER_DATABASE_URL": db_url,
            "LEDGER_REDIS_URL": redis_url,
            "LEDGER_ADMIN_API_KEY": ADMIN["Authorization"].removeprefix("Bearer "),
            "LEDGER_SECRET_KEY": "revocation-secret-0123456789abcdef0123",
            "LEDGER_LOG_LEVEL": "warning",
        }
        with serving_ledgers(settings, tmp_path, count=2) as processes:
            yield processes


def test_a_key_revoked_in_one_process_is_refused_by_the_other_within_a_second(
    ledgers: list[LedgerProcess],
) -> None:
    first, second = ledgers
    with (
        httpx.Client(base_url=first.url, timeout=10) as here,
        httpx.Client(base_url=second.url, timeout=10) as there,
    ):
        created = here.post("/v1/api-keys", json={"name": "svc", "scopes": ["read"]}, headers=ADMIN)
        assert created.status_code == 201
        key = {"Authorization": f"Bearer {created.json()['key']}"}
        for client in (here, there):  # both know (and cache) the key
            r = client.get("/v1/accounts/someone/balance", headers=key)
            assert r.status_code == 404, r.text
        assert here.delete("/v1/api-keys/svc", headers=ADMIN).status_code == 204
        revoked_at = time.monotonic()
        assert here.get("/v1/accounts/someone/balance", headers=key).status_code == 401
        while (status := there.get("/v1/accounts/someone/balance", headers=key).status_code) != 401:
            assert status == 404
            assert time.monotonic() - revoked_at < 1.0, "still accepted 1 s after the revocation"
        assert time.monotonic() - revoked_at < 1.0
