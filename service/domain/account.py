"""The ``Account`` aggregate: one per ``account_id``, its events are its entries.

Commands check their invariants (``check_*``), then trigger one entry event.
Every command first *settles* the account at ``now``: holds past their TTL and
credit buckets past their expiry leave as ``hold_expiry`` / ``credit_expiry``
entries, so a command never sees tokens that are no longer there. The account
opens at version 0 (no entry), so entry versions run 1, 2, 3, …
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from eventsourcing.domain import Aggregate, event

from service.domain import events as ev
from service.domain.credit import plan_draws, refund_restores, split_draws
from service.domain.errors import (
    BalanceLimitExceeded,
    HoldNotFound,
    InsufficientBalance,
    RefundExceedsConsumption,
    ValidationFailed,
)
from service.domain.hashing import CANONICAL_KEYS, GENESIS, chain, rfc3339
from service.domain.values import (
    COUNTERS,
    MAX_ACTIVE_HOLDS,
    MAX_COUNTER,
    MAX_CREDIT_BUCKETS,
    Balance,
    Bucket,
    Draw,
    Hold,
    account_uuid,
    entry_id_for,
)

SYSTEM_ACTOR = "system"
"""``actor`` of the entries the ledger records by itself (expiries)."""


class Outcome(NamedTuple):
    """A command's entry and the account's balance right after it."""

    entry: ev.LedgerEntry
    balance: Balance


class RefundTarget(NamedTuple):
    """The debit a refund points at: its entry id, amount and draws."""

    entry_id: str
    amount: int
    draws: list[Draw]


class Account(Aggregate):
    """Balance counters (tokens), credit buckets and active holds of one account."""

    INITIAL_VERSION = 0
    last_hash: str = GENESIS
    """Class default: accounts restored from a snapshot taken before the hash
    chain existed start it from 64 zeros."""

    @staticmethod
    def create_id(account_id: str) -> uuid.UUID:
        return account_uuid(account_id)

    @event("Opened")
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.available = self.held = self.credit_limit = 0
        self.purchased = self.granted = self.consumed = 0
        self.refunded = self.deducted = self.expired = 0
        self.debt = 0
        self.buckets: dict[str, Bucket] = {}
        self.holds: dict[str, Hold] = {}
        self.refunded_of: dict[str, int] = {}
        self.last_hash = GENESIS
        """The hash of the latest entry (the chain's head; 64 zeros before the first)."""

    # Commands ----------------------------------------------------------------

    def purchase(
        self, amount: int, *, expires_at: datetime | None, now: datetime, **fields: Any
    ) -> Outcome:
        self.check_expires_in_future(expires_at, now)
        self.settle(now)
        self.check_room_for_bucket(amount, expires_at)
        return self._record(
            ev.Purchased,
            now,
            amount=amount,
            delta_available=amount,
            expires_at=expires_at,
            **fields,
        )

    def grant(
        self, amount: int, *, expires_at: datetime | None, now: datetime, **fields: Any
    ) -> Outcome:
        self.check_expires_in_future(expires_at, now)
        self.settle(now)
        self.check_room_for_bucket(amount, expires_at)
        return self._record(
            ev.Granted, now, amount=amount, delta_available=amount, expires_at=expires_at, **fields
        )

    def consume(self, amount: int, *, now: datetime, **fields: Any) -> Outcome:
        return self._debit(ev.Consumed, amount, now, **fields)

    def deduct(self, amount: int, *, now: datetime, **fields: Any) -> Outcome:
        return self._debit(ev.Deducted, amount, now, **fields)

    def place_hold(self, amount: int, *, ttl_seconds: int, now: datetime, **fields: Any) -> Outcome:
        self.settle(now)  # expiries first: the hold's entry is then at version + 1
        self.check_room_for_hold()
        expires_at = now + timedelta(seconds=ttl_seconds)
        hold_id = str(entry_id_for(self.id, self.version + 1))
        return self._debit(
            ev.HoldPlaced,
            amount,
            now,
            delta_held=amount,
            hold_id=hold_id,
            expires_at=expires_at,
            **fields,
        )

    def capture_hold(
        self, hold_id: str, amount: int | None, *, now: datetime, **fields: Any
    ) -> Outcome:
        hold = self.get_active_hold(hold_id, now)
        captured = hold.amount if amount is None else amount
        if captured > hold.amount:
            raise ValidationFailed.at(
                ["body", "amount"], f"capture of {captured} exceeds the hold of {hold.amount}"
            )
        consumed, released = split_draws(hold.draws, captured)
        outcome = self._record(
            ev.HoldCaptured,
            now,
            amount=captured,
            hold_id=hold_id,
            delta_available=hold.amount - captured,
            delta_held=-hold.amount,
            draws=consumed,
            restores=released,
            operation=hold.operation,
            **fields,
        )
        self.settle(now)
        return outcome

    def release_hold(self, hold_id: str, *, now: datetime, **fields: Any) -> Outcome:
        hold = self.get_active_hold(hold_id, now)
        outcome = self._record(
            ev.HoldReleased,
            now,
            amount=hold.amount,
            hold_id=hold_id,
            delta_available=hold.amount,
            delta_held=-hold.amount,
            restores=hold.draws,
            operation=hold.operation,
            **fields,
        )
        self.settle(now)
        return outcome

    def refund(
        self, target: RefundTarget, amount: int | None, *, now: datetime, **fields: Any
    ) -> Outcome:
        self.settle(now)
        already = self.refunded_of.get(target.entry_id, 0)
        left = target.amount - already
        refund = left if amount is None else amount
        if refund > left or refund <= 0:
            raise RefundExceedsConsumption(
                f"{refund} tokens requested, {left} of {target.amount} still unrefunded",
                context={"refundable": left, "requested": refund},
            )
        restores = refund_restores(target.draws, already, refund)
        outcome = self._record(
            ev.Refunded,
            now,
            amount=refund,
            delta_available=refund,
            refund_of=target.entry_id,
            restores=restores,
            **fields,
        )
        self.settle(now)
        return outcome

    def set_credit_limit(self, credit_limit: int, *, now: datetime, **fields: Any) -> Outcome:
        self.settle(now)
        if self.available < -credit_limit:
            raise ValidationFailed.at(
                ["body", "credit_limit"],
                f"available is {self.available}: the credit limit must be at least"
                f" {-self.available}",
            )
        return self._record(ev.CreditLimitChanged, now, amount=credit_limit, **fields)

    def settle(self, now: datetime) -> list[ev.LedgerEntry]:
        """Records every hold and credit expiry due at ``now`` (expiry time
        ``<= now``), oldest first; returns the entries triggered."""
        entries: list[ev.LedgerEntry] = []
        while (due := self._next_due(now)) is not None:
            if isinstance(due, Hold):
                outcome = self._record(
                    ev.HoldExpired,
                    now,
                    amount=due.amount,
                    hold_id=due.hold_id,
                    delta_available=due.amount,
                    delta_held=-due.amount,
                    restores=due.draws,
                    expires_at=due.expires_at,
                    operation=due.operation,
                    actor=SYSTEM_ACTOR,
                )
            else:
                draw = Draw(
                    due.entry_id, due.remaining, due.expires_at, due.type, due.amount, due.seq
                )
                outcome = self._record(
                    ev.CreditExpired,
                    now,
                    amount=due.remaining,
                    delta_available=-due.remaining,
                    draws=[draw],
                    expires_at=due.expires_at,
                    actor=SYSTEM_ACTOR,
                    metadata={"credit_entry_id": due.entry_id},
                )
            entries.append(outcome.entry)
        return entries

    # Invariants --------------------------------------------------------------

    def check_can_take(self, amount: int) -> None:
        """Raises :class:`InsufficientBalance` (402) when taking ``amount``
        tokens would leave ``available < -credit_limit``."""
        if self.available - amount < -self.credit_limit:
            raise InsufficientBalance(self.available, amount, self.credit_limit)

    def check_within_limits(self, effects: ev.Effects) -> None:
        """Raises :class:`BalanceLimitExceeded` (422) when ``effects`` would
        take a balance counter or the credit limit above 2^53 - 1 tokens, the
        largest integer every JSON client reads exactly (contract v1.1)."""
        for counter in COUNTERS:
            after = getattr(self, counter) + getattr(effects, counter)
            if after > MAX_COUNTER:
                raise BalanceLimitExceeded(counter, after)
        if effects.credit_limit is not None and effects.credit_limit > MAX_COUNTER:
            raise BalanceLimitExceeded("credit_limit", effects.credit_limit)

    def check_room_for_hold(self) -> None:
        """Raises :class:`ValidationFailed` (422) when the account already has
        ``MAX_ACTIVE_HOLDS`` (1,000) holds open."""
        if len(self.holds) >= MAX_ACTIVE_HOLDS:
            raise ValidationFailed.at(
                ["body", "amount"],
                f"the account already has {MAX_ACTIVE_HOLDS} active holds, the most it may"
                " have: capture or release one first",
            )

    def check_room_for_bucket(self, amount: int, expires_at: datetime | None) -> None:
        """Raises :class:`ValidationFailed` (422) when a credit of ``amount``
        tokens expiring at ``expires_at`` would open a credit bucket beyond
        ``MAX_CREDIT_BUCKETS`` (1,000) expiring buckets with tokens left.
        Credits that never expire are not buckets in the contract's sense and
        are always accepted; a credit that only repays debt opens none."""
        opens_bucket = expires_at is not None and amount > max(self.debt, 0)
        expiring = sum(1 for b in self.buckets.values() if b.expires_at is not None)
        if opens_bucket and expiring >= MAX_CREDIT_BUCKETS:
            raise ValidationFailed.at(
                ["body", "amount"],
                f"the account already has {MAX_CREDIT_BUCKETS} credit buckets with tokens"
                " left, the most it may have",
            )

    @staticmethod
    def check_expires_in_future(expires_at: datetime | None, now: datetime) -> None:
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed.at(["body", "expires_at"], "expires_at must be in the future")

    def get_active_hold(self, hold_id: str, now: datetime) -> Hold:
        """The active hold ``hold_id`` after settling at ``now``; raises
        :class:`HoldNotFound` when it is not active (the application tells a
        closed hold, 409, from an unknown one, 404)."""
        self.settle(now)
        try:
            return self.holds[hold_id]
        except KeyError:
            raise HoldNotFound(f"no active hold {hold_id}") from None

    # Reads -------------------------------------------------------------------

    def balance(self) -> Balance:
        """The balance right after the current version (``position`` unknown)."""
        return Balance(
            account_id=self.account_id,
            available=self.available,
            held=self.held,
            credit_limit=self.credit_limit,
            purchased=self.purchased,
            granted=self.granted,
            consumed=self.consumed,
            refunded=self.refunded,
            deducted=self.deducted,
            expired=self.expired,
            version=self.version,
            updated_at=self.modified_on if self.version else None,
            hash=self.last_hash,
        )

    def credits(self) -> list[Bucket]:
        """Buckets with tokens left, in draw-down order."""
        return sorted((b for b in self.buckets.values() if b.remaining > 0), key=Bucket.draw_order)

    # Mutators used by the entry events (see ``service.domain.events``) ------

    def apply_effects(self, effects: ev.Effects) -> None:
        self.available += effects.available
        self.held += effects.held
        self.purchased += effects.purchased
        self.granted += effects.granted
        self.consumed += effects.consumed
        self.refunded += effects.refunded
        self.deducted += effects.deducted
        self.expired += effects.expired
        if effects.credit_limit is not None:
            self.credit_limit = effects.credit_limit

    def add_credit(self, entry: ev.LedgerEntry) -> None:
        # ``debt`` < 0 is non-expiring credit (a refund of a credit-line draw
        # after the debt was repaid): nothing to repay then.
        repaid = min(entry.amount, max(self.debt, 0))
        self.debt -= repaid
        entry_id = str(entry_id_for(self.id, entry.originator_version))
        if entry.amount > repaid:
            self.buckets[entry_id] = Bucket(
                entry_id,
                entry.entry_type.value,
                entry.amount,
                entry.amount - repaid,
                entry.expires_at,
                entry.originator_version,
            )

    def take(self, draws: list[Draw]) -> None:
        for draw in draws:
            if draw.bucket is None:
                self.debt += draw.amount
                continue
            bucket = self.buckets[draw.bucket]
            bucket.remaining -= draw.amount
            if bucket.remaining == 0:
                del self.buckets[draw.bucket]

    def put_back(self, restores: list[Draw]) -> None:
        for draw in restores:
            if draw.bucket is None:
                self.debt -= draw.amount
            elif draw.bucket in self.buckets:
                self.buckets[draw.bucket].remaining += draw.amount
            else:
                self.buckets[draw.bucket] = Bucket(
                    draw.bucket,
                    draw.type,
                    draw.bucket_amount,
                    draw.amount,
                    draw.expires_at,
                    draw.seq,
                )

    def open_hold(self, entry: ev.LedgerEntry) -> None:
        assert entry.hold_id is not None and entry.expires_at is not None
        self.holds[entry.hold_id] = Hold(
            entry.hold_id,
            entry.amount,
            entry.expires_at,
            entry.operation,
            entry.timestamp,
            list(entry.draws),
        )

    def close_hold(self, entry: ev.LedgerEntry) -> None:
        assert entry.hold_id is not None
        del self.holds[entry.hold_id]
        self.put_back(entry.restores)

    # Internals ---------------------------------------------------------------

    def _debit(
        self, event_class: type[ev.LedgerEntry], amount: int, now: datetime, **fields: Any
    ) -> Outcome:
        self.settle(now)
        self.check_can_take(amount)
        draws = plan_draws(self.buckets.values(), amount)
        return self._record(
            event_class, now, amount=amount, delta_available=-amount, draws=draws, **fields
        )

    def _next_due(self, now: datetime) -> Hold | Bucket | None:
        due: list[tuple[datetime, int, Hold | Bucket]] = [
            (h.expires_at, 0, h) for h in self.holds.values() if h.expires_at <= now
        ]
        due += [
            (b.expires_at, 1, b)
            for b in self.buckets.values()
            if b.expires_at is not None and b.expires_at <= now and b.remaining > 0
        ]
        return min(due, key=lambda d: (d[0], d[1]))[2] if due else None

    def _record(self, event_class: type[ev.LedgerEntry], now: datetime, **fields: Any) -> Outcome:
        values: dict[str, Any] = dict(_ENTRY_DEFAULTS, account_id=self.account_id)
        values.update(fields)
        if self.version:  # an account's entries never go back in time (clock skew)
            now = max(now, self.modified_on)
        if event_class not in _EXPIRIES:  # expiries only move what is there
            self.check_within_limits(
                event_class.effects_of(
                    values["amount"], values["delta_available"], values["delta_held"]
                )
            )
        values["hash"] = self._next_hash(event_class, now, values)
        self.trigger_event(event_class, timestamp=now, **values)
        entry = self.pending_events[-1]
        assert isinstance(entry, ev.LedgerEntry)
        return Outcome(entry, self.balance())

    def _next_hash(
        self, event_class: type[ev.LedgerEntry], now: datetime, values: dict[str, Any]
    ) -> str:
        """The hash of the entry about to be recorded at the next version, from
        its canonical JSON (contract v1.1, "Hash chain")."""
        version = self.version + 1
        rendered = {key: values.get(key) for key in CANONICAL_KEYS}
        rendered["id"] = f"{str(self.id)[:24]}{version:012x}"  # = entry_id_for(id, version)
        rendered["type"] = event_class.entry_type.value
        rendered["version"] = version
        rendered["recorded_at"] = rfc3339(now)
        rendered["expires_at"] = rfc3339(values["expires_at"])
        return chain(self.last_hash, rendered)


_EXPIRIES = (ev.HoldExpired, ev.CreditExpired)

_ENTRY_DEFAULTS: dict[str, Any] = {
    "delta_available": 0,
    "delta_held": 0,
    "actor": SYSTEM_ACTOR,
    "idempotency_key": None,
    "operation": None,
    "model": None,
    "payment_reference": None,
    "reason": None,
    "hold_id": None,
    "refund_of": None,
    "expires_at": None,
    "metadata": {},
    "draws": [],
    "restores": [],
    "command_id": None,
}
