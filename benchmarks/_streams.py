"""Raw-socket HTTP/1.1 clients for benchmarks/compare.py: SSE stream holders and a paced writer.

Everything here runs in worker processes (``multiprocessing``, spawn), so the
client is spread over several cores and its own CPU time can be reported.
Streams are plain non-blocking sockets (``asyncio.open_connection``) sending a
raw ``GET`` with ``Accept: text/event-stream``; responses are de-chunked and
split into SSE events by hand, so a held stream costs the client a few KB.

The parent talks to a worker over a ``multiprocessing`` pipe:

- stream worker: sends ``("opened", info)`` once every stream has its first
  data frame (or failed), waits for ``"start"`` (the measured window begins),
  then for ``"stop"``, and answers ``("result", {...})``;
- pacer: sends ``("ready", None)``, waits for ``"start"``, writes at the given
  rate, answers ``("result", {...})``.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process
of the machine), so frames and writes from different processes compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from multiprocessing.connection import Connection
from typing import Any


def raise_nofile() -> int:
    """Raises this process's RLIMIT_NOFILE soft limit to the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _request(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before the response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readline()
    return await reader.read()


# -- streams ------------------------------------------------------------------


class Stream:
    """One held SSE stream: its data frames and (when sampled) its comment (ping) times."""

    __slots__ = ("account", "comments", "error", "first", "frames", "key", "opened", "sample")

    def __init__(self, key: int, account: str, sample: bool) -> None:
        self.key = key
        self.account = account
        self.sample = sample
        self.frames: list[tuple[float, str]] = []  # (arrival, data) of data events
        self.comments: list[float] = []  # arrival of comment-only events (pings)
        self.opened = asyncio.Event()
        self.first = 0.0
        self.error: str | None = None


def _events(buffer: bytearray, stream: Stream, now: float, keep_frames: bool) -> bytearray:
    """Takes the complete SSE events out of ``buffer``; returns what is left."""
    data = bytes(buffer).replace(b"\r\n", b"\n")
    *complete, rest = data.split(b"\n\n")
    for block in complete:
        if not block:
            continue
        payload: list[bytes] = []
        comment = False
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                payload.append(line[5:].removeprefix(b" "))
            elif line.startswith(b":"):
                comment = True
        if payload:
            if not stream.opened.is_set():
                stream.first = now
                stream.opened.set()
            if keep_frames:
                stream.frames.append((now, b"\n".join(payload).decode()))
        elif comment and stream.sample:
            stream.comments.append(now)
    return bytearray(rest)


async def _hold(
    stream: Stream,
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    keep_frames: bool,
    gate: asyncio.Semaphore,
    writers: list[asyncio.StreamWriter],
) -> None:
    await gate.acquire()  # bounds the connects in flight, up to each first frame
    released = False
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writers.append(writer)
        head = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **headers}
        writer.write(_request("GET", f"{host}:{port}", path, head, b""))
        status, response_headers = await _read_head(reader)
        if status != 200:
            stream.error = f"status {status}"
            return
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        buffer = bytearray()
        while True:
            if chunked:
                line = await reader.readline()
                if not line:
                    break
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    break
                chunk = (await reader.readexactly(size + 2))[:-2]
            else:
                chunk = await reader.read(65536)
                if not chunk:
                    break
            buffer += chunk
            buffer = _events(buffer, stream, time.monotonic(), keep_frames)
            if not released and stream.opened.is_set():
                released = True
                gate.release()
        stream.error = "closed by the server"
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        stream.error = stream.error or f"{type(exc).__name__}: {exc}"
    finally:
        stream.opened.set()
        if not released:
            gate.release()


