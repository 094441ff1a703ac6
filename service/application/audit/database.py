"""Audits run against the configured database (``ledger audit verify``,
``ledger export``), and against an NDJSON export alone (``--from-export``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from service.application.audit.entries import collector_paused, plain
from service.application.audit.export import log_entries
from service.application.audit.fold import HASHED, Failure
from service.application.audit.verify import Progress, Report, compare_table, verify_entries
from service.application.ledger import Ledger
from service.application.projector import open_balance_view
from service.config import Settings
from service.domain.values import account_uuid

REQUIRED = frozenset((*HASHED, "position", "hash"))
"""Keys every exported entry has."""


def head_position(settings: Settings) -> int:
    """The log's highest position (0: empty), for progress bars."""
    ledger = Ledger(env=settings.eventsourcing_env())
    try:
        return int(ledger.recorder.max_notification_id() or 0)
    finally:
        ledger.close()


def stored_entries(
    settings: Settings, after_position: int = 0, account_id: str | None = None
) -> Iterator[dict[str, Any]]:
    """The API's entries from the database, in position order (streamed)."""
    ledger = Ledger(env=settings.eventsourcing_env())
    try:
        target = account_uuid(account_id) if account_id else None
        yield from log_entries(ledger.recorder, after_position, target)
    finally:
        ledger.close()


def verify_database(
    settings: Settings, account_id: str | None = None, progress: Progress | None = None
) -> Report:
    """Checks the whole log (or one account's entries) and the balance table."""
    view = open_balance_view(settings)
    projected = view.position()
    with collector_paused():
        fold, at = verify_entries(stored_entries(settings, 0, account_id), projected, progress)
    report = Report(entries=fold.entries, accounts=len(fold.balances))
    assert at is not None
    if account_id is None:
        compare_table(fold, at, projected, _all_rows(view), report)
    else:
        row = view.get_balance(account_id)
        compare_table(fold, at, projected, [row] if row else [], report)
    report.failures = fold.failures
    return report


def verify_export(path: Path, progress: Progress | None = None) -> Report:
    """The same checks on an NDJSON export alone (no balance table). A line
    that is not an entry fails check ``format`` with its line number."""
    bad: list[Failure] = []
    with collector_paused():
        fold, _ = verify_entries(_export_entries(path, bad), None, progress)
    fold.failures[:0] = bad
    return Report(entries=fold.entries, accounts=len(fold.balances), failures=fold.failures)


def _export_entries(path: Path, bad: list[Failure]) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
                if not plain(entry):  # a float may be an integer beyond 64 bits: read exactly
                    entry = json.loads(line)
                missing = REQUIRED - entry.keys()
            except (ValueError, AttributeError) as error:
                bad.append(Failure("?", None, "format", f"line {number}: {error}"))
                continue
            if missing:
                where = str(entry.get("account_id", "?"))
                detail = f"line {number}: missing {', '.join(sorted(missing))}"
                bad.append(Failure(where, entry.get("version"), "format", detail))
                continue
            yield entry


def _all_rows(view: Any) -> Iterator[dict[str, Any]]:
    after = -1
    while True:
        rows = view.balances_after(after, 10_000)
        yield from rows
        if len(rows) < 10_000:
            return
        after = rows[-1]["position"]
