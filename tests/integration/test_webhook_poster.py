"""The webhook poster against a local HTTP server: what it sends, what it
keeps of the answer, and what it refuses (redirects, private addresses)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from service.adapters.webhook_http import WebhookPoster

pytestmark = pytest.mark.integration


class Server:
    """Answers every POST with ``status``, ``body`` and ``headers``; records paths."""

    def __init__(self) -> None:
        self.status, self.body, self.headers = 204, b"", {"content-length": "0"}
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.port = 0


@contextlib.contextmanager
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.requests.append((self.path, headers, body))
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: object) -> None:
            return

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = http.server_address[1]
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()


def post(url: str, allow_insecure: bool = True) -> tuple[int, str]:
    async def run() -> tuple[int, str]:
        poster = WebhookPoster(4, allow_insecure)
        try:
            headers = [("content-type", "application/json"), ("webhook-id", "msg_1")]
            return await poster.post(httpx.URL(url), b'{"a":1}', headers, 200)
        finally:
            await poster.aclose()

    return asyncio.run(run())


def test_the_body_and_headers_arrive_as_given_and_the_status_comes_back() -> None:
    with server() as receiver:
        assert post(f"http://127.0.0.1:{receiver.port}/hook") == (204, "")
        ((path, headers, body),) = receiver.requests
    assert (path, body) == ("/hook", b'{"a":1}')
    assert headers["webhook-id"] == "msg_1"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == "7"


def test_a_redirect_is_answered_not_followed() -> None:
    with server() as receiver:
        receiver.status = 307
        receiver.headers = {"location": "/elsewhere", "content-length": "0"}
        assert post(f"http://127.0.0.1:{receiver.port}/hook") == (307, "")
        assert [path for path, _, _ in receiver.requests] == ["/hook"]


def test_only_the_start_of_a_long_answer_is_kept() -> None:
    with server() as receiver:
        receiver.status, receiver.body = 500, b"x" * 100_000
        receiver.headers = {"content-length": str(len(receiver.body))}
        status, excerpt = post(f"http://127.0.0.1:{receiver.port}/hook")
    assert (status, excerpt) == (500, "x" * 200)


def test_a_name_resolving_to_a_private_address_is_refused_when_connecting() -> None:
    with server() as receiver:
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            post(f"http://localhost:{receiver.port}/hook", allow_insecure=False)
        assert receiver.requests == []


def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    with server() as receiver:
        port = receiver.port
    with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
        post(f"http://127.0.0.1:{port}/hook")
