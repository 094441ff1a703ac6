"""How ``ledger``'s background processes start, watch their parent, and stop.

``ledger serve`` starts ``ledger project``, which starts ``ledger deliver``
(PostgreSQL): each child gets SIGTERM when its parent dies (Linux
``PR_SET_PDEATHSIG``) and also checks every second that its parent is still
the one that started it, and each stops on SIGINT / SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_SECONDS = 3.0
"""Longest clean stop of a background process before it exits anyway."""


def _signal_on_parent_death() -> None:
    """In the child, before it runs: SIGTERM when the parent dies (Linux
    ``PR_SET_PDEATHSIG``; elsewhere the child's own parent check does it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def child_command(command: str) -> Iterator[subprocess.Popen[bytes]]:
    """Runs ``ledger <command> --parent <this pid>`` while the block runs,
    then stops it (SIGTERM, SIGKILL after 10 s)."""
    argv = [sys.executable, "-m", "service.cli", command, "--parent", str(os.getpid())]
    child = subprocess.Popen(argv, preexec_fn=_signal_on_parent_death)  # noqa: S603
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def stop_requested(parent_pid: int | None) -> threading.Event:
    """An event set on SIGINT / SIGTERM, or once the process is no longer a
    child of ``parent_pid`` (it died; this process was re-parented)."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Set from another thread: the handler runs on the main thread, which
        # may be inside ``done.wait()`` holding the event's lock (deadlock).
        signal.signal(sig, lambda *_: threading.Thread(target=done.set).start())
    if parent_pid is not None:
        threading.Thread(
            target=_end_with_parent, args=(parent_pid, done), name="parent-watch", daemon=True
        ).start()
    return done


def bound_the_stop() -> None:
    """Exits the process :data:`STOP_SECONDS` from now, whatever still runs
    (an unfinished projection batch rolls back: the tracking position keeps it
    exactly-once; an attempt under way is made again: same ``webhook-id``)."""
    threading.Timer(STOP_SECONDS, os._exit, args=(0,)).start()


def _end_with_parent(parent_pid: int, done: threading.Event) -> None:
    while not done.wait(1.0):
        if os.getppid() != parent_pid:
            log.warning("the parent process %d is gone; stopping", parent_pid)
            done.set()
