"""Webhook messages are decided from the ordered log, once per crossing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from projections.webhook_messages import Subscription, batch_messages, webhook_id
from service.domain.account import Account
from service.domain.events import LedgerEntry
from service.domain.published import render_balance, render_entry

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALERTS = frozenset({"balance.low", "balance.depleted", "balance.recovered"})


def _history(path: list[int]) -> list[tuple[LedgerEntry, int, dict[str, Any]]]:
    """Entries taking ``available`` through ``path`` (a purchase, then
    consumptions and purchases), each with its position and balance after."""
    account = Account(account_id="user-1")
    account.set_credit_limit(1_000, now=NOW)
    steps = []
    available = 0
    for index, target in enumerate(path):
        now = NOW + timedelta(seconds=index + 1)
        if target >= available:
            outcome = account.purchase(target - available or 1, expires_at=None, now=now)
            if target == available:  # no change wanted: spend the token again
                outcome = account.consume(1, now=now)
        else:
            outcome = account.consume(available - target, now=now)
        available = target
        steps.append(outcome)
    events = [e for e in account.collect_events() if isinstance(e, LedgerEntry)][1:]
    return [
        (entry, 100 + i, dict(render_balance(outcome.balance, 100 + i)))
        for i, (entry, outcome) in enumerate(zip(events, steps, strict=False))
    ]


def _run(subs: list[Subscription], path: list[int], batch_sizes: list[int]) -> list[str]:
    history = _history(path)
    states: dict[tuple[str, str], Any] = {}
    kinds: list[str] = []
    start = 0
    for size in batch_sizes:
        chunk = history[start : start + size]
        start += size
        entries = [render_entry(entry, position) for entry, position, _ in chunk]
        balances = [balance for _, _, balance in chunk]
        messages, changed = batch_messages(subs, [(entries, balances)], states)
        states.update(changed)
        kinds.extend(m.type for m in messages)
    return kinds


def test_a_scripted_path_alerts_each_crossing_once_however_it_is_batched() -> None:
    subs = [Subscription("ep-1", ALERTS, 100)]
    path = [500, 90, 120, 0, 40, 200]
    expected = ["balance.low", "balance.recovered", "balance.depleted", "balance.recovered"]
    assert _run(subs, path, [6]) == expected
    assert _run(subs, path, [1, 1, 1, 1, 1, 1]) == expected
    assert _run(subs, path, [2, 3, 1]) == expected


def test_entry_created_goes_with_every_entry_and_carries_the_writes_answer() -> None:
    history = _history([500, 200])
    entries = [render_entry(entry, position) for entry, position, _ in history]
    balances = [balance for _, _, balance in history]
    subs = [Subscription("ep-1", frozenset({"entry.created"}), None)]
    messages, changed = batch_messages(subs, [(entries, balances)], {})
    assert [m.type for m in messages] == ["entry.created", "entry.created"]
    assert changed == {}
    body = json.loads(messages[1].body)
    assert body["type"] == "entry.created"
    assert body["data"]["balance"] == balances[1]
    assert body["data"]["entry"]["position"] == 101
    assert body["timestamp"] == body["data"]["entry"]["recorded_at"]
    assert messages[1].webhook_id == webhook_id("ep-1", 101, "entry.created")


def test_message_ids_are_the_same_on_every_projection_and_differ_between_messages() -> None:
    assert webhook_id("ep-1", 7, "balance.low") == webhook_id("ep-1", 7, "balance.low")
    assert webhook_id("ep-1", 7, "balance.low") != webhook_id("ep-2", 7, "balance.low")
    assert webhook_id("ep-1", 7, "balance.low") != webhook_id("ep-1", 7, "entry.created")


def test_an_endpoint_gets_only_the_alert_types_it_subscribed_to() -> None:
    subs = [Subscription("ep-1", frozenset({"balance.depleted"}), None)]
    assert _run(subs, [500, 90, 0, 300, 0], [5]) == ["balance.depleted", "balance.depleted"]
