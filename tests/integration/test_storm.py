"""The storm: two ``ledger serve`` processes on one database, 64 writers on 10
hot accounts, idempotent retries mixed in (issue 6, "What must keep holding").

Writers alternate between the two processes with consumptions of 1..50 tokens
(many refused with 402 once the accounts run dry), holds that are captured or
released, refunds and small purchases. About a third of the writes carry an
``Idempotency-Key`` and are sent again: to the same process, to the other one,
or to both at once. Afterwards the whole log is read back and folded per
account; the test then checks that no account was ever overdrawn, that each
key has exactly one entry, and that every answer and balance matches the log.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.balances import COUNTERS
from tests.helpers.processes import LedgerProcess, serving_ledgers
from tests.helpers.servers import fresh_postgres_database, fresh_redis_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEY = "storm-admin-key-0123456789abcdef0123"
SECRET_KEY = "storm-secret-key-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
LIMITS = httpx.Limits(keepalive_expiry=1.0)
"""Idle connections are dropped well before uvicorn closes them (after 5 s), so
a request never races the server closing its connection."""

ACCOUNTS = 10
WRITERS = 64
OPERATIONS_PER_WRITER = 30
FUNDING = 2_000
IN_FLIGHT_RETRIES = 500
"""How often a writer re-sends under a key answered 409 idempotency-key-in-flight."""


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[list[LedgerProcess]]:
    """Two ``ledger serve`` processes started together on a fresh PostgreSQL
    database and Redis database."""
    with fresh_postgres_database("ledger_storm") as db_url, fresh_redis_database() as redis_url:
        settings = {
            "LEDGER_DATABASE_URL": db_url,
            "LEDGER_REDIS_URL": redis_url,
            "LEDGER_ADMIN_API_KEY": ADMIN_KEY,
            "LEDGER_SECRET_KEY": SECRET_KEY,
            "LEDGER_LOG_LEVEL": "warning",
        }
        with serving_ledgers(settings, tmp_path, count=2) as processes:
            yield processes


@dataclass
class Journal:
    """What the writers were answered, shared by all writer threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    unexpected: list[str] = field(default_factory=list)
    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Entry id → balance answered by the write that recorded it (not a replay)."""
    replayed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(entry id, balance) of every replayed answer."""
    keys: dict[str, set[str]] = field(default_factory=dict)
    """Idempotency key → entry ids its 201 answers named (empty: never 201)."""

    def note(
        self, url: str, path: str, response: httpx.Response, how: str, key: str | None
    ) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code not in (201, 402):
                self.unexpected.append(
                    f"{response.status_code} from {url}{path} ({how}): {response.text[:300]}"
                )
                return
            if response.status_code != 201:
                return
            body = response.json()
            entry_id = body["entry"]["id"]
            if key is not None:
                self.keys[key].add(entry_id)
            if response.headers.get("Idempotent-Replayed") == "true":
                self.replayed.append((entry_id, body["balance"]))
            elif entry_id in self.recorded:
                self.unexpected.append(f"entry {entry_id} answered as new twice")
            else:
                self.recorded[entry_id] = body["balance"]

    def new_key(self) -> str:
        """A fresh idempotency key, journaled before it is first sent."""
        key = f"storm-{uuid.uuid4().hex}"
        with self.lock:
            self.keys[key] = set()
        return key

    def fail(self, message: str) -> None:
        with self.lock:
            self.unexpected.append(message)


