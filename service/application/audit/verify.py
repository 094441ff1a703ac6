"""``ledger audit verify``: the whole log checked by the auditor's fold
(``service.application.audit.fold``), and the balance table compared with it.

The projection may be applying entries while the audit runs: each table row
is compared with the fold at the projection's position read before the log
(``at``), or with the final fold when the row moved on to exactly the last
entry read; a row in between is counted as not comparable, never failed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from service.application.audit.fold import AuditFold, Failure, Folded

Progress = Callable[[int], None]


@dataclass
class Report:
    """What an audit found: counts and every failure (empty: all holds)."""

    entries: int = 0
    accounts: int = 0
    balances_compared: int = 0
    balances_not_comparable: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "accounts": self.accounts,
            "balances_compared": self.balances_compared,
            "balances_not_comparable": self.balances_not_comparable,
            "failures": [f.__dict__ for f in self.failures],
        }


def verify_entries(
    entries: Iterable[dict[str, Any]],
    projection_position: int | None = None,
    progress: Progress | None = None,
) -> tuple[AuditFold, dict[str, Folded] | None]:
    """Folds ``entries``; also returns the balances as folded up to
    ``projection_position`` (``None`` when not asked)."""
    fold = AuditFold()
    at: dict[str, Folded] | None = None
    for entry in entries:
        if (
            at is None
            and projection_position is not None
            and entry["position"] > projection_position
        ):
            at = copy.deepcopy(fold.balances)
        try:
            fold.add(entry)
        except (TypeError, ValueError, KeyError, AttributeError) as error:  # an edited export
            where = str(entry.get("account_id", "?"))
            fold.failures.append(Failure(where, entry.get("version"), "format", repr(error)))
            continue
        if progress is not None and fold.entries % 10_000 == 0:
            progress(entry["position"])
    if at is None and projection_position is not None:
        at = fold.balances
    return fold, at


def compare_table(
    fold: AuditFold,
    at: dict[str, Folded],
    projection_position: int,
    rows: Iterable[dict[str, Any]],
    report: Report,
) -> None:
    """Compares each balance row with the fold (see the module docstring)."""
    seen: set[str] = set()
    for row in rows:
        account_id = row["account_id"]
        seen.add(account_id)
        final = fold.balances.get(account_id)
        moved_on = row["position"] > projection_position
        if moved_on and final is not None and row["position"] != final.position:
            report.balances_not_comparable += 1  # applied while the audit ran
            continue
        reference = AuditFold()
        folded = final if moved_on else at.get(account_id)
        if folded is not None:
            reference.balances[account_id] = folded
        reference.compare(account_id, row)
        fold.failures.extend(reference.failures)
        report.balances_compared += 1
    for account_id in at.keys() - seen:
        fold.compare(account_id, None)
