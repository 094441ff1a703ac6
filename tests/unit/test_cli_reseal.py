"""``ledger reseal-webhook-secrets``: seals stored secrets with the first
key, so a key can be set after endpoints exist, and an old key dropped
after rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.adapters.migrate import migrate
from service.adapters.webhook_records import EndpointRecord
from service.adapters.webhook_store import open_webhook_store
from service.cli import app
from service.config import Settings

OLD, NEW = "o" * 32 + "-old-key", "n" * 32 + "-new-key"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENDPOINT = EndpointRecord(
    "ep", "https://example.com/h", ("entry.created",), None, None, SECRET, "t"
)


def stored_secret(settings: Settings) -> str:
    store = open_webhook_store(settings)
    try:
        rows, _ = store._db.execute("SELECT secret FROM ledger_webhook_endpoints", {})
        return str(rows[0]["secret"])
    finally:
        store.close()


def opened_secret(settings: Settings) -> str | None:
    store = open_webhook_store(settings)
    try:
        record = store.get("ep")
        assert record is not None
        return record.secret
    finally:
        store.close()


def test_secrets_stored_plain_are_sealed_then_moved_to_a_new_first_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    plain = Settings()
    migrate(plain)
    store = open_webhook_store(plain)
    store.add(
        EndpointRecord("ep", "https://example.com/h", ("entry.created",), None, None, SECRET, "t")
    )
    store.close()
    assert stored_secret(plain) == SECRET

    monkeypatch.setenv("LEDGER_WEBHOOK_SECRETS_KEY", OLD)
    result = CliRunner().invoke(app, ["reseal-webhook-secrets"])
    assert result.exit_code == 0, result.output
    assert "sealed 1" in result.output
    assert SECRET not in stored_secret(plain)
    assert opened_secret(Settings()) == SECRET

    monkeypatch.setenv("LEDGER_WEBHOOK_SECRETS_KEY", f"{NEW}, {OLD}")  # spaces are fine
    assert CliRunner().invoke(app, ["reseal-webhook-secrets"]).exit_code == 0
    monkeypatch.setenv("LEDGER_WEBHOOK_SECRETS_KEY", NEW)  # the old key can go now
    assert opened_secret(Settings()) == SECRET


def test_a_secret_no_key_opens_is_named_and_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("LEDGER_WEBHOOK_SECRETS_KEY", OLD)
    migrate(Settings())
    store = open_webhook_store(Settings())
    store.add(
        EndpointRecord("ep", "https://example.com/h", ("entry.created",), None, None, SECRET, "t")
    )
    store.close()
    sealed = stored_secret(Settings())
    monkeypatch.setenv("LEDGER_WEBHOOK_SECRETS_KEY", NEW)
    result = CliRunner().invoke(app, ["reseal-webhook-secrets"])
    assert result.exit_code == 1
    assert "ep" in result.output and SECRET not in result.output
    assert stored_secret(Settings()) == sealed


def test_resealing_needs_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.delenv("LEDGER_WEBHOOK_SECRETS_KEY", raising=False)
    result = CliRunner().invoke(app, ["reseal-webhook-secrets"])
    assert result.exit_code == 2
    assert not (tmp_path / "ledger.db").exists()  # nothing created