@dataclass
class Writer:
    """One writer thread: its own HTTP client, alternating between processes."""

    number: int
    urls: list[str]
    accounts: list[str]
    journal: Journal
    rng: random.Random
    client: httpx.Client = field(
        default_factory=lambda: httpx.Client(timeout=60, headers=AUTH, limits=LIMITS)
    )
    turn: int = 0
    consumptions: list[tuple[str, str, int]] = field(default_factory=list)
    """(account, entry id, amount) of this writer's unrefunded consumptions."""

    def next_url(self) -> str:
        self.turn += 1
        return self.urls[(self.number + self.turn) % len(self.urls)]

    def post(
        self, url: str, path: str, body: dict[str, Any], key: str | None, how: str = "once"
    ) -> httpx.Response:
        """One write; under a key, re-sent while answered key-in-flight."""
        headers = {"Idempotency-Key": key} if key else {}
        for _ in range(IN_FLIGHT_RETRIES):
            response = self.client.post(url + path, json=body, headers=headers)
            if key and _in_flight(response):
                time.sleep(self.rng.uniform(0.002, 0.02))  # retry later, same key
                continue
            self.journal.note(url, path, response, how, key)
            return response
        self.journal.fail(f"{key} stayed in flight at {url}{path}")
        return response

    def write(self, path: str, body: dict[str, Any], idempotent: bool) -> httpx.Response:
        """A write sent once, or under a fresh key sent again: to the same
        process, to the other one, or to both at once and then once more."""
        if not idempotent:
            return self.post(self.next_url(), path, body, None)
        key = self.journal.new_key()
        first, other = self.next_url(), self.next_url()
        how = self.rng.choice(("same", "other", "concurrent"))
        if how == "concurrent":
            with ThreadPoolExecutor(2) as pool:
                racing = list(
                    pool.map(lambda u: self.post(u, path, body, key, how), (first, other))
                )
            new = [r for r in racing if r.status_code == 201 and not _replayed(r)]
            if len(new) > 1:
                self.journal.fail(f"{key}: both concurrent sends recorded an entry")
            responses = [*racing, self.post(first, path, body, key, "after concurrent")]
            earlier = racing
        else:
            answer = self.post(first, path, body, key, "first")
            again = first if how == "same" else other
            responses = [answer, self.post(again, path, body, key, f"retry to {how} process")]
            earlier = [answer]
        ids = {r.json()["entry"]["id"] for r in responses if r.status_code == 201}
        if len(ids) > 1:
            self.journal.fail(f"{key}: 201 answers name different entries {ids}")
        last = responses[-1]
        if any(r.status_code == 201 for r in earlier) and not (
            last.status_code == 201 and _replayed(last)
        ):
            self.journal.fail(f"{key}: a retry after a 201 was answered {last.status_code}")
        return next((r for r in responses if r.status_code == 201), last)

    def consume(self, account: str, idempotent: bool) -> None:
        amount = self.rng.randint(1, 50)
        body = {"amount": amount, "operation": "storm", "metadata": {"writer": self.number}}
        response = self.write(f"/v1/accounts/{account}/consumptions", body, idempotent)
        if response.status_code == 201:
            self.consumptions.append((account, response.json()["entry"]["id"], amount))

    def hold_then_settle(self, account: str, idempotent: bool) -> None:
        amount = self.rng.randint(1, 50)
        held = self.write(f"/v1/accounts/{account}/holds", {"amount": amount}, idempotent)
        if held.status_code != 201:
            return
        hold = f"/v1/accounts/{account}/holds/{held.json()['entry']['hold_id']}"
        if self.rng.random() < 0.5:
            captured = {"amount": self.rng.randint(1, amount)}
            self.write(f"{hold}/capture", captured, self.rng.random() < 0.5)
        else:
            self.write(f"{hold}/release", {}, self.rng.random() < 0.5)

    def refund(self, idempotent: bool) -> None:
        if not self.consumptions:
            return
        account, entry_id, amount = self.consumptions.pop(
            self.rng.randrange(len(self.consumptions))
        )
        body = {"amount": self.rng.randint(1, amount), "reason": "storm"}
        self.write(f"/v1/accounts/{account}/consumptions/{entry_id}/refunds", body, idempotent)

    def purchase(self, account: str) -> None:
        body = {"amount": self.rng.randint(50, 200), "payment_reference": "pi_storm"}
        self.write(f"/v1/accounts/{account}/purchases", body, idempotent=True)

    def run(self) -> None:
        try:
            for _ in range(OPERATIONS_PER_WRITER):
                account = self.rng.choice(self.accounts)
                idempotent = self.rng.random() < 0.3
                pick = self.rng.random()
                if pick < 0.70:
                    self.consume(account, idempotent)
                elif pick < 0.85:
                    self.hold_then_settle(account, idempotent)
                elif pick < 0.97:
                    self.refund(idempotent)
                else:
                    self.purchase(account)
        except Exception as error:  # noqa: BLE001 - reported, not swallowed
            self.journal.fail(f"writer {self.number}: {error!r}")
        finally:
            self.client.close()


def _replayed(response: httpx.Response) -> bool:
    replayed: str | None = response.headers.get("Idempotent-Replayed")
    return replayed == "true"


def _in_flight(response: httpx.Response) -> bool:
    return (
        response.status_code == 409 and response.json().get("code") == "idempotency-key-in-flight"
    )