async def _run_streams(pipe: Connection, spec: dict[str, Any]) -> None:
    host, port = spec["host"], spec["port"]
    keep_frames = spec["keep_frames"]
    gate = asyncio.Semaphore(spec.get("connect_concurrency", 64))
    writers: list[asyncio.StreamWriter] = []
    streams = [
        Stream(key, account, sample) for key, account, sample in spec["streams"]
    ]  # (key, account, sampled for pings)
    started = time.monotonic()
    tasks = [
        asyncio.ensure_future(
            _hold(
                s,
                host,
                port,
                spec["path"].format(account=s.account),
                spec["headers"],
                keep_frames,
                gate,
                writers,
            )
        )
        for s in streams
    ]
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(s.opened.wait() for s in streams)), spec.get("open_timeout", 180)
        )
    failed = [s for s in streams if s.error or not s.opened.is_set()]
    pipe.send(
        (
            "opened",
            {
                "opened": len(streams) - len(failed),
                "failed": len(failed),
                "errors": sorted({s.error or "no first frame" for s in failed})[:5],
                "open_seconds": round(time.monotonic() - started, 3),
            },
        )
    )
    await asyncio.to_thread(pipe.recv)  # "start"
    window_start = time.monotonic()
    cpu_start = cpu_seconds()
    frames_before = {s.key: len(s.frames) for s in streams}
    await asyncio.to_thread(pipe.recv)  # "stop"
    window_end = time.monotonic()
    cpu = cpu_seconds() - cpu_start
    result: dict[str, Any] = {
        "window": [window_start, window_end],
        "cpu_seconds": cpu,
        "alive": sum(1 for s in streams if s.error is None and s.opened.is_set()),
        "errors": sorted({s.error for s in streams if s.error})[:5],
        "frames_in_window": sum(len(s.frames) - frames_before[s.key] for s in streams),
        "pings": {s.key: s.comments for s in streams if s.sample},
    }
    if keep_frames:
        result["frames"] = {s.key: (s.account, s.frames) for s in streams}
    for task in tasks:
        task.cancel()
    for writer in writers:
        with contextlib.suppress(Exception):
            writer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(("result", result))


def stream_worker(pipe: Connection, spec: dict[str, Any]) -> None:
    """Process entry: holds ``spec["streams"]`` open (see the module docstring).

    ``spec``: host, port, path (with ``{account}``), headers, streams (list of
    ``(key, account, sample_pings)``), keep_frames (record every data frame).
    """
    raise_nofile()
    try:
        asyncio.run(_run_streams(pipe, spec))
    except Exception as exc:  # report instead of leaving the parent waiting
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))


# -- paced writer -------------------------------------------------------------


async def _writer_connection(
    host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    return reader, writer


async def _run_pacer(pipe: Connection, spec: dict[str, Any]) -> None:
    host, port = spec["host"], spec["port"]
    rate, seconds, accounts = spec["rate"], spec["seconds"], spec["accounts"]
    headers = {"Content-Type": "application/json", **spec["headers"]}
    body = json.dumps({"amount": 1}).encode()
    connections = [await _writer_connection(host, port) for _ in range(spec["connections"])]
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for connection in connections:
        free.put_nowait(connection)
    writes: list[dict[str, Any]] = []
    late = 0

    async def write(account: str) -> None:
        reader, writer = await free.get()
        path = spec["path"].format(account=account)
        sent = time.monotonic()
        try:
            writer.write(_request("POST", f"{host}:{port}", path, headers, body))
            status, response_headers = await _read_head(reader)
            raw = await _read_body(reader, response_headers)
        except (OSError, asyncio.IncompleteReadError) as exc:
            writes.append({"account": account, "sent": sent, "error": str(exc)})
            reader, writer = await _writer_connection(host, port)
        else:
            answered = time.monotonic()
            item: dict[str, Any] = {
                "account": account,
                "sent": sent,
                "answered": answered,
                "status": status,
            }
            if status == 201:
                item["balance"] = json.loads(raw)["balance"]
            writes.append(item)
        free.put_nowait((reader, writer))

    pipe.send(("ready", None))
    await asyncio.to_thread(pipe.recv)  # "start"
    cpu_start = cpu_seconds()
    total = int(rate * seconds)
    tasks = []
    start = time.monotonic()
    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        tasks.append(asyncio.ensure_future(write(accounts[i % len(accounts)])))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds() - cpu_start
    for _, writer in connections:
        with contextlib.suppress(Exception):
            writer.close()
    pipe.send(
        (
            "result",
            {
                "writes": writes,
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "scheduled_late_50ms": late,
            },
        )
    )


def pacer_worker(pipe: Connection, spec: dict[str, Any]) -> None:
    """Process entry: ``spec["rate"]`` consumptions of 1 token per second for
    ``spec["seconds"]``, round-robin over ``spec["accounts"]``, over
    ``spec["connections"]`` keep-alive connections; records each write's send
    and answer times and the balance it answered."""
    raise_nofile()
    try:
        asyncio.run(_run_pacer(pipe, spec))
    except Exception as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
