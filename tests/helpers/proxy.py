"""A TCP proxy the test owns, to cut PostgreSQL or Redis without stopping them.

Modes:

- ``"pass"``: bytes flow both ways.
- ``"refuse"``: every open connection is reset and new ones are refused
  (closed at once), as when the server is down.
- ``"blackhole"``: connections are accepted and bytes are swallowed, never
  answered, as behind a dead network path; open connections stall too. Going
  back to ``"pass"`` resets the stalled connections (their peers see an error).
- ``"lose-answers"``: open connections still deliver what the client sends,
  but the server's answers are swallowed (a commit whose acknowledgement is
  lost); new connections are black-holed. Leaving it resets them all.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole", "lose-answers"]


class TcpProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode: Mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set_mode(self, mode: Mode) -> None:
        """Switches mode; leaving ``"pass"`` (or a black hole) resets open connections."""
        with self._lock:
            previous, self.mode = self.mode, mode
            if mode != previous and (mode == "refuse" or previous != "pass"):
                pairs, self._pairs = self._pairs, []
            else:
                pairs = []
        for client, upstream in pairs:
            _reset(client)
            if upstream is not None:
                _reset(upstream)

    def close(self) -> None:
        self._closed = True
        self.set_mode("refuse")
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            mode = self.mode
            if mode == "refuse":
                _reset(client)
                continue
            upstream = None
            if mode == "pass":
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _reset(client)
                    continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket | None) -> None:
        peers = {client: upstream, upstream: client} if upstream else {client: None}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    other = peers[sock]
                    mode = self.mode
                    forward = mode == "pass" or (mode == "lose-answers" and sock is client)
                    if forward and other is not None:
                        other.sendall(data)
                    # otherwise: swallowed
                if self.mode == "refuse" or self._closed:
                    return
        except (OSError, ValueError):  # ValueError: a socket closed by set_mode
            return
        finally:
            for peer in (client, upstream):
                if peer is not None:
                    _reset(peer)


def _reset(sock: socket.socket) -> None:
    """Closes with RST, as a dead peer or a refused port looks."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TcpProxy]:
    """A :class:`TcpProxy` to ``host:port`` for the ``with`` block."""
    proxy = TcpProxy((host, port))
    try:
        yield proxy
    finally:
        proxy.close()