def read_log(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    """Every entry of the global log, in position order."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(f"{url}/v1/entries", params={"after_position": after, "limit": 1000})
        assert page.status_code == 200, page.text
        body = page.json()
        entries += body["entries"]
        if body["next_after_position"] is None:
            return entries
        after = body["next_after_position"]


def fold(entries: list[dict[str, Any]]) -> list[dict[str, int]]:
    """The balance counters after each of one account's entries (in version
    order), recomputed from the entry types and amounts; fails on an entry whose
    ``delta_available`` disagrees with its type."""
    state = dict.fromkeys(COUNTERS, 0)
    holds: dict[str, int] = {}
    after: list[dict[str, int]] = []
    adds = {"purchase": "purchased", "grant": "granted", "refund": "refunded"}
    takes = {"consumption": "consumed", "deduction": "deducted", "credit_expiry": "expired"}
    for e in entries:
        kind, amount = e["type"], e["amount"]
        if kind in adds:
            delta = amount
            state[adds[kind]] += amount
        elif kind in takes:
            delta = -amount
            state[takes[kind]] += amount
        elif kind == "hold":
            delta = -amount
            state["held"] += amount
            holds[e["hold_id"]] = amount
        elif kind == "hold_capture":
            hold = holds.pop(e["hold_id"])
            delta = hold - amount
            state["held"] -= hold
            state["consumed"] += amount
        elif kind in ("hold_release", "hold_expiry"):
            assert holds.pop(e["hold_id"]) == amount, e
            delta = amount
            state["held"] -= amount
        elif kind == "credit_limit_change":
            delta = 0
            state["credit_limit"] = amount
        else:
            raise AssertionError(f"unknown entry type {kind}")
        assert e["delta_available"] == delta, e
        state["available"] += delta
        after.append(dict(state))
    return after


def fund(client: httpx.Client, url: str, account: str) -> list[str]:
    """A credit limit of 0 and a purchase of ``FUNDING`` tokens; their entry ids."""
    limit = client.patch(f"{url}/v1/accounts/{account}", json={"credit_limit": 0})
    assert limit.status_code == 200, limit.text
    bought = client.post(
        f"{url}/v1/accounts/{account}/purchases",
        json={"amount": FUNDING, "payment_reference": "pi_seed"},
    )
    assert bought.status_code == 201, bought.text
    return [limit.json()["entry"]["id"], bought.json()["entry"]["id"]]


def run_writers(urls: list[str], accounts: list[str], journal: Journal, seed: int) -> None:
    writers = [
        Writer(n, urls, accounts, journal, random.Random(seed * 1000 + n)) for n in range(WRITERS)
    ]
    threads = [threading.Thread(target=w.run, name=f"writer-{w.number}") for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_two_processes_under_a_storm_never_overdraw_and_record_each_key_once(
    ledgers: list[LedgerProcess],
) -> None:
    urls = [p.url for p in ledgers]
    seed = random.randrange(1 << 30)
    run = uuid.uuid4().hex[:8]
    accounts = [f"hot-{run}-{i}" for i in range(ACCOUNTS)]
    journal = Journal()
    with httpx.Client(timeout=60, headers=AUTH) as client:
        funding = [i for n, a in enumerate(accounts) for i in fund(client, urls[n % 2], a)]

        started = time.monotonic()
        run_writers(urls, accounts, journal, seed)
        elapsed = time.monotonic() - started
        context = f"seed {seed}, {elapsed:.1f} s, answers {dict(journal.statuses)}"
        logs = "".join(p.log_tail(6_000) for p in ledgers)
        assert not journal.unexpected, "\n".join([context, *journal.unexpected[:30], logs])
        assert journal.statuses[201] and journal.statuses[402], context

        log = read_log(client, urls[0])
        assert read_log(client, urls[1]) == log
    positions = [e["position"] for e in log]
    assert positions == sorted(set(positions)), "positions must strictly increase"
    by_id = {e["id"]: e for e in log}
    assert len(by_id) == len(log), "entry ids must be unique"

    # Every entry was answered 201 exactly once as new; nothing else is in the log.
    assert set(by_id) == set(journal.recorded) | set(funding), context

    # No account was ever overdrawn; versions are contiguous from 1.
    per_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in log:
        per_account[e["account_id"]].append(e)
    assert set(per_account) == set(accounts)
    balance_after: dict[str, dict[str, int]] = {}
    for account, entries in per_account.items():
        assert [e["version"] for e in entries] == list(range(1, len(entries) + 1)), account
        for e, state in zip(entries, fold(entries), strict=True):
            assert state["available"] >= -state["credit_limit"], (account, e, state)
            assert state["held"] >= 0, (account, e, state)
            balance_after[e["id"]] = {**state, "version": e["version"]}

    # What each write answered is the balance right after its entry.
    for entry_id, balance in [*journal.recorded.items(), *journal.replayed]:
        expected = balance_after[entry_id]
        assert {k: balance[k] for k in expected} == expected, (entry_id, balance)
        assert balance["position"] == by_id[entry_id]["position"], (entry_id, balance)

    # Each idempotency key has exactly one entry, the one its 201s named.
    carried: dict[str, list[str]] = defaultdict(list)
    for e in log:
        if e["idempotency_key"] is not None:
            carried[e["idempotency_key"]].append(e["id"])
    assert set(carried) <= set(journal.keys)
    for key, answered in journal.keys.items():
        if answered:
            assert carried.get(key) == sorted(answered), (key, carried.get(key), answered)
        else:
            assert key not in carried, (key, carried[key])
    assert len(carried) > 100, context

    # Both processes serve the folded balance once the projection reached the log's end.
    last = positions[-1]
    with httpx.Client(timeout=30, headers=AUTH) as client:
        for account, entries in per_account.items():
            expected = {**balance_after[entries[-1]["id"]], "position": entries[-1]["position"]}
            for url in urls:
                answer = client.get(
                    f"{url}/v1/accounts/{account}/balance",
                    params={"min_position": last, "wait": 5},
                )
                assert answer.status_code == 200, answer.text
                balance = answer.json()
                assert not balance.get("stale"), (url, balance)
                assert {k: balance[k] for k in expected} == expected, (url, balance)
                assert balance["available"] + balance["held"] == (
                    balance["purchased"]
                    + balance["granted"]
                    + balance["refunded"]
                    - balance["consumed"]
                    - balance["deducted"]
                    - balance["expired"]
                ), (url, balance)
