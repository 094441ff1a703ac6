"""Issue 8 on the embedded default (SQLite): export, verify and rebuild work
without PostgreSQL, and a rebuild repairs an edited balance table."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

from service.adapters.migrate import migrate
from service.application import commands
from service.application.audit.database import verify_database
from service.application.audit.rebuild import rebuild_projection
from service.application.ledger import Ledger
from service.application.projector import ProjectionService, open_balance_view
from service.config import Settings
from tests.helpers.processes import ledger_command, serve_environment


def test_sqlite_ledger_exports_verifies_and_rebuilds(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    settings = Settings(database_url=f"sqlite:///{path}")
    migrate(settings)
    ledger = Ledger(env=settings.eventsourcing_env())
    view = open_balance_view(settings)
    projection = ProjectionService(settings, None, ledger)
    projection.start()
    try:
        for account in ("s-1", "s-2"):
            ledger.execute_write(commands.purchase(account, 100, actor="t", idem=None))
            last = ledger.execute_write(commands.consume(account, 40, actor="t", idem=None))
        deadline = time.monotonic() + 10
        while view.position() < last.body["entry"]["position"]:  # waits on the position
            assert time.monotonic() < deadline, "projection did not catch up"
            time.sleep(0.02)
    finally:
        projection.stop()
        ledger.close()
    assert verify_database(settings).ok
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ledger_balances SET consumed = 0 WHERE account_id = 's-2'")
    broken = verify_database(settings)
    assert {(f.account_id, f.check) for f in broken.failures} == {("s-2", "balance")}
    assert "4 entries" in rebuild_projection(settings)
    assert verify_database(settings).ok
    env = serve_environment({"LEDGER_DATABASE_URL": settings.database_url})
    exported = subprocess.run(
        [*ledger_command(), "export", "--account", "s-1"], env=env, capture_output=True,
        timeout=120, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [(e["type"], e["amount"]) for e in lines] == [("purchase", 100), ("consumption", 40)]
    export = tmp_path / "s.ndjson"
    export.write_bytes(exported.stdout)
    checked = subprocess.run(
        [*ledger_command(), "audit", "verify", "--from-export", str(export)], env=env,
        capture_output=True, timeout=120, text=True,
    )  # fmt: skip
    assert checked.returncode == 0 and "all checks hold" in checked.stdout


def test_an_export_line_with_wrong_types_is_a_format_failure_not_a_crash(tmp_path: Path) -> None:
    from service.application.audit.database import verify_export
    from service.application.audit.fold import HASHED

    line = dict.fromkeys(HASHED) | {"account_id": "x", "version": 1, "position": 1,
                                    "amount": "5", "delta_available": 5, "type": "purchase",
                                    "metadata": {}, "hash": "0" * 64}  # fmt: skip
    export = tmp_path / "bad.ndjson"
    export.write_text(json.dumps(line) + "\n")
    report = verify_export(export)
    assert ("x", "format") in [(f.account_id, f.check) for f in report.failures]
    assert not report.ok
