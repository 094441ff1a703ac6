"""The JSON objects of the contract (``API.md`` v1.1) as ``TypedDict``\\ s.

Results are the decoded JSON itself, typed: nothing is copied or converted, a
field a later contract adds is still there (under its own key), and a result
can be serialized again as it is. Amounts are integers in tokens; ``position``
is the entry's place in the ledger's global log; ``version`` is its place in
its account's history (1, 2, 3, …); timestamps are RFC 3339 strings in UTC
(``…Z``).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

EntryType = Literal[
    "purchase",
    "grant",
    "consumption",
    "deduction",
    "refund",
    "hold",
    "hold_capture",
    "hold_release",
    "hold_expiry",
    "credit_expiry",
    "credit_limit_change",
]
"""The ``type`` of an entry."""


class Entry(TypedDict):
    """One ledger entry. Fields that do not apply to its ``type`` are ``None``.

    ``amount`` is in tokens (≥ 1; for ``credit_limit_change`` the new limit);
    ``delta_available`` is its signed effect on ``available``; ``hash`` is 64
    hex digits chaining it to the account's previous entry.
    """

    id: str
    account_id: str
    type: EntryType
    amount: int
    delta_available: int
    version: int
    position: int
    recorded_at: str
    idempotency_key: str | None
    actor: str
    operation: str | None
    model: str | None
    payment_reference: str | None
    reason: str | None
    hold_id: str | None
    refund_of: str | None
    expires_at: str | None
    metadata: dict[str, Any]
    hash: str


class Balance(TypedDict):
    """An account's balance, in tokens, as of the entry at ``position``.

    ``available + held == purchased + granted + refunded - consumed - deducted
    - expired`` and ``available >= -credit_limit``. ``stale`` is present (and
    ``True``) only on a read with ``min_position`` that the projection did not
    reach within ``wait`` seconds.
    """

    account_id: str
    available: int
    held: int
    credit_limit: int
    purchased: int
    granted: int
    consumed: int
    refunded: int
    deducted: int
    expired: int
    version: int
    position: int
    updated_at: str | None
    hash: str
    stale: NotRequired[bool]


class WriteResult(TypedDict):
    """What every write answers: the entry it recorded and the account's
    balance right after it (read-your-writes). ``idempotent_replayed`` is
    present (``True``) when the answer repeats the first answer given to the
    write's idempotency key (the server sent ``Idempotent-Replayed: true``),
    as in a batch result."""

    entry: Entry
    balance: Balance
    idempotent_replayed: NotRequired[bool]


class Problem(TypedDict):
    """An RFC 9457 problem object. Extra members depend on ``code``:
    ``available``/``requested`` (``insufficient-balance``), ``errors``
    (``validation-error``), ``counter``/``limit`` (``balance-limit-exceeded``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class BatchResult(TypedDict):
    """One operation's result in a batch, in request order: ``status`` 201 with
    ``entry`` and ``balance`` (and ``idempotent_replayed`` when it repeats an
    earlier answer), or a 4xx/5xx ``status`` with its ``problem``. See
    :func:`tokenledger_client.batch_error`."""

    status: int
    entry: NotRequired[Entry]
    balance: NotRequired[Balance]
    idempotent_replayed: NotRequired[bool]
    problem: NotRequired[Problem]


class EntriesPage(TypedDict):
    """A page of an account's entries in version order; ``next_after_version``
    is the ``after_version`` of the next page, ``None`` after the last."""

    entries: list[Entry]
    next_after_version: int | None


class GlobalEntriesPage(TypedDict):
    """A page of the global log in position order; ``next_after_position`` is
    the ``after_position`` of the next page, ``None`` after the last."""

    entries: list[Entry]
    next_after_position: int | None


class ActiveHold(TypedDict):
    """An active hold: ``amount`` tokens held until ``expires_at``."""

    hold_id: str
    amount: int
    expires_at: str
    operation: str | None
    created_at: str


class CreditBucket(TypedDict):
    """Credit of a purchase or grant with tokens ``remaining`` (of ``amount``),
    expiring at ``expires_at`` (``None``: never)."""

    entry_id: str
    type: Literal["purchase", "grant"]
    amount: int
    remaining: int
    expires_at: str | None


class TypeTotal(TypedDict):
    """The entries of one type in a statement's window: how many, and the sum
    of their ``amount`` in tokens."""

    count: int
    amount: int


Statement = TypedDict(
    "Statement",
    {
        "account_id": str,
        "from": str,
        "to": str,
        "opening": Balance,
        "closing": Balance,
        "totals": dict[str, TypeTotal],
        "first_version": int | None,
        "last_version": int | None,
    },
)
"""An account over ``[from, to)``: ``opening`` is the balance after every
entry recorded before ``from``, ``closing`` after every entry recorded before
``to``; ``totals`` by entry type; ``first_version``/``last_version`` name the
window's entries (``None`` when there are none)."""


class StreamToken(TypedDict):
    """A token that reads one account (balance, entries, their streams) until
    ``expires_at``; pass it as ``api_key`` of a client, or to a browser."""

    token: str
    account_id: str
    expires_at: str
