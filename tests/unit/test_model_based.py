"""Model-based test of the Account aggregate and the balance projection.

Hypothesis runs random sequences of every command (purchases and grants with or
without expiry, consumptions, deductions, holds and their captures, releases
and expiries, refunds, credit limit changes, and a fake clock moving on) against

- the real :class:`~service.domain.account.Account` aggregate, and
- :class:`ReferenceLedger`, a plain model written from the contract (counters,
  a list of credit buckets, a dict of holds) that shares no code with the domain,

and after every step checks the contract's invariant, ``available >=
-credit_limit``, that both agree on every balance and every accepted / refused
decision, and that the balance projection (the real SQLite view, fed every
entry) shows the aggregate's balance.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.utils import Environment
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from projections.balances import expiry_schedule
from projections.views import SQLiteBalanceView
from service.adapters.migrate import migrate
from service.api.errors import status_of
from service.config import APPLICATION_NAME, Settings
from service.domain.account import Account, RefundTarget
from service.domain.errors import HoldNotActive, HoldNotFound, LedgerError
from service.domain.events import LedgerEntry
from service.domain.values import entry_id_for
from tests.helpers.balances import COUNTERS

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Small amounts often, so balances hit zero, debts get repaid, buckets run empty.
amounts = st.integers(min_value=1, max_value=5) | st.integers(min_value=1, max_value=120)
# A coarse time grid so that expiries often coincide with each other and with "now".
offsets = st.sampled_from([30, 60, 90, 300, 600, 3600, 7200])
steps = st.sampled_from([1, 29, 30, 60, 300, 1800, 3600])
picks = st.integers(min_value=0, max_value=10**6)


# The reference model -----------------------------------------------------------


class Refused(Exception):
    """A command the reference model refuses, with the contract's status."""

    def __init__(self, status: int, **extra: int) -> None:
        super().__init__(status)
        self.status = status
        self.extra = extra


@dataclass
class RefBucket:
    amount: int
    left: int
    expires_at: datetime | None
    order: int


@dataclass
class RefHold:
    amount: int
    expires_at: datetime
    parts: list[tuple[RefBucket | None, int]]
    open: bool = True


@dataclass
class RefDebit:
    amount: int
    parts: list[tuple[RefBucket | None, int]]
    refunded: int = 0


