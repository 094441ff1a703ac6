"""The webhook messages of a projected batch (contract v1.1, "Webhooks").

Decided here, once, from the ordered log: for each endpoint, an
``entry.created`` per entry and a balance alert per crossing
(:mod:`service.domain.alerts`), with each account's alert state carried over
from the previous batch. The projection records the messages in the outbox in
the same transaction as the balances (``projections.views``), so a crash never
loses or repeats one, and a replay of the log decides the same messages with
the same ``webhook-id``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from service.domain.alerts import ENTRY_CREATED, AlertState, cross
from service.domain.published import EntryPublic

WEBHOOK_NAMESPACE = uuid.UUID("5d0f6f5e-7c53-4a0e-9a39-3f5ad3f6b1c2")
"""Namespace of the message ids (UUID 5 of endpoint, position and type)."""


@dataclass(frozen=True)
class Subscription:
    """An endpoint's event types and ``low_balance_threshold`` (tokens or ``None``)."""

    endpoint_id: str
    events: frozenset[str]
    threshold: int | None

    @property
    def alerts(self) -> bool:
        return any(kind.startswith("balance.") for kind in self.events)


@dataclass(frozen=True)
class OutboxMessage:
    """One message for one endpoint: ``body`` is the JSON sent (UTF-8)."""

    webhook_id: str
    endpoint_id: str
    account_id: str
    type: str
    position: int
    ordinal: int
    """Order among the messages of one entry (``entry.created`` first)."""
    body: bytes


StateKey = tuple[str, str]
"""``(endpoint_id, account_id)``."""


def webhook_id(endpoint_id: str, position: int, kind: str) -> str:
    """The message's ``webhook-id``: the same for the same endpoint, entry and
    type however often the log is projected (``msg_`` + 32 hex digits)."""
    return "msg_" + uuid.uuid5(WEBHOOK_NAMESPACE, f"{endpoint_id}:{position}:{kind}").hex


def encode_body(kind: str, timestamp: str, data: Mapping[str, Any]) -> bytes:
    """``{"type", "timestamp", "data"}`` as compact JSON (integers beyond 64
    bits, which metadata may hold, through the standard library)."""
    body = {"type": kind, "timestamp": timestamp, "data": data}
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def batch_messages(
    subscriptions: Iterable[Subscription],
    accounts: Iterable[tuple[list[EntryPublic], list[dict[str, Any]]]],
    states: Mapping[StateKey, AlertState],
) -> tuple[list[OutboxMessage], dict[StateKey, AlertState]]:
    """The messages of a batch, and the alert states it leaves.

    ``accounts``: per changed account, its entries as published (contract
    Entry, in version order) and its balance right after each of them; ``states``: the
    alert states before the batch (an account missing from it has had no
    entry yet). Messages come in position order per endpoint and account."""
    subscribed = [s for s in subscriptions if s.events]
    messages: list[OutboxMessage] = []
    changed: dict[StateKey, AlertState] = {}
    if not subscribed:
        return messages, changed
    for rendered, balances in accounts:
        for sub in subscribed:
            key = (sub.endpoint_id, rendered[0]["account_id"])
            state = states.get(key)
            for entry, balance in zip(rendered, balances, strict=True):
                kinds: list[str] = []
                if ENTRY_CREATED in sub.events:
                    kinds.append(ENTRY_CREATED)
                if sub.alerts:
                    state, alert = cross(state, balance["available"], sub.threshold)
                    if alert is not None and alert in sub.events:
                        kinds.append(alert)
                for ordinal, kind in enumerate(kinds):
                    data: dict[str, Any] = (
                        {"entry": entry, "balance": balance}
                        if kind == ENTRY_CREATED
                        else {
                            "account_id": entry["account_id"],
                            "balance": balance,
                            "threshold": sub.threshold,
                            "entry": entry,
                        }
                    )
                    messages.append(
                        OutboxMessage(
                            webhook_id(sub.endpoint_id, entry["position"], kind),
                            sub.endpoint_id,
                            entry["account_id"],
                            kind,
                            entry["position"],
                            ordinal,
                            encode_body(kind, entry["recorded_at"], data),
                        )
                    )
            if sub.alerts and state is not None:
                changed[key] = state
    return messages, changed
