"""A webhook receiver for tests: a local HTTP server that records every call
and answers the statuses a test scripts (default 204)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Call:
    """One request the receiver got: its headers (lower-case names) and body."""

    headers: dict[str, str]
    body: bytes


class Receiver:
    """Calls received so far, and the statuses to answer next."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.answers: list[int] = []
        """Statuses answered to the next calls, in order; then 204."""
        self._lock = threading.Lock()
        self.url = ""

    def record(self, call: Call) -> int:
        with self._lock:
            self.calls.append(call)
            return self.answers.pop(0) if self.answers else 204

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Call]:
        """The calls once there are at least ``count`` (polls the list itself).

        Raises:
            AssertionError: fewer after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.calls) >= count:
                    return list(self.calls)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.calls)} webhook calls, expected {count}")


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 (``receiver.url``) for the block."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = receiver.record(Call(headers, body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
