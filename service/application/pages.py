"""The read answers the application builds (contract v1.1): one definition of
each shape, used to build it (``mypy --strict`` checks it), to serialize it
(orjson) and to document it (FastAPI reads these as OpenAPI components).

Entries and balances are :mod:`service.domain.published`. Times are RFC 3339
UTC strings; amounts are tokens.
"""

from __future__ import annotations

from typing_extensions import TypedDict

from service.domain.published import BalancePublic, EntryPublic

__all__ = [
    "CreditPublic",
    "CreditsPublic",
    "EntriesPage",
    "GlobalEntriesPage",
    "HoldPublic",
    "HoldsPublic",
    "StatementPublic",
    "TypeTotalPublic",
]


class EntriesPage(TypedDict):
    """An account's entries in version order."""

    entries: list[EntryPublic]
    next_after_version: int | None
    """Pass as `after_version` for the next page; null on the last page."""


class GlobalEntriesPage(TypedDict):
    """The global log in position order (scope `audit`)."""

    entries: list[EntryPublic]
    next_after_position: int | None
    """Pass as `after_position` for the next page; null on the last page."""


class HoldPublic(TypedDict):
    """An active hold: tokens reserved until `expires_at`."""

    hold_id: str
    amount: int
    expires_at: str
    operation: str | None
    created_at: str


class HoldsPublic(TypedDict):
    holds: list[HoldPublic]


class CreditPublic(TypedDict):
    """A credit bucket with tokens left, in draw-down order."""

    entry_id: str
    """The purchase or grant that opened it."""
    type: str
    amount: int
    remaining: int
    expires_at: str | None


class CreditsPublic(TypedDict):
    credits: list[CreditPublic]


class TypeTotalPublic(TypedDict):
    """The entries of one type in a statement's window."""

    count: int
    """Entries of this type in the window (at least 1)."""
    amount: int
    """Sum of their `amount` in tokens (`credit_limit_change`: of the limits)."""


StatementPublic = TypedDict(
    "StatementPublic",
    {
        "account_id": str,
        "from": str,
        "to": str,
        "opening": BalancePublic,
        "closing": BalancePublic,
        "totals": dict[str, TypeTotalPublic],
        "first_version": int | None,
        "last_version": int | None,
    },
)
StatementPublic.__doc__ = """``GET /v1/accounts/{id}/statement``: the account over
``[from, to)``. ``opening``: after every entry recorded before ``from`` (version
0 and zeros when none); ``closing``: after every entry recorded before ``to``;
``totals``: by entry type, the window's entries (types without entries left
out); ``first_version``/``last_version``: the window's first and last entry
(null when none)."""
