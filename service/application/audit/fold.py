"""The auditor's fold: balances recomputed from entries alone, every check
on the way. Written apart from the projection (``projections/``) and the
aggregate (``service.domain``) on purpose: a second implementation of the
rules is what makes the audit worth something.

Feed :class:`AuditFold` the API's entries in position order (from the
database or an export); it records a :class:`Failure` — account, version,
check — for each problem instead of stopping:

- ``position``: positions increase along the log;
- ``version``: each account's versions run 1, 2, 3, … without a gap;
- ``hash``: ``sha256(previous hash + "\\n" + canonical JSON)`` (contract v1.1);
- ``invariant``: after every entry, ``available + held == purchased + granted
  + refunded - consumed - deducted - expired``, ``available >= -credit_limit``,
  ``held >= 0``, every counter between 0 and 2^53 - 1;
- ``type``: a field a type fixes (``delta_available`` of a consumption is
  ``-amount``, …) has that value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.application.audit.entries import plain

ZEROS = "0" * 64
LIMIT = 2**53 - 1
HASHED = ("id", "account_id", "type", "amount", "delta_available", "version", "recorded_at",
          "idempotency_key", "actor", "operation", "model", "payment_reference", "reason",
          "hold_id", "refund_of", "expires_at", "metadata")  # fmt: skip
COUNTER_OF = {"purchase": "purchased", "grant": "granted", "consumption": "consumed",
              "hold_capture": "consumed", "deduction": "deducted", "refund": "refunded",
              "credit_expiry": "expired"}  # fmt: skip
DELTA_IS = {"purchase": 1, "grant": 1, "refund": 1, "consumption": -1, "deduction": -1,
            "hold": -1, "hold_release": 1, "hold_expiry": 1, "credit_expiry": -1,
            "credit_limit_change": 0}  # fmt: skip
"""``delta_available`` as a multiple of ``amount``, by type (captures vary)."""
BALANCE_FIELDS = ("available", "held", "credit_limit", "purchased", "granted", "consumed",
                  "refunded", "deducted", "expired", "version", "position", "hash")  # fmt: skip


@dataclass(frozen=True)
class Failure:
    """One failed check: where, which, and what was seen."""

    account_id: str
    version: int | None
    check: str
    detail: str


@dataclass
class Folded:
    """An account's balance folded from its entries."""

    available: int = 0
    held: int = 0
    credit_limit: int = 0
    purchased: int = 0
    granted: int = 0
    consumed: int = 0
    refunded: int = 0
    deducted: int = 0
    expired: int = 0
    version: int = 0
    position: int = 0
    hash: str = ZEROS


def entry_hash(previous: str, entry: dict[str, Any]) -> str:
    """The contract's hash of ``entry`` after ``previous``: its canonical JSON
    is ``json.dumps(..., sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, which orjson with sorted keys writes byte for byte
    the same when no float is involved (faster)."""
    covered = {k: entry[k] for k in HASHED}
    try:
        if not plain(covered["metadata"]):
            raise TypeError
        canonical = orjson.dumps(covered, option=orjson.OPT_SORT_KEYS)
    except (TypeError, RecursionError):  # floats; beyond 64 bits or deep: orjson refuses
        canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()  # fmt: skip
    return hashlib.sha256(previous.encode() + b"\n" + canonical).hexdigest()


@dataclass
class AuditFold:
    """Folds entries (in position order) into balances, collecting failures."""

    balances: dict[str, Folded] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    entries: int = 0
    last_position: int = 0

    def add(self, entry: dict[str, Any]) -> None:
        """Checks and folds one entry (the API's Entry object)."""
        self.entries += 1
        account_id, version = entry["account_id"], entry["version"]
        folded = self.balances.get(account_id)
        if folded is None:
            folded = self.balances[account_id] = Folded()
        fail = self._failer(account_id, version)
        if entry["position"] <= self.last_position:
            fail("position", f"{entry['position']} after {self.last_position}")
        self.last_position = max(self.last_position, entry["position"])
        if version != folded.version + 1:
            fail("version", f"version {version} follows version {folded.version}")
        expected = entry_hash(folded.hash, entry)
        if entry.get("hash") != expected:
            fail("hash", f"stored {entry.get('hash')}, recomputed {expected}")
        self._apply(folded, entry, fail)
        folded.version, folded.position = version, entry["position"]
        folded.hash = entry.get("hash") or expected

    def compare(self, account_id: str, row: dict[str, Any] | None) -> None:
        """Checks the balance table's ``row`` for ``account_id`` (``None``:
        no row) against the fold (check ``balance``)."""
        folded = self.balances.get(account_id)
        fail = self._failer(account_id, folded.version if folded else None)
        if row is None:
            fail("balance", "no row in the balance table")
            return
        if folded is None:
            fail("balance", "a row in the balance table, no entry in the log")
            return
        for name in BALANCE_FIELDS:
            if row.get(name) != getattr(folded, name):
                fail("balance", f"{name}: table {row.get(name)!r}, log {getattr(folded, name)!r}")

    def _failer(self, account_id: str, version: int | None) -> Any:
        def fail(check: str, detail: str) -> None:
            self.failures.append(Failure(account_id, version, check, detail))

        return fail

    @staticmethod
    def _apply(b: Folded, entry: dict[str, Any], fail: Any) -> None:
        kind, amount, delta = entry["type"], entry["amount"], entry["delta_available"]
        multiple = DELTA_IS.get(kind)
        if multiple is not None and delta != multiple * amount:
            fail("type", f"{kind} of {amount} with delta_available {delta}")
        if kind == "hold_capture" and delta < 0:
            fail("type", f"capture with delta_available {delta}")
        counter = COUNTER_OF.get(kind)
        if counter is not None:
            setattr(b, counter, getattr(b, counter) + amount)
        b.available += delta
        if kind == "hold":
            b.held += amount
        elif kind in ("hold_release", "hold_expiry"):
            b.held -= amount
        elif kind == "hold_capture":
            b.held -= amount + delta
        elif kind == "credit_limit_change":
            b.credit_limit = amount
        sources = b.purchased + b.granted + b.refunded - b.consumed - b.deducted - b.expired
        if b.available + b.held != sources:
            fail("invariant", f"available + held = {b.available + b.held}, counters say {sources}")
        if b.available < -b.credit_limit:
            fail("invariant", f"available {b.available} below -credit_limit {-b.credit_limit}")
        counters = (b.held, b.credit_limit, b.purchased, b.granted, b.consumed, b.refunded,
                    b.deducted, b.expired)  # fmt: skip
        if min(counters) < 0 or max(*counters, b.available) > LIMIT:
            fail("invariant", f"a counter out of 0..2^53-1: {b}")
