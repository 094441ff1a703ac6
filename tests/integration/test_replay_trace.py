"""A 2,000-row slice of the real usage trace replayed through the running app on
PostgreSQL + Redis, with every account's projected balance checked exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tokenledger_replay import ReplaySummary, run_replay

from service.config import Settings
from tests.helpers.servers import (
    ADMIN_KEY,
    fresh_postgres_database,
    fresh_redis_database,
    running_app,
)

pytestmark = pytest.mark.integration

TRACE = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / ("llm_usage_replay_normalized.csv")
)
ROWS = 2_000
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with fresh_postgres_database("ledger_it") as db_url, fresh_redis_database() as redis_url:
        settings = Settings(database_url=db_url, redis_url=redis_url, admin_api_key=ADMIN_KEY)
        with running_app(settings) as url:
            yield url


def replay(base_url: str, run_id: str, rows: int = ROWS) -> ReplaySummary:
    return run_replay(
        TRACE,
        url=base_url,
        key=ADMIN_KEY,
        limit=rows,
        accounts=50,
        seed=42,
        concurrency=16,
        run_id=run_id,
    )


def projected(client: httpx.Client, account: str) -> dict[str, Any]:
    response = client.get(f"/v1/accounts/{account}/balance")
    assert response.status_code == 200, response.text
    balance: dict[str, Any] = response.json()
    return balance


def consumption_entries(client: httpx.Client, account: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(
            f"/v1/accounts/{account}/entries", params={"after_version": after, "limit": 1000}
        ).json()
        entries += [e for e in page["entries"] if e["type"] == "consumption"]
        if page["next_after_version"] is None:
            return entries
        after = page["next_after_version"]


def test_a_trace_slice_replays_with_every_projected_balance_exact(base_url: str) -> None:
    assert TRACE.exists(), f"{TRACE}: ../shared/data must be beside the repository"
    summary = replay(base_url, "it1")

    assert summary.rows == ROWS
    assert summary.errors == {}
    assert summary.accepted + summary.refused == summary.rows - summary.skipped
    assert summary.refused > 0, "auto funding leaves some accounts short"
    assert summary.balances_mismatched == 0, summary.mismatches[:5]
    assert summary.balances_ok == summary.accounts
    assert summary.ok

    # Independently of the replay's own check: read every balance and entry log.
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
        consumed_entries = 0
        for account, funded in summary.funding_by_account.items():
            accepted = summary.accepted_by_account[account]
            balance = projected(client, account)
            assert balance["available"] == funded - accepted, account
            assert balance["consumed"] == accepted, account
            assert balance["purchased"] == funded, account
            assert balance["available"] >= 0, account
            entries = consumption_entries(client, account)
            assert sum(e["amount"] for e in entries) == accepted, account
            consumed_entries += len(entries)
        assert consumed_entries == summary.accepted


def test_replaying_the_same_run_again_is_idempotent(base_url: str) -> None:
    assert TRACE.exists(), f"{TRACE}: ../shared/data must be beside the repository"
    first = replay(base_url, "it2", rows=500)
    again = replay(base_url, "it2", rows=500)
    assert (again.accepted, again.refused) == (first.accepted, first.refused)
    assert again.accepted_by_account == first.accepted_by_account
    assert again.ok
