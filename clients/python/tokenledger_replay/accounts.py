"""Assigning trace rows to accounts, and how much each account is funded.

Rows that carry a ``session_id`` go to that session's account; the others get
a seeded Zipf draw over ``N`` synthetic accounts, so that a few accounts are
hot, as with real tenants. Everything here is deterministic given the seed.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from tokenledger_replay.trace import TokenColumn, TraceRow

DEFAULT_EXPONENT = 1.1
SHORTFALL_SHARE = 0.25
"""Share of accounts funded below their demand under ``--funding auto``."""
SHORTFALL_RATIO = (9, 10)
"""Those accounts get 9/10 of their demand, so their last consumptions are refused."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._:@-]")


class ZipfSampler:
    """Draws ranks ``1..n`` with ``P(k) ∝ 1 / k**exponent`` from a seeded RNG.

    Uses cumulative weights and bisection: ``O(n)`` to build, ``O(log n)`` a draw.

    Raises:
        ValueError: ``n < 1`` or ``exponent < 0``.
    """

    def __init__(self, n: int, exponent: float, rng: random.Random) -> None:
        if n < 1:
            msg = f"need at least one account, got {n}"
            raise ValueError(msg)
        if exponent < 0:
            msg = f"Zipf exponent must be >= 0, got {exponent}"
            raise ValueError(msg)
        self.n = n
        self._rng = rng
        self._cumulative = list(accumulate(1.0 / k**exponent for k in range(1, n + 1)))

    def draw(self) -> int:
        """One rank in ``1..n`` (1 is the hottest)."""
        u = self._rng.random() * self._cumulative[-1]
        return min(bisect_right(self._cumulative, u), self.n - 1) + 1


def account_key(row: TraceRow, sampler: ZipfSampler) -> str:
    """The run-independent key of ``row``'s account: ``s-<session>`` or ``z<rank>``.

    Draws from ``sampler`` only when the row has no session id.
    """
    if row.session_id:
        return "s-" + _UNSAFE.sub("_", row.session_id)
    return f"z{sampler.draw()}"


def account_id(run_id: str, key: str) -> str:
    """The API account id ``replay-<run_id>-<key>`` (≤ 128 chars, contract charset)."""
    return f"replay-{run_id}-{key}"[:128]


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay posts.

    ``rows[i]`` is consumed by ``accounts[i]`` for ``amounts[i]`` tokens (all ≥ 1);
    ``demand`` and ``funding`` map account ids to tokens; ``skipped`` counts rows
    whose amount was 0.
    """

    run_id: str
    rows: list[TraceRow]
    accounts: list[str]
    amounts: list[int]
    skipped: int
    demand: dict[str, int]
    funding: dict[str, int] = field(default_factory=dict)


def assign_accounts(
    rows: Sequence[TraceRow], n_accounts: int, seed: int, exponent: float = DEFAULT_EXPONENT
) -> list[str]:
    """The account key of each row, in order (see :func:`account_key`).

    The Zipf draws are taken in file order from ``random.Random(seed)``, so the
    first rows get the same accounts whatever ``--limit`` is.
    """
    sampler = ZipfSampler(n_accounts, exponent, random.Random(seed))  # noqa: S311 (seeded simulation)
    return [account_key(row, sampler) for row in rows]


def compute_funding(
    demand: Mapping[str, int], seed: int, per_account: int | None = None
) -> dict[str, int]:
    """Tokens to purchase for each account of ``demand`` (account → total tokens).

    With ``per_account`` every account gets exactly that. Otherwise (``auto``),
    each account gets its whole demand, except a seeded ~25% of them that get
    ``demand * 9 // 10`` (at least 1), so that their last consumptions are
    refused with 402. The choice depends on the seed and the account id only.

    Raises:
        ValueError: ``per_account < 1``.
    """
    if per_account is not None:
        if per_account < 1:
            msg = f"funding must be >= 1 token, got {per_account}"
            raise ValueError(msg)
        return dict.fromkeys(demand, per_account)
    num, den = SHORTFALL_RATIO
    funding: dict[str, int] = {}
    for account, total in demand.items():
        rng = random.Random(f"{seed}:funding:{account}")  # noqa: S311 (seeded simulation)
        short = rng.random() < SHORTFALL_SHARE
        funding[account] = max(1, total * num // den) if short else max(1, total)
    return funding


def plan_replay(
    rows: Sequence[TraceRow],
    *,
    run_id: str,
    n_accounts: int,
    seed: int,
    column: TokenColumn = "total_tokens",
    funding: int | None = None,
    exponent: float = DEFAULT_EXPONENT,
) -> ReplayPlan:
    """Assigns, filters (amount 0 → skipped) and funds ``rows`` for run ``run_id``.

    The funding choice is keyed by the run-independent account key, so two runs
    with the same seed differ only in account ids.
    """
    keys = assign_accounts(rows, n_accounts, seed, exponent)
    kept: list[TraceRow] = []
    accounts: list[str] = []
    amounts: list[int] = []
    demand_by_key: dict[str, int] = {}
    skipped = 0
    for row, key in zip(rows, keys, strict=True):
        amount = row.tokens(column)
        if amount < 1:
            skipped += 1
            continue
        kept.append(row)
        accounts.append(account_id(run_id, key))
        amounts.append(amount)
        demand_by_key[key] = demand_by_key.get(key, 0) + amount
    funding_by_key = compute_funding(demand_by_key, seed, funding)
    return ReplayPlan(
        run_id=run_id,
        rows=kept,
        accounts=accounts,
        amounts=amounts,
        skipped=skipped,
        demand={account_id(run_id, k): v for k, v in demand_by_key.items()},
        funding={account_id(run_id, k): v for k, v in funding_by_key.items()},
    )
