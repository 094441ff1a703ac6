"""``ledger deliver``: only where it can be the deployment's one dispatcher."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app


def test_ledger_deliver_refuses_sqlite_where_ledger_serve_delivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    result = CliRunner().invoke(app, ["deliver"])
    assert result.exit_code == 2
    assert "needs PostgreSQL" in result.output
    assert not (tmp_path / "ledger.db").exists()  # nothing created
