"""The API key store on SQLite and the admin bootstrap (both databases:
``tests/integration/test_stores_dialects.py``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.adapters.keys import (
    ApiKeyExists,
    bootstrap_admin,
    open_key_store,
)
from service.adapters.migrate import migrate
from service.config import Settings
from service.domain.errors import NotFound


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(database_url=f"sqlite:///{tmp_path}/l.db")
    migrate(s)
    return s


def test_a_created_key_is_stored_only_as_its_hash(settings: Settings) -> None:
    store = open_key_store(settings)
    record, key = store.create("svc", ["consume", "read"])
    assert key.startswith("tl_") and len(key) > 40
    assert store.authenticate(key) == record
    assert record.scopes == ("consume", "read")
    store.close()
    raw = Path(settings.sqlite_path).read_bytes()
    assert key.encode() not in raw


def test_a_duplicate_name_conflicts_and_a_revoked_key_is_unknown(settings: Settings) -> None:
    store = open_key_store(settings)
    _, key = store.create("svc", ["read"])
    with pytest.raises(ApiKeyExists):
        store.create("svc", ["read"])
    store.revoke("svc")
    assert store.authenticate(key) is None
    with pytest.raises(NotFound):
        store.revoke("svc")
    store.close()


def test_the_first_start_creates_one_admin_key_when_none_is_configured(
    settings: Settings,
) -> None:
    store = open_key_store(settings)
    key = bootstrap_admin(store, settings)
    assert key is not None
    record = store.authenticate(key)
    assert record is not None and record.name == "admin" and record.scopes == ("admin",)
    assert bootstrap_admin(store, settings) is None
    assert store.count() == 1
    store.close()


def test_the_configured_admin_key_is_accepted_without_being_stored(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/l.db", admin_api_key="boot")
    migrate(settings)
    store = open_key_store(settings)
    assert bootstrap_admin(store, settings) is None
    record = store.authenticate("boot")
    assert record is not None and record.name == "bootstrap-admin"
    assert "admin" in record.scopes
    assert store.count() == 0 and store.list() == []
    store.close()


def test_the_store_creates_no_table_the_migrations_do(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/l.db")
    store = open_key_store(settings)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store.count()
    migrate(settings)
    _, key = store.create("a", ["read"])
    assert store.authenticate(key) is not None
    store.close()


def test_two_processes_bootstrapping_at_once_create_one_admin_key_and_both_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = open_key_store(settings), open_key_store(settings)
    assert bootstrap_admin(first, settings) is not None
    monkeypatch.setattr(second, "count", lambda: 0)  # it looked before the first created
    assert bootstrap_admin(second, settings) is None
    assert [r.name for r in first.list()] == ["admin"]
