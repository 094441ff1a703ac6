"""A small SSE reader for tests: raw frames (WHATWG event-stream parsing) read
by a background thread, so a test can write while it listens."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Frame:
    """One event-stream block: its fields, and its comments (``: ping``)."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class StreamReader:
    """Connects to ``url`` and queues every frame until :meth:`close`.

    ``paused=True`` makes a slow reader: once the response headers arrived it
    reads nothing (the server's socket fills, a ``receive_buffer`` of a few KB
    makes that quick) until :meth:`resume`.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        paused: bool = False,
        receive_buffer: int | None = None,
    ) -> None:
        self.frames: queue.Queue[Frame] = queue.Queue()
        self.status: int | None = None
        self.content_type: str | None = None
        options = (
            []
            if receive_buffer is None
            else [(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)]
        )
        self._client = httpx.Client(
            timeout=httpx.Timeout(30.0, read=60.0),
            transport=httpx.HTTPTransport(socket_options=options),
        )
        self._url, self._headers = url, headers or {}
        self._resumed = threading.Event()
        if not paused:
            self._resumed.set()
        self._ready = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(15), "stream did not answer"

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self._url, headers=self._headers) as response:
                self.status = response.status_code
                self.content_type = response.headers.get("content-type")
                self._ready.set()
                self._resumed.wait()
                frame = Frame()
                for line in response.iter_lines():
                    if line == "":
                        if frame != Frame():
                            self.frames.put(frame)
                        frame = Frame()
                    elif line.startswith(":"):
                        frame.comments.append(line[1:].strip())
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "retry":
                            frame.retry = int(value)
                        elif name in ("event", "data", "id"):
                            setattr(frame, name, value)
        except (httpx.HTTPError, RuntimeError):
            if not self._closed:
                raise
        finally:
            self._ready.set()

    def resume(self) -> None:
        """Starts reading (after ``paused=True``)."""
        self._resumed.set()

    def next(self, timeout: float = 15.0, *, skip_comments: bool = True) -> Frame:
        """The next frame (pings skipped unless ``skip_comments`` is false).

        Raises:
            queue.Empty: nothing within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            frame = self.frames.get(timeout=max(deadline - time.monotonic(), 0.001))
            if skip_comments and frame.comments and frame.data is None and frame.retry is None:
                continue
            return frame

    def next_data(self, timeout: float = 15.0) -> Frame:
        """The next frame carrying data (``queue.Empty`` after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(deadline - time.monotonic(), 0.001))
            if frame.data is not None:
                return frame

    def ended(self, timeout: float) -> bool:
        """Whether the server closed the stream within ``timeout`` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._closed = True
        self._resumed.set()
        self._client.close()
