"""Issue 8: export, verify and rebuild on real PostgreSQL. Every kind of
tampering — an event's amount edited, an event deleted, two events swapped,
the balance table edited, an export line edited or dropped — is detected and
named by account, version and check."""

from __future__ import annotations

import io
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from service.adapters.migrate import migrate
from service.application import commands
from service.application.audit.database import stored_entries, verify_database, verify_export
from service.application.audit.export import write_export
from service.application.audit.rebuild import rebuild_projection
from service.application.audit.verify import Report
from service.application.ledger import Ledger
from service.application.projector import ProjectionService, open_balance_view
from service.config import Settings
from tests.helpers.processes import ledger_command, serve_environment
from tests.helpers.servers import fresh_postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture
def audited() -> Iterator[tuple[Settings, list[str]]]:
    """A PostgreSQL ledger with a few accounts' history, fully projected."""
    with fresh_postgres_database() as url:
        settings = Settings(database_url=url)
        migrate(settings)
        ledger = Ledger(env=settings.eventsourcing_env())
        view = open_balance_view(settings)  # before the projection's thread opens it too
        projection = ProjectionService(settings, None, ledger)
        projection.start()
        accounts = [f"audit-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
        try:
            last = 0
            for account in accounts:
                ledger.execute_write(commands.purchase(account, 1000, actor="t", idem=None))
                ledger.execute_write(
                    commands.consume(account, 120, actor="t", idem=None, metadata={"n": "é"})
                )
                hold = ledger.execute_write(
                    commands.place_hold(account, 50, actor="t", idem=None, ttl_seconds=600)
                )
                hold_id = uuid.UUID(hold.body["entry"]["hold_id"])
                ledger.execute_write(
                    commands.capture_hold(ledger, account, hold_id, 20, actor="t", idem=None)
                )
                last = ledger.execute_write(
                    commands.set_credit_limit(account, 300, actor="t", idem=None)
                ).body["entry"]["position"]
            deadline = time.monotonic() + 10
            while view.position() < last:  # waits on the projection's position
                assert time.monotonic() < deadline, "projection did not catch up"
                time.sleep(0.02)
            yield settings, accounts
        finally:
            projection.stop()
            ledger.close()


def execute(settings: Settings, statement: str, *params: object) -> None:
    with psycopg.connect(settings.postgres_conninfo(), autocommit=True) as conn:
        conn.execute(statement, params)


def failures(report: Report) -> set[tuple[str, int | None, str]]:
    return {(f.account_id, f.version, f.check) for f in report.failures}


def test_an_untouched_ledger_verifies_from_the_database_and_from_its_export(
    audited: tuple[Settings, list[str]], tmp_path: Path
) -> None:
    settings, accounts = audited
    report = verify_database(settings)
    assert report.ok, report.failures
    assert (report.entries, report.accounts, report.balances_compared) == (15, 3, 3)
    export = tmp_path / "log.ndjson"
    with export.open("wb") as out:
        assert write_export(stored_entries(settings), out) == 15
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert [e["position"] for e in lines] == sorted(e["position"] for e in lines)
    assert {"hash", "position", "id"} <= lines[0].keys()
    assert verify_export(export).ok
    one = verify_database(settings, accounts[1])
    assert one.ok and one.entries == 5


def test_the_csv_export_has_a_header_and_one_row_per_entry(
    audited: tuple[Settings, list[str]],
) -> None:
    settings, accounts = audited
    out = io.BytesIO()
    assert write_export(stored_entries(settings, 0, accounts[0]), out, "csv") == 5
    rows = out.getvalue().decode().splitlines()
    assert rows[0].startswith("position,id,account_id,type,amount")
    assert len(rows) == 6 and '"{""n"":""é""}"' in rows[2]


def test_an_edited_amount_is_found_by_its_hash(audited: tuple[Settings, list[str]]) -> None:
    settings, accounts = audited
    execute(
        settings,
        "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'),"
        " '\"amount\":120', '\"amount\":12'), 'UTF8')"
        " WHERE originator_version = 2 AND topic LIKE %s AND state::text <> ''"
        " AND originator_id = (SELECT originator_id FROM ledger_events WHERE"
        " convert_from(state, 'UTF8') LIKE %s LIMIT 1)",
        "%Consumed",
        f'%"account_id":"{accounts[0]}"%',
    )
    found = failures(verify_database(settings))
    assert (accounts[0], 2, "hash") in found
    assert all(account == accounts[0] for account, _, _ in found)


def test_a_deleted_event_breaks_the_versions_and_the_chain(
    audited: tuple[Settings, list[str]],
) -> None:
    settings, accounts = audited
    execute(
        settings,
        "DELETE FROM ledger_events WHERE originator_version = 3 AND originator_id ="
        " (SELECT originator_id FROM ledger_events WHERE convert_from(state, 'UTF8') LIKE %s"
        " LIMIT 1)",
        f'%"account_id":"{accounts[1]}"%',
    )
    found = failures(verify_database(settings))
    assert (accounts[1], 4, "version") in found and (accounts[1], 4, "hash") in found


def test_two_swapped_events_are_found(audited: tuple[Settings, list[str]]) -> None:
    settings, accounts = audited
    with psycopg.connect(settings.postgres_conninfo()) as conn:
        owner = conn.execute(
            "SELECT originator_id FROM ledger_events WHERE convert_from(state, 'UTF8') LIKE %s"
            " LIMIT 1",
            (f'%"account_id":"{accounts[2]}"%',),
        ).fetchone()
        assert owner is not None
        states: dict[int, bytes] = dict(
            conn.execute(
                "SELECT originator_version, state FROM ledger_events WHERE originator_id = %s"
                " AND originator_version IN (2, 3)",
                (owner[0],),
            ).fetchall()
        )
        for version, other in ((2, 3), (3, 2)):
            conn.execute(
                "UPDATE ledger_events SET state = %s WHERE originator_id = %s"
                " AND originator_version = %s",
                (states[other], owner[0], version),
            )
    found = failures(verify_database(settings))
    assert (accounts[2], 2, "hash") in found and (accounts[2], 3, "hash") in found


def test_an_edited_balance_row_is_found_and_a_rebuild_repairs_it(
    audited: tuple[Settings, list[str]],
) -> None:
    settings, accounts = audited
    execute(settings, "UPDATE ledger_balances SET available = 1 WHERE account_id = %s", accounts[0])
    report = verify_database(settings)
    assert failures(report) == {(accounts[0], 5, "balance")}
    assert "available" in report.failures[0].detail
    summary = rebuild_projection(settings)
    assert "15 entries" in summary
    assert verify_database(settings).ok
    row = open_balance_view(settings).get_balance(accounts[0])
    assert row is not None
    assert row["available"] == 830 + 30


def test_an_edited_or_dropped_export_line_is_found(
    audited: tuple[Settings, list[str]], tmp_path: Path
) -> None:
    settings, accounts = audited
    export = tmp_path / "log.ndjson"
    with export.open("wb") as out:
        write_export(stored_entries(settings), out)
    lines = export.read_text().splitlines()
    edited = [json.loads(line) for line in lines]
    edited[1]["amount"] += 1
    export.write_text("\n".join(json.dumps(e) for e in edited) + "\n")
    assert (edited[1]["account_id"], edited[1]["version"], "hash") in failures(
        verify_export(export)
    )
    export.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    dropped = json.loads(lines[2])
    assert (dropped["account_id"], dropped["version"] + 1, "version") in failures(
        verify_export(export)
    )


def test_the_verify_command_exits_0_then_1_and_names_the_failure(
    audited: tuple[Settings, list[str]],
) -> None:
    settings, accounts = audited
    env = serve_environment({"LEDGER_DATABASE_URL": settings.database_url})
    command = [*ledger_command(), "audit", "verify", "--json"]
    ok = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    execute(settings, "UPDATE ledger_balances SET held = 7 WHERE account_id = %s", accounts[2])
    bad = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["failures"][0]["account_id"] == accounts[2]
    assert report["failures"][0]["check"] == "balance"
    text = subprocess.run(command[:-1], env=env, capture_output=True, timeout=120, text=True)
    assert f"FAILED balance: account {accounts[2]} version 5" in text.stdout


def test_balance_reads_keep_being_answered_while_a_rebuild_swaps_the_tables(
    audited: tuple[Settings, list[str]],
) -> None:
    import threading

    settings, accounts = audited
    view = open_balance_view(settings)
    expected = view.get_balance(accounts[0])
    answered, errors = [], []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                answered.append(view.get_balance(accounts[0]))
            except Exception as error:  # recorded, asserted below
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        rebuild_projection(settings)
        rebuild_projection(settings)
    finally:
        done.set()
        reader.join(10)
    assert not errors, errors[:3]
    assert len(answered) > 10 and all(b == expected for b in answered)
    assert view.get_balance(accounts[0]) == expected
