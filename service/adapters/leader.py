"""One leader per deployment: the process that runs the projection and the
expiry sweeper, and one (``ledger deliver``) that delivers webhooks.

On PostgreSQL the leader holds a session-level advisory lock
(``pg_try_advisory_lock``) on a connection of its own. When the leader dies
its connection closes, PostgreSQL releases the lock, and another process,
trying every ``interval`` seconds (1 s), takes over: within ~2 s. The holder
checks its connection every interval and steps down when it is lost. On the
embedded SQLite default there is one process, always the leader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

import psycopg

log = logging.getLogger(__name__)

LOCK_KEY = 0x746F6B6C6564  # "tokled"
"""The advisory lock's key (one per database) of the projection and sweeper."""
DELIVERY_LOCK_KEY = 0x746F6B776864  # "tokwhd"
"""The advisory lock's key of webhook delivery (``ledger deliver``)."""


class Leadership:
    """``is_leader`` is set while this process leads (read from any thread)."""

    def __init__(
        self,
        conninfo: str | None,
        interval: float = 1.0,
        key: int = LOCK_KEY,
        standby: float = 0.0,
    ) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.standby = standby
        self.key = key
        self.is_leader = threading.Event()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.conninfo is None:  # SQLite: the only process
            self.is_leader.set()
            return
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._step_down()

    def _run(self) -> None:
        if self._stop.wait(self.standby):
            return
        while not self._stop.is_set():
            try:
                if self.is_leader.is_set():
                    self._check()
                else:
                    self._try_acquire()
            except psycopg.Error as error:
                if self.is_leader.is_set():
                    log.warning("leadership lost: %s", error)
                self._step_down()
            self._stop.wait(self.interval)

    def _try_acquire(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.conninfo or "",
                autocommit=True,
                connect_timeout=5,
                # Who leads, for operators: pg_stat_activity joined with pg_locks.
                application_name=f"tokenledger leader {self.key:x} pid {os.getpid()}",
            )
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if row is not None and row[0]:
            role = "webhook delivery" if self.key == DELIVERY_LOCK_KEY else "projection and sweeper"
            log.info("this process leads: %s run here", role)
            self.is_leader.set()

    def _check(self) -> None:
        assert self._conn is not None
        self._conn.execute("SELECT 1")

    def _step_down(self) -> None:
        self.is_leader.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
