"""Account statements (contract v1.1, ``GET /v1/accounts/{id}/statement``) on a
SQLite ledger with a fake clock: opening and closing balances, totals by type,
the window's first and last versions, and bounded work."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification

from service.application import commands, reads, statement
from service.application.ledger import Ledger
from service.domain.errors import AccountNotFound, ValidationFailed
from service.domain.events import LedgerEntry
from service.domain.hashing import GENESIS
from service.domain.published import WritePublic
from tests.unit.test_ledger_application import T0, FakeClock, make_settings

HOUR = timedelta(hours=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    settings = make_settings(tmp_path, snapshot_interval=3)  # balances rebuilt from snapshots
    app = Ledger(env=settings.eventsourcing_env(), clock=clock)
    yield app
    app.close()


@pytest.fixture
def history(ledger: Ledger, clock: FakeClock) -> list[WritePublic]:
    """Account ``user-1``, one entry an hour from T0: purchase 1000 (v1),
    consume 100 (v2), grant 50 (v3), consume 30 (v4), deduct 5 (v5).
    Answers each write's body (``{"entry", "balance"}``)."""
    writes = [
        commands.purchase("user-1", 1000, actor="shop", idem=None),
        commands.consume("user-1", 100, actor="chat", idem=None),
        commands.grant("user-1", 50, actor="ops", idem=None, reason="welcome"),
        commands.consume("user-1", 30, actor="chat", idem=None),
        commands.deduct("user-1", 5, actor="ops", idem=None, reason="fix"),
    ]
    bodies: list[WritePublic] = []
    for index, write in enumerate(writes):
        clock.now = T0 + index * HOUR
        bodies.append(ledger.execute_write(write).body)
    return bodies