@dataclass
class ReferenceLedger:
    """What the contract says, as simply as possible.

    Credit lives in buckets; what no bucket covers is borrowed (``loose`` < 0)
    and repaid first by the next credit. A refund of borrowed tokens after the
    debt was repaid leaves free non-expiring credit (``loose`` > 0).
    """

    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    buckets: list[RefBucket] = field(default_factory=list)
    loose: int = 0
    holds: list[RefHold] = field(default_factory=list)
    debits: list[RefDebit] = field(default_factory=list)
    entries: int = 0
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def _entry(self, **changes: int) -> None:
        for name, change in changes.items():
            self.counters[name] += change
        self.entries += 1

    # credit in and out
    def _credit(self, amount: int, expires_at: datetime | None) -> None:
        repay = min(amount, max(-self.loose, 0))
        self.loose += repay
        if amount > repay:
            self.buckets.append(RefBucket(amount, amount - repay, expires_at, next(self._order)))

    def _take(self, amount: int) -> list[tuple[RefBucket | None, int]]:
        def order(b: RefBucket) -> tuple[bool, datetime, int]:
            return (b.expires_at is None, b.expires_at or T0, b.order)

        parts: list[tuple[RefBucket | None, int]] = []
        for bucket in sorted((b for b in self.buckets if b.left > 0), key=order):
            if amount == 0:
                break
            take = min(amount, bucket.left)
            bucket.left -= take
            amount -= take
            parts.append((bucket, take))
        if amount:
            self.loose -= amount
            parts.append((None, amount))
        return parts

    def _give_back(self, parts: list[tuple[RefBucket | None, int]]) -> None:
        for bucket, amount in parts:
            if bucket is None:
                self.loose += amount
            else:
                bucket.left += amount

    @staticmethod
    def _first(
        parts: list[tuple[RefBucket | None, int]], tokens: int
    ) -> tuple[list[tuple[RefBucket | None, int]], list[tuple[RefBucket | None, int]]]:
        head, tail = [], []
        for bucket, amount in parts:
            now = min(amount, tokens)
            tokens -= now
            if now:
                head.append((bucket, now))
            if amount - now:
                tail.append((bucket, amount - now))
        return head, tail

    # time
    def settle(self, now: datetime) -> None:
        """Expiries due at ``now``, in the order they fell due (a hold before a
        bucket expiring at the same instant, so its tokens expire with it)."""
        while True:
            due: list[tuple[datetime, int, int, RefHold | RefBucket]] = [
                (h.expires_at, 0, i, h)
                for i, h in enumerate(self.holds)
                if h.open and h.expires_at <= now
            ]
            due += [
                (b.expires_at, 1, i, b)
                for i, b in enumerate(self.buckets)
                if b.expires_at is not None and b.expires_at <= now and b.left
            ]
            if not due:
                return
            item = min(due, key=lambda d: d[:3])[3]
            if isinstance(item, RefHold):
                item.open = False
                self._give_back(item.parts)
                self._entry(available=item.amount, held=-item.amount)
            else:
                left, item.left = item.left, 0
                self._entry(available=-left, expired=left)

    # commands
    def credit(self, kind: str, amount: int, expires_at: datetime | None, now: datetime) -> None:
        self.settle(now)
        self._credit(amount, expires_at)
        self._entry(available=amount, **{kind: amount})

    def _check_funds(self, amount: int) -> None:
        if self.counters["available"] - amount < -self.counters["credit_limit"]:
            raise Refused(402, available=self.counters["available"], requested=amount)

    def debit(self, kind: str, amount: int, now: datetime) -> RefDebit:
        self.settle(now)
        self._check_funds(amount)
        debit = RefDebit(amount, self._take(amount))
        self._entry(available=-amount, **{kind: amount})
        return debit

    def hold(self, amount: int, ttl: int, now: datetime) -> RefHold:
        self.settle(now)
        self._check_funds(amount)
        hold = RefHold(amount, now + timedelta(seconds=ttl), self._take(amount))
        self.holds.append(hold)
        self._entry(available=-amount, held=amount)
        return hold

    def capture(self, hold: RefHold, amount: int | None, now: datetime) -> RefDebit:
        self.settle(now)
        if not hold.open:
            raise Refused(409)
        captured = hold.amount if amount is None else amount
        if captured > hold.amount:
            raise Refused(422)
        hold.open = False
        used, rest = self._first(hold.parts, captured)
        self._give_back(rest)
        self._entry(available=hold.amount - captured, held=-hold.amount, consumed=captured)
        self.settle(now)
        return RefDebit(captured, used)

    def release(self, hold: RefHold, now: datetime) -> None:
        self.settle(now)
        if not hold.open:
            raise Refused(409)
        hold.open = False
        self._give_back(hold.parts)
        self._entry(available=hold.amount, held=-hold.amount)
        self.settle(now)

    def refund(self, debit: RefDebit, amount: int | None, now: datetime) -> None:
        self.settle(now)
        left = debit.amount - debit.refunded
        refund = left if amount is None else amount
        if refund <= 0 or refund > left:
            raise Refused(409)
        back = list(reversed(debit.parts))
        _, back = self._first(back, debit.refunded)
        back, _ = self._first(back, refund)
        self._give_back(back)
        debit.refunded += refund
        self._entry(available=refund, refunded=refund)
        self.settle(now)

    def set_credit_limit(self, limit: int, now: datetime) -> None:
        self.settle(now)
        if self.counters["available"] < -limit:
            raise Refused(422)
        self.counters["credit_limit"] = limit
        self._entry()

    def tokens_in_hand(self) -> int:
        """Free tokens by the model's own books (must equal ``available``)."""
        return sum(b.left for b in self.buckets) + self.loose


# The projection under test -----------------------------------------------------


