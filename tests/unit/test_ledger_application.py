"""The Ledger application on SQLite: idempotency, concurrency, snapshots, history."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from service.adapters.migrate import migrate
from service.application import commands, reads
from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Ledger, WriteResult
from service.config import Settings
from service.domain.errors import (
    AccountNotFound,
    EntryNotFound,
    HoldNotActive,
    HoldNotFound,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InsufficientBalance,
    RefundExceedsConsumption,
)
from service.domain.values import account_uuid

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self.now += timedelta(**delta)
            return self.now


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/l.db", **overrides)
    migrate(settings)
    return settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def ledger(settings: Settings, clock: FakeClock) -> Iterator[Ledger]:
    app = Ledger(env=settings.eventsourcing_env(), clock=clock)
    yield app
    app.close()


def idem(key: str, path: str, body: dict[str, Any]) -> IdempotencyRequest:
    """The idempotency request of a POST to ``/v1/accounts/{id}/{kind}``."""
    _, _, _, account_id, kind = path.split("/")
    return IdempotencyRequest.of(key, kind, account_id, body)


def entry_count(ledger: Ledger, account_id: str) -> int:
    return len(ledger.ledger_recorder.select_entries(account_uuid(account_id), 0, 10**6))


def fund(ledger: Ledger, account_id: str, amount: int) -> WriteResult:
    return ledger.execute_write(commands.purchase(account_id, amount, actor="test", idem=None))


def test_a_write_answers_its_entry_and_the_balance_right_after_it(ledger: Ledger) -> None:
    result = fund(ledger, "user-1", 1000)
    assert not result.replayed
    entry, balance = result.body["entry"], result.body["balance"]
    assert (entry["type"], entry["amount"], entry["version"], entry["actor"]) == (
        "purchase",
        1000,
        1,
        "test",
    )
    assert entry["position"] == balance["position"] == result.position > 0
    assert (balance["available"], balance["purchased"], balance["version"]) == (1000, 1000, 1)
    assert balance["updated_at"] == entry["recorded_at"] == "2026-03-01T12:00:00.000000Z"


def test_an_idempotent_replay_answers_the_same_body_and_stores_no_new_entry(ledger: Ledger) -> None:
    fund(ledger, "user-1", 1000)
    body = {"amount": 120}
    key = idem("req-1", "/v1/accounts/user-1/consumptions", body)
    first = ledger.execute_write(commands.consume("user-1", 120, actor="chat", idem=key))
    ledger.execute_write(commands.consume("user-1", 5, actor="chat", idem=None))
    again = ledger.execute_write(commands.consume("user-1", 120, actor="chat", idem=key))
    assert not first.replayed and again.replayed
    assert again.body == first.body
    assert again.body["entry"]["idempotency_key"] == "req-1"
    assert entry_count(ledger, "user-1") == 3
    assert reads.current_balance(ledger, "user-1").available == 875


def test_the_same_key_with_a_different_request_is_refused(ledger: Ledger) -> None:
    fund(ledger, "user-1", 1000)
    path = "/v1/accounts/user-1/consumptions"
    ledger.execute_write(
        commands.consume("user-1", 120, actor="chat", idem=idem("req-1", path, {"amount": 120}))
    )
    with pytest.raises(IdempotencyKeyReused) as refused:
        ledger.execute_write(
            commands.consume("user-1", 121, actor="chat", idem=idem("req-1", path, {"amount": 121}))
        )
    assert refused.value.code == "idempotency-key-reused"
    assert entry_count(ledger, "user-1") == 2


def test_idempotency_keys_are_scoped_to_the_account(ledger: Ledger) -> None:
    fund(ledger, "user-1", 10)
    fund(ledger, "user-2", 10)
    body = {"amount": 1}
    a = ledger.execute_write(
        commands.consume(
            "user-1", 1, actor="t", idem=idem("k", "/v1/accounts/user-1/consumptions", body)
        )
    )
    b = ledger.execute_write(
        commands.consume(
            "user-2", 1, actor="t", idem=idem("k", "/v1/accounts/user-2/consumptions", body)
        )
    )
    assert not a.replayed and not b.replayed


def test_a_refused_request_leaves_no_entry_and_its_key_can_be_retried(ledger: Ledger) -> None:
    fund(ledger, "user-1", 10)
    key = idem("req-1", "/v1/accounts/user-1/consumptions", {"amount": 20})
    with pytest.raises(InsufficientBalance):
        ledger.execute_write(commands.consume("user-1", 20, actor="t", idem=key))
    assert entry_count(ledger, "user-1") == 1
    fund(ledger, "user-1", 10)
    assert not ledger.execute_write(commands.consume("user-1", 20, actor="t", idem=key)).replayed


def test_parallel_identical_idempotent_requests_store_exactly_one_entry(ledger: Ledger) -> None:
    fund(ledger, "user-1", 1000)
    key = idem("same", "/v1/accounts/user-1/consumptions", {"amount": 7})
    start = threading.Barrier(16)

    def attempt(_: int) -> WriteResult | Exception:
        start.wait()
        try:
            return ledger.execute_write(commands.consume("user-1", 7, actor="t", idem=key))
        except IdempotencyKeyInFlight as error:
            return error

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    results = [o for o in outcomes if isinstance(o, WriteResult)]
    originals = [r for r in results if not r.replayed]
    assert len(originals) == 1
    assert all(r.body == originals[0].body for r in results)
    assert all(isinstance(o, WriteResult | IdempotencyKeyInFlight) for o in outcomes)
    assert entry_count(ledger, "user-1") == 2
    assert reads.current_balance(ledger, "user-1").available == 993


def test_concurrent_consumptions_never_overdraw_and_accept_exactly_what_fits(
    ledger: Ledger,
) -> None:
    fund(ledger, "user-1", 1000)
    start = threading.Barrier(20)

    def worker(_: int) -> list[bool]:
        start.wait()
        accepted = []
        for _ in range(10):
            try:
                ledger.execute_write(commands.consume("user-1", 7, actor="t", idem=None))
                accepted.append(True)
            except InsufficientBalance:
                accepted.append(False)
        return accepted

    with ThreadPoolExecutor(20) as pool:
        outcomes = [a for batch in pool.map(worker, range(20)) for a in batch]
    accepted = sum(outcomes)
    assert accepted == 1000 // 7
    balance = reads.current_balance(ledger, "user-1")
    assert balance.available == 1000 - 7 * accepted >= 0
    assert balance.consumed == 7 * accepted
    assert entry_count(ledger, "user-1") == 1 + accepted


def test_two_ledger_instances_on_one_database_never_overdraw(
    settings: Settings, clock: FakeClock
) -> None:
    apps = [Ledger(env=settings.eventsourcing_env(), clock=clock) for _ in range(2)]
    try:
        fund(apps[0], "user-1", 100)

        def worker(i: int) -> int:
            accepted = 0
            for _ in range(15):
                try:
                    apps[i % 2].execute_write(commands.consume("user-1", 3, actor="t", idem=None))
                    accepted += 1
                except InsufficientBalance:
                    pass
            return accepted

        with ThreadPoolExecutor(6) as pool:
            accepted = sum(pool.map(worker, range(6)))
        assert accepted == 100 // 3
        assert reads.current_balance(apps[1], "user-1").available == 100 - 3 * accepted
    finally:
        for app in apps:
            app.close()


def test_an_account_reloads_with_the_same_balance_after_many_snapshots(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path, snapshot_interval=10)
    first = Ledger(env=settings.eventsourcing_env(), clock=clock)
    fund(first, "user-1", 10_000)
    first.execute_write(
        commands.grant("user-1", 500, actor="t", idem=None, expires_at=T0 + timedelta(days=30))
    )
    for i in range(34):
        first.execute_write(commands.consume("user-1", i + 1, actor="t", idem=None))
    hold = first.execute_write(commands.place_hold("user-1", 50, actor="t", idem=None))
    expected = reads.current_balance(first, "user-1")
    assert expected.version == 37
    snapshots = list(first.snapshots.get(account_uuid("user-1")))  # type: ignore[union-attr]
    assert [s.originator_version for s in snapshots if s.originator_version] == [10, 20, 30]
    credits = reads.credit_buckets(first, "user-1")
    first.close()

    for cache_size in (10_000, 0):
        env = Settings(
            database_url=settings.database_url,
            snapshot_interval=10,
            aggregate_cache_size=cache_size,
        ).eventsourcing_env()
        fresh = Ledger(env=env, clock=clock)
        assert reads.current_balance(fresh, "user-1") == expected
        assert [h["hold_id"] for h in reads.active_holds(fresh, "user-1")["holds"]] == [
            hold.body["entry"]["hold_id"]
        ]
        assert reads.credit_buckets(fresh, "user-1") == credits
        fresh.close()


def test_the_aggregate_cache_follows_writes_of_another_instance(
    settings: Settings, clock: FakeClock
) -> None:
    a = Ledger(env=settings.eventsourcing_env(), clock=clock)
    b = Ledger(env=settings.eventsourcing_env(), clock=clock)
    fund(a, "user-1", 100)
    b.execute_write(commands.consume("user-1", 30, actor="t", idem=None))
    result = a.execute_write(commands.consume("user-1", 30, actor="t", idem=None))
    assert result.body["balance"]["available"] == 40
    assert result.body["entry"]["version"] == 3
    a.close()
    b.close()


def test_history_answers_the_balance_as_of_a_version_or_a_time(
    ledger: Ledger, clock: FakeClock
) -> None:
    fund(ledger, "user-1", 100)
    clock.advance(hours=1)
    ledger.execute_write(commands.consume("user-1", 30, actor="t", idem=None))
    clock.advance(hours=1)
    ledger.execute_write(commands.deduct("user-1", 20, actor="t", idem=None, reason="fix"))

    at_v2 = reads.balance_at_version(ledger, "user-1", 2)
    assert (at_v2["available"], at_v2["consumed"], at_v2["version"]) == (70, 30, 2)
    assert at_v2["position"] > 0
    assert reads.balance_at_version(ledger, "user-1", 0)["available"] == 0
    with pytest.raises(EntryNotFound):
        reads.balance_at_version(ledger, "user-1", 4)

    before = reads.balance_as_of(ledger, "user-1", T0 - timedelta(seconds=1))
    assert (before["version"], before["available"]) == (0, 0)
    assert reads.balance_as_of(ledger, "user-1", T0)["available"] == 100
    assert reads.balance_as_of(ledger, "user-1", T0 + timedelta(minutes=90))["version"] == 2
    assert reads.balance_as_of(ledger, "user-1", T0 + timedelta(days=1))["available"] == 50
    with pytest.raises(AccountNotFound):
        reads.balance_as_of(ledger, "nobody", T0)


def test_entries_are_paginated_by_version(ledger: Ledger) -> None:
    fund(ledger, "user-1", 100)
    for _ in range(4):
        ledger.execute_write(commands.consume("user-1", 1, actor="t", idem=None))
    page = reads.account_entries(ledger, "user-1", 0, 3)
    assert [e["version"] for e in page["entries"]] == [1, 2, 3]
    assert page["next_after_version"] == 3
    page = reads.account_entries(ledger, "user-1", 3, 3)
    assert [e["version"] for e in page["entries"]] == [4, 5]
    assert page["next_after_version"] is None
    with pytest.raises(AccountNotFound):
        reads.account_entries(ledger, "nobody", 0, 3)


def test_an_expired_hold_is_no_longer_active_and_the_sweeper_records_its_expiry(
    ledger: Ledger, clock: FakeClock
) -> None:
    fund(ledger, "user-1", 100)
    hold = ledger.execute_write(
        commands.place_hold("user-1", 60, actor="t", idem=None, ttl_seconds=60)
    )
    hold_id = uuid.UUID(hold.body["entry"]["hold_id"])
    clock.advance(seconds=60)
    assert reads.current_balance(ledger, "user-1").held == 0
    assert reads.active_holds(ledger, "user-1") == {"holds": []}
    assert ledger.settle("user-1") == 1
    assert ledger.settle("user-1") == 0
    with pytest.raises(HoldNotActive):
        ledger.execute_write(
            commands.capture_hold(ledger, "user-1", hold_id, None, actor="t", idem=None)
        )
    last = reads.account_entries(ledger, "user-1", 2, 10)["entries"]
    assert [(e["type"], e["actor"], e["hold_id"]) for e in last] == [
        ("hold_expiry", "system", str(hold_id))
    ]


def test_holds_are_captured_and_released_through_the_application(ledger: Ledger) -> None:
    fund(ledger, "user-1", 100)
    first = ledger.execute_write(commands.place_hold("user-1", 40, actor="t", idem=None))
    second = ledger.execute_write(commands.place_hold("user-1", 40, actor="t", idem=None))
    captured = ledger.execute_write(
        commands.capture_hold(
            ledger, "user-1", uuid.UUID(first.body["entry"]["hold_id"]), 25, actor="t", idem=None
        )
    )
    assert captured.body["balance"]["available"] == 35
    released = ledger.execute_write(
        commands.release_hold(
            ledger, "user-1", uuid.UUID(second.body["entry"]["hold_id"]), actor="t", idem=None
        )
    )
    assert (released.body["balance"]["available"], released.body["balance"]["held"]) == (75, 0)
    with pytest.raises(HoldNotActive):
        ledger.execute_write(
            commands.release_hold(
                ledger, "user-1", uuid.UUID(second.body["entry"]["hold_id"]), actor="t", idem=None
            )
        )
    with pytest.raises(HoldNotFound):
        ledger.execute_write(
            commands.release_hold(
                ledger, "user-1", uuid.UUID(captured.body["entry"]["id"]), actor="t", idem=None
            )
        )
    refund = ledger.execute_write(
        commands.refund(
            ledger, "user-1", uuid.UUID(captured.body["entry"]["id"]), None, actor="t", idem=None
        )
    )
    assert refund.body["entry"]["refund_of"] == captured.body["entry"]["id"]
    assert refund.body["balance"]["available"] == 100


def test_a_hold_placed_when_credit_expired_can_be_captured(
    ledger: Ledger, clock: FakeClock
) -> None:
    fund(ledger, "user-1", 100)
    ledger.execute_write(
        commands.grant(
            "user-1",
            10,
            actor="t",
            idem=None,
            reason="promo",
            expires_at=T0 + timedelta(minutes=1),
        )
    )
    clock.advance(minutes=5)
    hold = ledger.execute_write(commands.place_hold("user-1", 5, actor="t", idem=None))
    assert hold.body["entry"]["version"] == 4  # after the credit expiry at version 3
    result = ledger.execute_write(
        commands.capture_hold(
            ledger, "user-1", uuid.UUID(hold.body["entry"]["hold_id"]), None, actor="t", idem=None
        )
    )
    assert result.body["balance"]["available"] == 95


def test_refunds_point_at_a_consumption_and_never_exceed_it(ledger: Ledger) -> None:
    fund(ledger, "user-1", 100)
    consumption = ledger.execute_write(commands.consume("user-1", 40, actor="t", idem=None))
    entry_id = uuid.UUID(consumption.body["entry"]["id"])
    ledger.execute_write(commands.refund(ledger, "user-1", entry_id, 30, actor="t", idem=None))
    with pytest.raises(RefundExceedsConsumption):
        ledger.execute_write(commands.refund(ledger, "user-1", entry_id, 11, actor="t", idem=None))
    last = ledger.execute_write(
        commands.refund(ledger, "user-1", entry_id, None, actor="t", idem=None)
    )
    assert last.body["entry"]["amount"] == 10
    purchase_id = uuid.UUID(fund(ledger, "user-1", 1).body["entry"]["id"])
    refuse: list[Callable[[], object]] = [
        lambda: ledger.execute_write(
            commands.refund(ledger, "user-1", purchase_id, 1, actor="t", idem=None)
        ),
        lambda: ledger.execute_write(
            commands.refund(ledger, "user-2", entry_id, 1, actor="t", idem=None)
        ),
        lambda: ledger.execute_write(
            commands.refund(ledger, "user-1", uuid.uuid4(), 1, actor="t", idem=None)
        ),
    ]
    for call in refuse:
        with pytest.raises(EntryNotFound):
            call()


def test_a_credit_limit_change_answers_its_entry_and_the_new_limit(ledger: Ledger) -> None:
    result = ledger.execute_write(
        commands.set_credit_limit("user-1", 500, actor="admin", idem=None)
    )
    assert result.body["entry"]["type"] == "credit_limit_change"
    assert result.body["balance"]["credit_limit"] == 500
    assert (
        ledger.execute_write(commands.consume("user-1", 500, actor="t", idem=None)).body["balance"][
            "available"
        ]
        == -500
    )


def test_balance_as_of_reads_a_bounded_number_of_entries_on_a_long_history(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"snapshot_interval": 50})
    ledger = Ledger(env=settings.eventsourcing_env(), clock=clock)
    try:
        fund(ledger, "long", 10_000)
        for _ in range(999):
            clock.advance(seconds=1)
            ledger.execute_write(commands.consume("long", 1, actor="t", idem=None))
        recorder = ledger.recorder
        real_select = recorder.select_events
        read: list[int] = []

        def counting_select(
            originator_id: uuid.UUID | str,
            *,
            gt: int | None = None,
            lte: int | None = None,
            desc: bool = False,
            limit: int | None = None,
        ) -> Sequence[StoredEvent]:
            events = real_select(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
            read.append(len(events))
            return events

        monkeypatch.setattr(recorder, "select_events", counting_select)
        moment = T0 + timedelta(seconds=500, milliseconds=500)
        past = reads.balance_as_of(ledger, "long", moment)
        assert (past["version"], past["available"]) == (501, 10_000 - 500)
        assert sum(read) < 200, f"{sum(read)} events read for one as_of"
    finally:
        ledger.close()
