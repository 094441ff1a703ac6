"""Streams across a bridge outage: the app reaches Redis through a TCP relay
that the test cuts and restores. While cut, streams are fed by the hub's
polling of the balance table (entries from the ledger store); once restored,
they go on from the bridge, nothing missing, nothing twice."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.config import Settings
from tests.helpers.servers import ADMIN_KEY, free_port, fresh_postgres_database, running_app
from tests.helpers.sse import StreamReader

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


class Relay:
    """Forwards 127.0.0.1:<port> to Redis; :meth:`cut` drops every connection
    and refuses new ones until :meth:`restore`."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 6379)) -> None:
        self.target = target
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._server.close()


@pytest.fixture(scope="module")
def outage() -> Iterator[tuple[str, Relay]]:
    relay = Relay()
    with fresh_postgres_database() as db_url:
        settings = Settings(
            database_url=db_url,
            redis_url=f"redis://127.0.0.1:{relay.port}/0",
            admin_api_key=ADMIN_KEY,
            sse_ping_seconds=1,
        )
        try:
            with running_app(settings) as url:
                yield url, relay
        finally:
            relay.close()


def ready(http: httpx.Client, want: bool, timeout: float = 15) -> None:
    """Waits until /readyz reports the bridge up (``want``) or down."""
    deadline = time.monotonic() + timeout
    while ((r := http.get("/readyz")).json().get("checks", {}).get("broker") == "ok") != want:
        assert time.monotonic() < deadline, f"broker never became {'up' if want else 'down'}"
        time.sleep(0.05)
    # Contract v1.1: Redis down is 200 "degraded", never a 503.
    assert r.status_code == 200, r.text
    assert r.json()["status"] == ("ready" if want else "degraded")


def post(http: httpx.Client, account: str, kind: str, amount: int) -> dict[str, Any]:
    answer = http.post(f"/v1/accounts/{account}/{kind}", json={"amount": amount})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_streams_keep_delivering_through_a_bridge_outage_and_go_on_after_it(
    outage: tuple[str, Relay],
) -> None:
    url, relay = outage
    account = f"outage-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        ready(http, True)
        balances = StreamReader(f"{url}/v1/accounts/{account}/balance/stream", AUTH)
        entries = StreamReader(f"{url}/v1/accounts/{account}/entries/stream", AUTH)
        try:
            assert balances.next_data().json()["version"] == 0
            assert entries.next().retry == 3000
            post(http, account, "purchases", 100)  # over the bridge
            relay.cut()
            ready(http, False)
            post(http, account, "consumptions", 1)  # the bridge is down
            post(http, account, "consumptions", 2)
            seen = [balances.next_data(timeout=10).json()]
            while seen[-1]["version"] < 3:  # from the table: v2 may be skipped
                seen.append(balances.next_data(timeout=10).json())
            relay.restore()
            ready(http, True)
            post(http, account, "consumptions", 3)  # over the bridge again
            while seen[-1]["version"] < 4:
                seen.append(balances.next_data(timeout=10).json())
            assert seen[-1]["available"] == 100 - 6
            positions = [balance["position"] for balance in seen]
            assert positions == sorted(set(positions))  # never older, never twice
            versions = [entries.next_data(timeout=10).json()["version"] for _ in range(4)]
            assert versions == [1, 2, 3, 4]  # none missing, none twice
            with pytest.raises(queue.Empty):  # nothing twice
                entries.next_data(timeout=1.5)
        finally:
            balances.close()
            entries.close()