class Projection:
    """The real SQLite balance view, shared by every example (one account each)."""

    def __init__(self) -> None:
        self.directory = tempfile.TemporaryDirectory()
        config = Settings(database_url=f"sqlite:///{Path(self.directory.name) / 'view.db'}")
        migrate(config)
        factory = InfrastructureFactory[SQLiteBalanceView].construct(
            env=Environment("balances", config.eventsourcing_env())
        )
        self.view = factory.tracking_recorder(SQLiteBalanceView)
        self.positions = itertools.count(1)

    def feed(self, entries: list[LedgerEntry]) -> None:
        for entry in entries:
            tracking = Tracking(APPLICATION_NAME, next(self.positions))
            assert self.view.apply_entry(entry, tracking, expiry_schedule(entry)) is not None


PROJECTION: Projection | None = None


def projection() -> Projection:
    global PROJECTION
    if PROJECTION is None:
        PROJECTION = Projection()
    return PROJECTION


# The state machine -------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.account = Account(account_id=f"model-{uuid.uuid4().hex[:12]}")
        self.model = ReferenceLedger()
        self.holds: list[tuple[str, RefHold]] = []
        self.debits: list[tuple[RefundTarget, RefDebit]] = []
        self.history: list[Any] = []
        self.projection = projection()
        self.last_position_version = 0

    # running a command on both sides
    def both(self, real: Any, reference: Any) -> tuple[Any, Any]:
        try:
            outcome = real()
        except LedgerError as error:
            real_result: tuple[str, Any] = ("refused", error)
        else:
            real_result = ("accepted", outcome)
        try:
            modelled = reference()
        except Refused as refusal:
            model_result: tuple[str, Any] = ("refused", refusal)
        else:
            model_result = ("accepted", modelled)
        assert real_result[0] == model_result[0], (real_result, model_result)
        # A refused command may still have settled due expiries first; they are
        # kept (as if the sweeper had recorded them) on both sides.
        self.sync()
        if real_result[0] == "refused":
            raised: LedgerError = real_result[1]
            refused: Refused = model_result[1]
            assert status_of(raised) == refused.status, (raised, refused)
            if refused.status == 402:
                assert raised.context == refused.extra
            return None, None
        return real_result[1], model_result[1]

    def sync(self) -> None:
        events = self.account.collect_events()
        self.history.extend(events)
        self.projection.feed([e for e in events if isinstance(e, LedgerEntry)])

    def target(self, entry: LedgerEntry) -> RefundTarget:
        return RefundTarget(
            str(entry_id_for(self.account.id, entry.originator_version)),
            entry.amount,
            list(entry.draws),
        )

    # rules
    @rule(amount=amounts, expires=st.none() | offsets, kind=st.sampled_from(["purchase", "grant"]))
    def credit(self, amount: int, expires: int | None, kind: str) -> None:
        expires_at = None if expires is None else self.now + timedelta(seconds=expires)
        command = self.account.purchase if kind == "purchase" else self.account.grant
        counter = "purchased" if kind == "purchase" else "granted"
        self.both(
            lambda: command(amount, expires_at=expires_at, now=self.now),
            lambda: self.model.credit(counter, amount, expires_at, self.now),
        )

    @rule(amount=amounts, kind=st.sampled_from(["consume", "deduct"]))
    def debit(self, amount: int, kind: str) -> None:
        command = self.account.consume if kind == "consume" else self.account.deduct
        counter = "consumed" if kind == "consume" else "deducted"
        outcome, debit = self.both(
            lambda: command(amount, now=self.now),
            lambda: self.model.debit(counter, amount, self.now),
        )
        if outcome is not None and kind == "consume":
            self.debits.append((self.target(outcome.entry), debit))

    @rule(amount=amounts, ttl=offsets)
    def hold(self, amount: int, ttl: int) -> None:
        outcome, hold = self.both(
            lambda: self.account.place_hold(amount, ttl_seconds=ttl, now=self.now),
            lambda: self.model.hold(amount, ttl, self.now),
        )
        if outcome is not None:
            entry = outcome.entry
            # the hold is named by its own entry (captures and releases find it so)
            assert entry.hold_id == str(entry_id_for(self.account.id, entry.originator_version))
            self.holds.append((entry.hold_id, hold))

    def on_hold(self, command: Any) -> Any:
        """A hold that is no longer active is 409 (as ``commands`` answers)."""

        def run() -> Any:
            try:
                return command()
            except HoldNotFound:
                raise HoldNotActive() from None

        return run

    @precondition(lambda self: self.holds)
    @rule(pick=picks, how=st.sampled_from(["full", "partial", "over"]), extra=amounts)
    def capture(self, pick: int, how: str, extra: int) -> None:
        hold_id, hold = self.holds[pick % len(self.holds)]
        amount = {
            "full": None,
            "partial": max(1, hold.amount - extra),
            "over": hold.amount + extra,
        }[how]
        outcome, debit = self.both(
            self.on_hold(lambda: self.account.capture_hold(hold_id, amount, now=self.now)),
            lambda: self.model.capture(hold, amount, self.now),
        )
        if outcome is not None:
            self.debits.append((self.target(outcome.entry), debit))

    @precondition(lambda self: self.holds)
    @rule(pick=picks)
    def release(self, pick: int) -> None:
        hold_id, hold = self.holds[pick % len(self.holds)]
        self.both(
            self.on_hold(lambda: self.account.release_hold(hold_id, now=self.now)),
            lambda: self.model.release(hold, self.now),
        )

    @precondition(lambda self: self.debits)
    @rule(pick=picks, how=st.sampled_from(["whole", "partial", "excess"]), part=amounts)
    def refund(self, pick: int, how: str, part: int) -> None:
        target, debit = self.debits[pick % len(self.debits)]
        left = debit.amount - debit.refunded
        amount = {"whole": None, "partial": max(1, min(part, left)), "excess": left + part}[how]
        self.both(
            lambda: self.account.refund(target, amount, now=self.now),
            lambda: self.model.refund(debit, amount, self.now),
        )

    @rule(limit=st.integers(min_value=0, max_value=10) | st.integers(min_value=0, max_value=300))
    def set_credit_limit(self, limit: int) -> None:
        self.both(
            lambda: self.account.set_credit_limit(limit, now=self.now),
            lambda: self.model.set_credit_limit(limit, self.now),
        )

    @rule(seconds=steps)
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def sweep(self) -> None:
        """What the sweeper does: records the expiries due now."""
        self.account.settle(self.now)
        self.model.settle(self.now)
        self.sync()

    # checks after every step
    @invariant()
    def contract_invariant_holds(self) -> None:
        b = self.account.balance()
        assert (
            b.available + b.held
            == b.purchased + b.granted + b.refunded - b.consumed - b.deducted - b.expired
        )
        assert b.available >= -b.credit_limit
        assert b.held >= 0 and b.credit_limit >= 0

    @invariant()
    def aggregate_agrees_with_the_reference(self) -> None:
        b = self.account.balance()
        assert {c: getattr(b, c) for c in COUNTERS} == self.model.counters
        assert b.version == self.model.entries
        assert self.model.tokens_in_hand() == self.model.counters["available"]
        active = sum(h.amount for h in self.model.holds if h.open)
        assert active == self.model.counters["held"]

    @invariant()
    def projection_agrees_with_the_aggregate(self) -> None:
        b = self.account.balance()
        row = self.projection.view.get_balance(self.account.account_id)
        if b.version == 0:
            assert row is None
            return
        assert row is not None
        assert {c: row[c] for c in (*COUNTERS, "version")} == {
            c: getattr(b, c) for c in (*COUNTERS, "version")
        }

    def teardown(self) -> None:
        # the entries alone rebuild the same account (as a load does)
        rebuilt: Any = None
        for event in self.history:
            rebuilt = event.mutate(rebuilt)
        if rebuilt is not None:
            assert rebuilt.balance() == self.account.balance()
            assert rebuilt.credits() == self.account.credits()
            assert rebuilt.holds.keys() == self.account.holds.keys()


LedgerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "200")),  # more: MODEL_EXAMPLES=2000
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerModel = LedgerMachine.TestCase
