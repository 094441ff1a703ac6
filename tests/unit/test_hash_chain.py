"""Contract v1.1, "Hash chain": every entry carries
``sha256(previous hash + "\\n" + canonical JSON)``, fixed when it is recorded,
and every balance the hash of its last entry. The expected values are computed
here from the contract's formula, independently of ``service.domain.hashing``."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.application import commands, reads
from service.application.ledger import Ledger
from service.config import Settings

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
KEYS = ("id", "account_id", "type", "amount", "delta_available", "version", "recorded_at",
        "idempotency_key", "actor", "operation", "model", "payment_reference", "reason",
        "hold_id", "refund_of", "expires_at", "metadata")  # fmt: skip


def contract_hash(previous: str, entry: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {k: entry[k] for k in KEYS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(f"{previous}\n{canonical}".encode()).hexdigest()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    from service.adapters.migrate import migrate

    migrate(settings)
    app = Ledger(env=settings.eventsourcing_env())
    yield app
    app.close()


def test_every_entry_chains_to_the_previous_one_by_the_contracts_formula(ledger: Ledger) -> None:
    account = "chain-1"
    first = ledger.execute_write(
        commands.purchase(
            account, 500, actor="shop", idem=None, payment_reference="pi_ü",
            metadata={"zeta": 1, "alpha": {"b": "é", "a": [1, 2]}},
            expires_at=datetime.now(UTC) + timedelta(days=3),
        )
    )  # fmt: skip
    ledger.execute_write(commands.consume(account, 20, actor="chat", idem=None, model="gpt"))
    hold = ledger.execute_write(
        commands.place_hold(account, 30, actor="chat", idem=None, ttl_seconds=60)
    )
    ledger.execute_write(
        commands.release_hold(
            ledger, account, uuid.UUID(hold.body["entry"]["hold_id"]), actor="chat", idem=None
        )
    )
    entries = reads.account_entries(ledger, account, 0, 100)["entries"]
    assert [e["version"] for e in entries] == [1, 2, 3, 4]
    previous = "0" * 64
    for entry in entries:
        assert entry["hash"] == contract_hash(previous, entry), entry["version"]
        previous = entry["hash"]
    assert first.body["entry"]["hash"] == entries[0]["hash"]
    assert first.body["balance"]["hash"] == entries[0]["hash"]
    at_three = reads.balance_at_version(ledger, account, 3)
    assert at_three["hash"] == entries[2]["hash"]
    assert reads.balance_at_version(ledger, account, 0)["hash"] == "0" * 64


def test_changing_any_covered_field_changes_the_hash() -> None:
    entry = {k: None for k in KEYS} | {"metadata": {}, "amount": 5, "version": 1}
    base = contract_hash("0" * 64, entry)
    assert contract_hash("0" * 64, entry | {"amount": 6}) != base
    assert contract_hash("1" * 64, entry) != base
    assert contract_hash("0" * 64, entry | {"position": 99}) == base  # not covered


def test_deeply_nested_metadata_is_hashed_exactly_like_the_contracts_json(ledger: Ledger) -> None:
    nested: Any = "leaf"
    for _ in range(300):
        nested = [nested]
    written = ledger.execute_write(
        commands.purchase("deep", 10, actor="t", idem=None, metadata={"n": nested})
    )
    entry = reads.account_entries(ledger, "deep", 0, 10)["entries"][0]
    assert not written.replayed
    assert entry["hash"] == contract_hash("0" * 64, entry)
