"""Write requests as :class:`Write` plans: one path for the single writes and
the ``POST /v1/batch`` operations (contract v1.1).

Each batch operation stands for the single write of its kind, with the same
fields, rules and idempotency: its key is fingerprinted as the single write's,
so a single write and an equal batch operation under one key replay each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from service.application import commands
from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Ledger, Write
from service.domain.errors import EntryNotFound, HoldNotFound

NEEDS_STORE = frozenset({"refund", "capture", "release"})
"""Kinds whose plan first reads the entry they name (blocking)."""
TARGETS: dict[str, tuple[type[HoldNotFound] | type[EntryNotFound], str]] = {
    "refund": (EntryNotFound, "consumption"),
    "capture": (HoldNotFound, "hold"),
    "release": (HoldNotFound, "hold"),
}
"""The error answered for an id that names nothing, per kind naming one."""


def parse_target(kind: str, value: str) -> UUID:
    """The id a refund, capture or release names (path or operation field).

    Raises:
        EntryNotFound, HoldNotFound: ``value`` is not a UUID (404), as for an
            id that names nothing.
    """
    try:
        return UUID(value)
    except ValueError:
        error, what = TARGETS[kind]
        raise error(f"no {what} {value}") from None


@dataclass(frozen=True)
class Operation:
    """A parsed operation: its ``kind``, account, validated body ``fields``
    (the single write's request model), the id it names (``target``: the
    consumption of a refund, the hold of a capture or release) and its
    idempotency request."""

    kind: str
    account_id: str
    fields: Any
    target: UUID | None
    idempotency: IdempotencyRequest | None


def plan(ledger: Ledger, op: Operation, actor: str) -> Write:
    """The :class:`Write` of ``op`` (blocking for the kinds in :data:`NEEDS_STORE`).

    Raises:
        HoldNotFound, EntryNotFound: the named hold or consumption does not
            exist in the account (404).
    """
    v, account, idem = op.fields, op.account_id, op.idempotency
    if op.kind == "purchase":
        return commands.purchase(
            account,
            v.amount,
            actor=actor,
            idem=idem,
            payment_reference=v.payment_reference,
            expires_at=v.expires_at,
            metadata=v.metadata,
        )
    if op.kind == "grant":
        return commands.grant(
            account,
            v.amount,
            actor=actor,
            idem=idem,
            reason=v.reason,
            expires_at=v.expires_at,
            metadata=v.metadata,
        )
    if op.kind == "consume":
        return commands.consume(
            account,
            v.amount,
            actor=actor,
            idem=idem,
            operation=v.operation,
            model=v.model,
            metadata=v.metadata,
        )
    if op.kind == "deduct":
        return commands.deduct(
            account, v.amount, actor=actor, idem=idem, reason=v.reason, metadata=v.metadata
        )
    if op.kind == "hold":
        return commands.place_hold(
            account,
            v.amount,
            actor=actor,
            idem=idem,
            ttl_seconds=v.ttl_seconds,
            operation=v.operation,
            metadata=v.metadata,
        )
    assert op.target is not None
    if op.kind == "refund":
        return commands.refund(
            ledger, account, op.target, v.amount, actor=actor, idem=idem, reason=v.reason
        )
    if op.kind == "capture":
        return commands.capture_hold(ledger, account, op.target, v.amount, actor=actor, idem=idem)
    if op.kind == "release":
        return commands.release_hold(ledger, account, op.target, actor=actor, idem=idem)
    raise ValueError(op.kind)


def plan_credit_limit(op: Operation, actor: str) -> Write:
    """The :class:`Write` of ``PATCH /v1/accounts/{id}`` (not a batch kind)."""
    return commands.set_credit_limit(
        op.account_id, op.fields.credit_limit, actor=actor, idem=op.idempotency
    )
