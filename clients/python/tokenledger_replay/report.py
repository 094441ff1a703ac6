"""The summary of a replay: counts, throughput, latency percentiles and the balance check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

EXPECTED_STATUSES = frozenset({201, 402})


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``values`` (``0 < q ≤ 100``); 0.0 if empty.

    The smallest value such that at least ``q``% of ``values`` are ≤ it.

    Raises:
        ValueError: ``q`` outside ``(0, 100]``.
    """
    if not 0 < q <= 100:
        msg = f"percentile must be in (0, 100], got {q}"
        raise ValueError(msg)
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class Mismatch:
    """An account whose projected balance disagrees with what the replay expects."""

    account_id: str
    expected_available: int
    available: int | None
    expected_consumed: int
    consumed: int | None
    stale: bool = False
    detail: str = ""


@dataclass
class ReplaySummary:
    """What ``run_replay`` did.

    ``rows``: rows read; ``skipped``: rows with amount 0 (not posted);
    ``accepted`` (201) + ``refused`` (402) + sum of ``errors`` = consumptions posted.
    ``errors`` maps an HTTP status (as text) or ``"transport"`` to a count; funding
    failures are counted there too. ``funding_by_account`` holds the tokens each
    account was funded with (0 when its purchase failed), ``accepted_by_account``
    the tokens of its accepted consumptions. Times are seconds, latencies milliseconds,
    ``throughput`` is consumption requests per second of the consumption phase.
    """

    run_id: str
    rows: int
    skipped: int
    accounts: int
    funded_tokens: int
    accepted: int = 0
    refused: int = 0
    accepted_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    wall_seconds: float = 0.0
    consume_seconds: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    balances_ok: int = 0
    balances_mismatched: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    funding_by_account: dict[str, int] = field(default_factory=dict)
    accepted_by_account: dict[str, int] = field(default_factory=dict)

    @property
    def posted(self) -> int:
        """Consumption requests that got a final answer or a final transport error."""
        return self.accepted + self.refused + sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Consumption requests per second over the consumption phase."""
        return self.posted / self.consume_seconds if self.consume_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every balance matched and no request failed unexpectedly."""
        return self.balances_mismatched == 0 and not self.errors

    def table(self) -> Table:
        """The summary as a rich table."""
        table = Table(title=f"replay {self.run_id}", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value", justify="right")
        table.add_row("rows", f"{self.rows:,}")
        table.add_row("skipped (amount 0)", f"{self.skipped:,}")
        table.add_row("accounts", f"{self.accounts:,}")
        table.add_row("funded tokens", f"{self.funded_tokens:,}")
        table.add_row("accepted (201)", f"{self.accepted:,}")
        table.add_row("refused (402)", f"{self.refused:,}")
        errors = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.errors.items())) or "0"
        table.add_row("other errors", errors)
        table.add_row("retries", f"{self.retries:,}")
        table.add_row("wall time", f"{self.wall_seconds:.1f} s")
        table.add_row("consumption phase", f"{self.consume_seconds:.1f} s")
        table.add_row("throughput", f"{self.throughput:,.0f} req/s")
        table.add_row("latency p50", f"{self.latency_p50_ms:.1f} ms")
        table.add_row("latency p99", f"{self.latency_p99_ms:.1f} ms")
        verdict = "[green]OK[/]" if self.balances_mismatched == 0 else "[red]MISMATCH[/]"
        table.add_row(
            "balance check",
            f"{verdict} {self.balances_ok:,} ok / {self.balances_mismatched:,} mismatched",
        )
        return table

    def print(self, console: Console | None = None) -> None:
        """Prints the table, and the first mismatches if any, to ``console``."""
        console = console or Console()
        console.print(self.table())
        for m in self.mismatches[:10]:
            console.print(
                f"[red]MISMATCH[/] {m.account_id}: available {m.available} "
                f"(expected {m.expected_available}), consumed {m.consumed} "
                f"(expected {m.expected_consumed}){' stale' if m.stale else ''} {m.detail}"
            )
