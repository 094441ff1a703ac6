"""Real ``ledger serve`` processes for tests that need more than one process.

:func:`serving_ledgers` starts N processes on one database at the same time (so
their start-up migrations race, as in a real rolling deployment), waits until
each answers ``GET /healthz``, yields them (base URL and log), and stops them on
exit (SIGTERM, then SIGKILL). Each process logs to a file of its own in
``log_dir``; a test puts :meth:`LedgerProcess.log_tail` in its failure messages,
and the logs are printed to stderr when the block raises or a process exited by
itself.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.servers import free_port

STARTUP_SECONDS = 60.0
STOP_SECONDS = 15.0


@dataclass(frozen=True)
class LedgerProcess:
    """A running ``ledger serve``: its base URL and its log file."""

    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, chars: int = 20_000) -> str:
        """The end of the process's log, headed by its URL and exit code."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return (
            f"--- ledger serve {self.url} (exit code {self.process.poll()}) ---\n{text[-chars:]}\n"
        )


def ledger_command() -> list[str]:
    """``ledger`` of this interpreter's environment (the console script beside it)."""
    script = Path(sys.executable).with_name("ledger")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from service.cli import app; app()"]


@functools.cache
def serve_has_workers_option() -> bool:
    """Whether ``ledger serve`` takes ``--workers`` (then each process runs one)."""
    shown = subprocess.run(
        [*ledger_command(), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    )
    return "--workers" in shown.stdout


def serve_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``LEDGER_*``, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(settings)
    return env


@contextlib.contextmanager
def serving_ledgers(
    settings: Mapping[str, str], log_dir: Path, count: int = 1
) -> Iterator[list[LedgerProcess]]:
    """Runs ``count`` ``ledger serve`` processes with environment ``settings``
    (``LEDGER_*``), logging to ``log_dir/serve-<n>.log``; yields them once
    every one answers ``/healthz``.

    Raises:
        RuntimeError: a process exited before it answered, did not answer
            within ``STARTUP_SECONDS`` (its log is in the message), or exited
            during the block.
    """
    env = serve_environment(settings)
    workers = ["--workers", "1"] if serve_has_workers_option() else []
    started: list[LedgerProcess] = []
    failed = True
    try:
        for index in range(count):
            port = free_port()
            log_path = log_dir / f"serve-{index}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [*ledger_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
                    + workers,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started.append(LedgerProcess(f"http://127.0.0.1:{port}", log_path, process))
        for ledger in started:
            _wait_healthy(ledger)
        yield started
        failed = False
    finally:
        exited = [p for p in started if p.process.poll() is not None]
        for ledger in started:
            _stop(ledger.process)
        if failed or exited:
            for ledger in started:
                sys.stderr.write(ledger.log_tail())
        if exited and not failed:
            raise RuntimeError("a ledger serve process exited during the block (log above)")


def _wait_healthy(ledger: LedgerProcess) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if ledger.process.poll() is not None:
            raise RuntimeError(f"ledger serve exited at start\n{ledger.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{ledger.url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)  # start-up only: nothing to wait on but the socket
    raise RuntimeError(f"ledger serve did not become healthy\n{ledger.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_SECONDS)
