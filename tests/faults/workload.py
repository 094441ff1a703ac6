"""The fault suite's workload and its checks.

Writers post purchases and consumptions (half with an Idempotency-Key, each
tagged ``metadata.write``) while resuming readers follow every account's
entries stream. After the fault, :func:`check_ledger` proves: every write
answered 201 is in the log exactly once; no write answered otherwise left an
entry; every balance equals the fold of its entries; every stream saw every
entry once and in order.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFINITE = {201, 402, 409, 422}
"""Answers that settle a write (anything else: 503 or no answer)."""


@dataclass
class Write:
    """One write sent: its tag, key, and the answers it got, in order."""

    tag: str
    account: str
    kind: str
    key: str | None
    answers: list[int | str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return bool(self.answers) and self.answers[-1] in DEFINITE

    @property
    def created(self) -> bool:
        return bool(self.answers) and self.answers[-1] == 201


class Writers:
    """``threads`` threads writing to ``accounts`` until :meth:`stop`."""

    def __init__(self, url: str, key: str, accounts: list[str], threads: int = 4) -> None:
        self.url, self.key, self.accounts = url, key, accounts
        self.writes: list[Write] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=15.0) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                account = self.accounts[(index + n) % len(self.accounts)]
                kind = "purchases" if n % 3 == 0 else "consumptions"
                keyed = n % 2 == 0
                write = Write(uuid.uuid4().hex, account, kind, uuid.uuid4().hex if keyed else None)
                with self._lock:
                    self.writes.append(write)
                send(client, write)

    def settle_keyed(self, timeout: float = 30.0) -> None:
        """Retries every unsettled write that has an Idempotency-Key, with
        the same key and body, until it gets a definite answer."""
        headers = {"Authorization": f"Bearer {self.key}"}
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, headers=headers, timeout=15.0) as client:
            for write in self.writes:
                while write.key is not None and not write.settled:
                    assert time.monotonic() < deadline, f"write never settled: {write}"
                    send(client, write)


def send(client: httpx.Client, write: Write) -> None:
    body: dict[str, Any] = {"amount": 10 if write.kind == "purchases" else 3}
    body["metadata"] = {"write": write.tag}
    if write.kind == "consumptions":
        body["operation"] = "fault.test"
    headers = {"Idempotency-Key": write.key} if write.key else {}
    started = time.monotonic()
    try:
        response = client.post(f"/v1/accounts/{write.account}/{write.kind}", json=body,
                               headers=headers)  # fmt: skip
        answer: int | str = response.status_code
        if answer == 503:
            assert response.headers.get("retry-after"), "503 without Retry-After"
            assert response.json()["code"] == "unavailable"
    except httpx.TransportError as error:
        answer = type(error).__name__
    write.answers.append(answer)
    write.seconds.append(time.monotonic() - started)


class EntryFollower:
    """Follows one account's entries stream from the start, resuming with
    ``Last-Event-ID`` whenever the stream ends or fails."""

    def __init__(self, url: str, key: str, account: str) -> None:
        self.url, self.key, self.account = url, key, account
        self.versions: list[int] = []
        self.reconnects = 0
        self._last_id = "0"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def wait_for(self, version: int, timeout: float) -> bool:
        """Whether the stream delivered ``version`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.versions and self.versions[-1] >= version:
                return True
            time.sleep(0.05)
        return bool(self.versions) and self.versions[-1] >= version

    def _run(self) -> None:
        timeout = httpx.Timeout(5.0, read=20.0)
        while not self._stop.is_set():
            headers = {"Authorization": f"Bearer {self.key}", "Last-Event-ID": self._last_id}
            with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=timeout) as client:
                path = f"{self.url}/v1/accounts/{self.account}/entries/stream"
                with client.stream("GET", path, headers=headers) as response:
                    if response.status_code == 200:
                        self._read(response)
            self.reconnects += 1
            self._stop.wait(0.2)  # reconnect delay, as EventSource's retry

    def _read(self, response: httpx.Response) -> None:
        event, data, frame_id = None, None, None
        for line in response.iter_lines():
            if self._stop.is_set():
                return
            if line == "":
                if event == "entry" and data is not None:
                    self.versions.append(json.loads(data)["version"])
                    self._last_id = frame_id or self._last_id
                event, data, frame_id = None, None, None
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line.startswith("id:"):
                frame_id = line[3:].strip()


def read_log(client: httpx.Client) -> list[dict[str, Any]]:
    """Every entry of the ledger, in position order (``GET /v1/entries``)."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get("/v1/entries", params={"after_position": after, "limit": 1000})
        assert page.status_code == 200, page.text
        batch = page.json()["entries"]
        entries.extend(batch)
        if len(batch) < 1000:
            return entries
        after = batch[-1]["position"]


def read_balance(client: httpx.Client, account: str, head: int) -> dict[str, Any]:
    """The account's balance once it has applied ``head``; a 503 is retried for
    up to 5 s (the contract's bound for resuming after an outage)."""
    deadline = time.monotonic() + 5
    while True:
        response = client.get(
            f"/v1/accounts/{account}/balance", params={"min_position": head, "wait": 10}
        )
        if response.status_code != 503 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body
        time.sleep(0.1)  # the answer said Retry-After; polled on the answer itself


def check_ledger(
    client: httpx.Client, writes: list[Write], followers: list[EntryFollower]
) -> dict[str, int]:
    """The suite's checks (module docstring); returns the counts for the report."""
    log = read_log(client)
    tags = Counter(e["metadata"].get("write") for e in log if e["metadata"])
    duplicated = [w for w in writes if tags[w.tag] > 1]
    lost = [w for w in writes if w.created and tags[w.tag] != 1]
    phantom = [w for w in writes if not w.created and tags[w.tag] != 0]
    assert not duplicated, f"recorded twice: {duplicated[:3]}"
    assert not lost, f"answered 201, not in the log once: {lost[:3]}"
    assert not phantom, f"not answered 201, yet in the log: {phantom[:3]}"
    head = log[-1]["position"] if log else 0
    by_account: dict[str, list[dict[str, Any]]] = {}
    for entry in log:
        by_account.setdefault(entry["account_id"], []).append(entry)
    for account, entries in by_account.items():
        versions = [e["version"] for e in entries]
        assert versions == list(range(1, len(entries) + 1)), f"{account}: versions {versions}"
        balance = read_balance(client, account, head)
        assert not balance.get("stale"), f"{account}: projection did not catch up"
        folded = sum(e["delta_available"] for e in entries)
        assert balance["available"] == folded, f"{account}: {balance} vs fold {folded}"
        assert balance["version"] == len(entries)
    for follower in followers:
        expected = len(by_account.get(follower.account, []))
        assert follower.wait_for(expected, 20), (
            f"{follower.account}: stream reached {follower.versions[-1:]} of {expected}"
        )
        assert follower.versions == list(range(1, expected + 1)), (
            f"{follower.account}: stream saw {follower.versions}"
        )
    slowest = max((s for w in writes for s in w.seconds), default=0.0)
    assert slowest < 5.5, f"a write waited {slowest:.1f} s for its answer"
    return {
        "writes": len(writes),
        "answered_201": sum(w.created for w in writes),
        "answered_otherwise": sum(not w.created for w in writes),
        "answered_503_at_least_once": sum(503 in w.answers for w in writes),
        "no_answer_at_least_once": sum(any(isinstance(a, str) for a in w.answers) for w in writes),
        "entries_checked": len(log),
        "lost": len(lost),
        "duplicated": len(duplicated),
    }