def test_a_statement_opens_before_from_closes_before_to_and_totals_the_entries_in_between(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    # v2 is recorded exactly at `from` (inside), v4 exactly at `to` (outside).
    body = statement.account_statement(ledger, "user-1", T0 + HOUR, T0 + 3 * HOUR)
    assert body["opening"] == history[0]["balance"] == reads.balance_at_version(ledger, "user-1", 1)
    assert body["closing"] == history[2]["balance"] == reads.balance_at_version(ledger, "user-1", 3)
    assert body["totals"] == {
        "grant": {"count": 1, "amount": 50},
        "consumption": {"count": 1, "amount": 100},
    } and list(body["totals"]) == ["grant", "consumption"]  # the contract's order of types
    assert (body["first_version"], body["last_version"]) == (2, 3)
    assert body["account_id"] == "user-1"


def test_the_closing_balance_carries_the_position_and_hash_of_the_windows_last_entry(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    body = statement.account_statement(ledger, "user-1", T0, T0 + 4 * HOUR)
    last = history[3]["entry"]
    assert body["last_version"] == last["version"] == 4
    assert body["closing"]["position"] == last["position"]
    assert body["closing"]["hash"] == last["hash"]
    assert body["opening"]["version"] == 0 and body["opening"]["hash"] == GENESIS


def test_totals_count_and_sum_every_entry_of_a_type_in_the_window(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    body = statement.account_statement(ledger, "user-1", T0, T0 + 5 * HOUR)
    assert body["totals"] == {
        "purchase": {"count": 1, "amount": 1000},
        "grant": {"count": 1, "amount": 50},
        "consumption": {"count": 2, "amount": 130},
        "deduction": {"count": 1, "amount": 5},
    }
    assert (body["first_version"], body["last_version"]) == (1, 5)
    assert body["closing"]["available"] == 1000 - 100 + 50 - 30 - 5


def test_a_window_without_entries_has_empty_totals_null_versions_and_one_balance_twice(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    body = statement.account_statement(
        ledger, "user-1", T0 + HOUR + timedelta(microseconds=1), T0 + 2 * HOUR
    )
    assert body["totals"] == {}
    assert body["first_version"] is None and body["last_version"] is None
    assert body["opening"] == body["closing"] == history[1]["balance"]


def test_a_window_before_the_first_entry_opens_and_closes_at_version_zero(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    body = statement.account_statement(ledger, "user-1", T0 - 2 * HOUR, T0)
    zero = body["opening"]
    assert zero == body["closing"]
    assert (zero["version"], zero["position"], zero["hash"], zero["updated_at"]) == (
        0,
        0,
        GENESIS,
        None,
    )
    assert zero["available"] == zero["purchased"] == zero["held"] == 0
    assert body["totals"] == {} and body["first_version"] is None


def test_a_window_after_the_last_entry_opens_and_closes_at_the_current_balance(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    body = statement.account_statement(ledger, "user-1", T0 + 10 * HOUR, T0 + 20 * HOUR)
    assert body["opening"] == body["closing"] == history[-1]["balance"]
    assert body["totals"] == {} and body["last_version"] is None


def test_from_and_to_are_echoed_in_utc_with_microseconds(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 3, 1, 14, tzinfo=plus_two)  # T0
    body = statement.account_statement(ledger, "user-1", start, start + timedelta(seconds=1.5))
    assert body["from"] == "2026-03-01T12:00:00.000000Z"
    assert body["to"] == "2026-03-01T12:00:01.500000Z"


@pytest.mark.parametrize("length", [timedelta(0), -HOUR])
def test_a_window_whose_from_is_not_before_its_to_is_refused_with_422(
    ledger: Ledger, history: list[WritePublic], length: timedelta
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        statement.account_statement(ledger, "user-1", T0, T0 + length)
    assert refused.value.code == "validation-error"
    assert refused.value.context["errors"][0]["loc"] == ["query", "to"]


def test_an_account_without_entries_is_not_found(
    ledger: Ledger, history: list[WritePublic]
) -> None:
    with pytest.raises(AccountNotFound) as missing:
        statement.account_statement(ledger, "nobody", T0, T0 + HOUR)
    assert missing.value.code == "account-not-found"


def test_a_window_longer_than_a_page_is_summed_page_by_page(
    ledger: Ledger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(7):
        ledger.execute_write(commands.purchase("user-2", 3, actor="shop", idem=None))
        clock.advance(seconds=1)
    monkeypatch.setattr(statement, "PAGE", 2)
    body = statement.account_statement(ledger, "user-2", T0 + timedelta(seconds=1), clock())
    assert body["totals"] == {"purchase": {"count": 6, "amount": 18}}
    assert (body["first_version"], body["last_version"]) == (2, 7)


def test_a_statement_reads_log2_versions_point_entries_plus_the_windows_entries(
    ledger: Ledger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = 100
    for _ in range(versions):
        ledger.execute_write(commands.purchase("user-3", 1, actor="shop", idem=None))
        clock.advance(seconds=1)
    point_reads, rows = 0, 0
    recorder = ledger.ledger_recorder
    entry_at, select_entries = ledger.entry_at, recorder.select_entries

    def counting_entry_at(account_id: str, version: int) -> tuple[LedgerEntry, int]:
        nonlocal point_reads
        point_reads += 1
        return entry_at(account_id, version)

    def counting_select(
        originator_id: UUID, after_version: int, limit: int
    ) -> Sequence[Notification]:
        nonlocal rows
        found = select_entries(originator_id, after_version, limit)
        rows += len(found)
        return found

    monkeypatch.setattr(ledger, "entry_at", counting_entry_at)
    monkeypatch.setattr(recorder, "select_entries", counting_select)
    start = T0 + timedelta(seconds=40)  # versions 41, 42 and 43 in the window
    body = statement.account_statement(ledger, "user-3", start, start + timedelta(seconds=3))
    assert (body["first_version"], body["last_version"]) == (41, 43)
    assert point_reads <= 2 * math.ceil(math.log2(versions + 1)) + 2  # searches, two positions
    assert rows == point_reads + 3  # each point read one row, then the window's three entries
