"""The write operations of contract v1 as :class:`Write` plans for the ledger.

Each function takes the parsed request (amounts in tokens), the ``actor`` (the
API key's name) and the optional idempotency request, and returns the
:class:`Write` to submit (``Ledger.submit_write`` / ``Ledger.execute_write``):
no I/O, except for captures, releases and refunds, which first read the entry
they point at (blocking). Errors are :class:`LedgerError` subclasses.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from uuid import UUID

from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Ledger, Write
from service.domain.account import Account, Outcome, RefundTarget
from service.domain.errors import EntryNotFound, HoldNotActive, HoldNotFound
from service.domain.events import HoldPlaced
from service.domain.values import REFUNDABLE, account_uuid, entry_version_of

Idem = IdempotencyRequest | None


def _common(actor: str, idem: Idem, metadata: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "actor": actor,
        "idempotency_key": idem.key if idem else None,
        "metadata": metadata or {},
        "command_id": os.urandom(12).hex(),  # the same for every run of this write
    }


def purchase(
    account_id: str,
    amount: int,
    *,
    actor: str,
    idem: Idem,
    payment_reference: str | None = None,
    expires_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> Write:
    fields = _common(actor, idem, metadata)
    return Write(
        account_id,
        lambda a, now: a.purchase(
            amount, expires_at=expires_at, now=now, payment_reference=payment_reference, **fields
        ),
        idem,
    )


def grant(
    account_id: str,
    amount: int,
    *,
    actor: str,
    idem: Idem,
    reason: str | None = None,
    expires_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> Write:
    fields = _common(actor, idem, metadata)
    return Write(
        account_id,
        lambda a, now: a.grant(amount, expires_at=expires_at, now=now, reason=reason, **fields),
        idem,
    )


def consume(
    account_id: str,
    amount: int,
    *,
    actor: str,
    idem: Idem,
    operation: str | None = None,
    model: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Write:
    fields = _common(actor, idem, metadata)
    return Write(
        account_id,
        lambda a, now: a.consume(amount, now=now, operation=operation, model=model, **fields),
        idem,
    )


def deduct(
    account_id: str,
    amount: int,
    *,
    actor: str,
    idem: Idem,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Write:
    fields = _common(actor, idem, metadata)
    return Write(
        account_id, lambda a, now: a.deduct(amount, now=now, reason=reason, **fields), idem
    )


def place_hold(
    account_id: str,
    amount: int,
    *,
    actor: str,
    idem: Idem,
    ttl_seconds: int = 900,
    operation: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Write:
    fields = _common(actor, idem, metadata)
    return Write(
        account_id,
        lambda a, now: a.place_hold(
            amount, ttl_seconds=ttl_seconds, now=now, operation=operation, **fields
        ),
        idem,
    )


def capture_hold(
    ledger: Ledger, account_id: str, hold_id: UUID, amount: int | None, *, actor: str, idem: Idem
) -> Write:
    """Raises HoldNotFound (404), HoldNotActive (409), ValidationFailed (422)."""
    _check_hold(ledger, account_id, hold_id)
    fields = _common(actor, idem, None)
    return _on_hold(
        account_id,
        hold_id,
        idem,
        lambda a, now: a.capture_hold(str(hold_id), amount, now=now, **fields),
    )


def release_hold(
    ledger: Ledger, account_id: str, hold_id: UUID, *, actor: str, idem: Idem
) -> Write:
    """Raises HoldNotFound (404), HoldNotActive (409)."""
    _check_hold(ledger, account_id, hold_id)
    fields = _common(actor, idem, None)
    return _on_hold(
        account_id,
        hold_id,
        idem,
        lambda a, now: a.release_hold(str(hold_id), now=now, **fields),
    )


def refund(
    ledger: Ledger,
    account_id: str,
    entry_id: UUID,
    amount: int | None,
    *,
    actor: str,
    idem: Idem,
    reason: str | None = None,
) -> Write:
    """Raises EntryNotFound (404) unless ``entry_id`` is a consumption (or hold
    capture) of the account; RefundExceedsConsumption (409)."""
    version = entry_version_of(account_uuid(account_id), entry_id)
    try:
        if version is None:
            raise LookupError(entry_id)
        entry, _ = ledger.entry_at(account_id, version)
    except LookupError:
        raise EntryNotFound(f"no consumption {entry_id} in account {account_id}") from None
    if entry.entry_type not in REFUNDABLE:
        raise EntryNotFound(f"entry {entry_id} is a {entry.entry_type.value}, not a consumption")
    target = RefundTarget(str(entry_id), entry.amount, list(entry.draws))
    fields = _common(actor, idem, None)
    return Write(
        account_id, lambda a, now: a.refund(target, amount, now=now, reason=reason, **fields), idem
    )


def set_credit_limit(account_id: str, credit_limit: int, *, actor: str, idem: Idem) -> Write:
    fields = _common(actor, idem, None)
    return Write(
        account_id,
        lambda a, now: a.set_credit_limit(credit_limit, now=now, **fields),
        idem,
    )


def _check_hold(ledger: Ledger, account_id: str, hold_id: UUID) -> None:
    """Raises HoldNotFound unless ``hold_id`` names a hold entry of the account."""
    version = entry_version_of(account_uuid(account_id), hold_id)
    try:
        if version is None:
            raise LookupError(hold_id)
        entry, _ = ledger.entry_at(account_id, version)
    except LookupError:
        raise HoldNotFound(f"no hold {hold_id} in account {account_id}") from None
    if not isinstance(entry, HoldPlaced):
        raise HoldNotFound(f"no hold {hold_id} in account {account_id}")


def _on_hold(account_id: str, hold_id: UUID, idem: Idem, command: Any) -> Write:
    def run(account: Account, now: datetime) -> Outcome:
        try:
            outcome: Outcome = command(account, now)
        except HoldNotFound:
            raise HoldNotActive(f"hold {hold_id} is no longer active") from None
        return outcome

    return Write(account_id, run, idem)
