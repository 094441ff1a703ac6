"""Group commit: many accounts' new entries and idempotency records in one
transaction, one table lock, one commit.

:meth:`record_group_async` takes a :class:`GroupWrite` and, in one transaction that
holds the event table's write lock (PostgreSQL ``LOCK TABLE … IN EXCLUSIVE
MODE``, as the ``eventsourcing`` recorder takes it so positions commit in
order; SQLite ``BEGIN IMMEDIATE``):

1. finds the accounts whose stored version moved past the version the
   caller's aggregates were at (another process wrote meanwhile), and the
   idempotency records already stored for the group's keys;
2. if there are any, writes nothing and answers them (:class:`Refused`): the
   caller reloads and re-runs only those accounts' commands and tries again;
3. else inserts the events (one statement) and the idempotency records, and
   commits.

On PostgreSQL all of it is one call of the function ``ledger_record_group``
(created at start, see :meth:`create_group_function`): one round trip and one
commit per group. Every value is bound; table names are configured identifiers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.rows import dict_row, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from service.adapters.idempotency_records import IDEMPOTENCY_TABLE, IdempotencyRecord

Existing = dict[tuple[str, str], IdempotencyRecord]
"""Stored idempotency records by ``(account_id, key)``."""

FUNCTION = "ledger_record_group"

GROUP_SECONDS = 1.5
"""Longest wait for a group's answer before its outcome counts as unknown."""
QUERY_SECONDS = 1.5
"""Longest wait for another query of the write path (fast-forward, resolve)."""


class UnknownOutcome(Exception):
    """The group was sent but no answer came back (connection lost, or no
    answer within :data:`GROUP_SECONDS`): it may or may not be committed.
    ``session`` identifies the server session that received it."""

    def __init__(self, session: tuple[int, Any]) -> None:
        super().__init__(f"no answer from session {session[0]}")
        self.session = session


async def bounded(coro: Any, seconds: float) -> Any:
    """Awaits ``coro`` for at most ``seconds``; raises ``TimeoutError`` after,
    leaving it to end in the background (a query cancelled on a dead link can
    take seconds to give up)."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(_ignore_outcome)
        raise TimeoutError(f"no answer within {seconds} s")
    return task.result()


def _ignore_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass
class GroupWrite:
    """What a group commit writes: each touched account's version before the
    group (-1: none stored), the keys to check, stored events (each account's
    in version order) and the idempotency records of the commands."""

    versions: dict[UUID, int] = field(default_factory=dict)
    keys: list[tuple[str, str]] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    idempotency: list[IdempotencyRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Refused:
    """Nothing was written: these accounts moved on, these keys are stored."""

    conflicted: set[UUID]
    existing: Existing


def _record_of(row: Any) -> IdempotencyRecord:
    return IdempotencyRecord(
        row["account_id"], row["key"], row["fingerprint"], row["entry_version"]
    )


_FUNCTION_BODY = """
CREATE OR REPLACE FUNCTION {schema}.{function}(
    ids uuid[], versions bigint[], key_accounts text[], key_names text[],
    ev_ids uuid[], ev_versions bigint[], ev_topics text[], ev_states bytea[],
    rec_accounts text[], rec_keys text[], rec_fingerprints text[], rec_versions bigint[])
RETURNS TABLE (kind text, originator_id uuid, originator_version bigint,
    notification_id bigint, account_id text, key text, fingerprint text,
    entry_version bigint)
LANGUAGE plpgsql AS $body$
DECLARE refused bigint := 0;
    n bigint;
BEGIN
    SET LOCAL lock_timeout = {lock_timeout};
    LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE;
    RETURN QUERY SELECT 'conflict', u.id, NULL::bigint, NULL::bigint, NULL::text,
        NULL::text, NULL::text, NULL::bigint
        FROM unnest(ids, versions) AS u(id, v)
        WHERE EXISTS (SELECT 1 FROM {schema}.{events} t
            WHERE t.originator_id = u.id AND t.originator_version > u.v);
    GET DIAGNOSTICS n = ROW_COUNT;
    refused := refused + n;
    RETURN QUERY SELECT 'key', NULL::uuid, NULL::bigint, NULL::bigint, i.account_id,
        i.key, i.fingerprint, i.entry_version
        FROM {schema}.{keys} i JOIN unnest(key_accounts, key_names) AS u(a, k)
        ON i.account_id = u.a AND i.key = u.k;
    GET DIAGNOSTICS n = ROW_COUNT;
    refused := refused + n;
    IF refused > 0 OR cardinality(ev_ids) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY INSERT INTO {schema}.{events} AS t
        (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ev_ids, ev_versions, ev_topics, ev_states)
        RETURNING 'event'::text, t.originator_id, t.originator_version, t.notification_id,
            NULL::text, NULL::text, NULL::text, NULL::bigint;
    INSERT INTO {schema}.{keys} (account_id, key, fingerprint, entry_version)
        SELECT * FROM unnest(rec_accounts, rec_keys, rec_fingerprints, rec_versions);
    NOTIFY {channel};
END;
$body$
"""


class PostgresGroupCommit:
    """Mixin for :class:`PostgresLedgerRecorder`."""

    datastore: Any
    events_table_name: str
    channel_name: str
    _async_conn: psycopg.AsyncConnection[Any] | None = None
    _session_start: Any = None

    def create_group_function(self) -> None:
        """Creates (or replaces) ``ledger_record_group`` (call it at start,
        under the startup lock)."""
        schema = Identifier(self.datastore.schema)
        statement = SQL(_FUNCTION_BODY).format(
            schema=schema,
            function=Identifier(FUNCTION),
            events=Identifier(self.events_table_name),
            keys=Identifier(IDEMPOTENCY_TABLE),
            channel=Identifier(self.channel_name),
            lock_timeout=Literal(f"{self.datastore.lock_timeout or 10}s"),
        )
        with self.datastore.get_connection() as conn:
            conn.execute(statement)

    async def record_group_async(
        self, write: GroupWrite, alive: Callable[[], Awaitable[bool]] | None = None
    ) -> list[int] | Refused:
        """Records ``write``; returns the positions of its events, in order,
        or :class:`Refused` (nothing written). Runs on this process's event
        loop over one connection of its own (groups are recorded one at a
        time).

        Raises psycopg errors when the database refused the group (nothing
        written), and :class:`UnknownOutcome` when the group was sent and no
        answer came back (see :meth:`resolve_group_async`). When no answer
        came within :data:`GROUP_SECONDS` and ``alive()`` (a probe of the
        database) says it answers, the group is merely slow (waiting for
        another process's table lock, a checkpoint): it is waited for up to
        the lock timeout."""
        conn = await self._connection()
        session: tuple[int, Any] = conn.info.backend_pid, self._session_start
        task = asyncio.ensure_future(self._execute_group(conn, write))
        try:
            done, _ = await asyncio.wait({task}, timeout=GROUP_SECONDS)
            if not done and alive is not None and await alive():
                patience = float(self.datastore.lock_timeout or 10)
                done, _ = await asyncio.wait({task}, timeout=patience)
            if not done:
                task.cancel()
                task.add_done_callback(_ignore_outcome)
                self._abandon(conn)
                raise UnknownOutcome(session)
            rows = task.result()
        except psycopg.Error as error:
            await self._drop_connection(conn)
            if error.sqlstate is None:  # the link failed, not the statement
                raise UnknownOutcome(session) from error
            raise
        return self._outcome(write, rows)

    async def _execute_group(
        self, conn: psycopg.AsyncConnection[Any], write: GroupWrite
    ) -> list[tuple[Any, ...]]:
        async with conn.cursor(row_factory=tuple_row) as curs:
            await curs.execute(self._call(), self._params(write), prepare=True, binary=True)
            return await curs.fetchall()

    async def resolve_group_async(
        self, write: GroupWrite, session: tuple[int, Any], seconds: float = QUERY_SECONDS
    ) -> list[int] | None:
        """Whether a group whose answer was lost (:class:`UnknownOutcome`) is
        committed: its events' positions if so, ``None`` if nothing of it was
        written. First ends the server session that received it (if it still
        runs, its transaction rolls back) and waits until it is gone, so the
        answer is final; then compares the stored events with the group's, byte
        for byte (each entry's state holds its command's id).

        Raises psycopg errors or ``TimeoutError`` when the database does not
        answer within ``seconds`` (the outcome stays unknown: try again)."""
        give_up = time.monotonic() + seconds
        conn = await bounded(
            psycopg.AsyncConnection.connect(
                self.datastore.pool.conninfo, autocommit=True, **self._connect_options()
            ),
            seconds,
        )
        try:
            left = max(give_up - time.monotonic(), 0.01)
            return await bounded(self._resolve(conn, write, session), left)  # type: ignore[no-any-return]
        finally:
            self._abandon(conn)

    async def _resolve(
        self, conn: psycopg.AsyncConnection[Any], write: GroupWrite, session: tuple[int, Any]
    ) -> list[int] | None:
        pid, started = session
        alive = (
            "SELECT pid FROM pg_stat_activity WHERE pid = %s"
            " AND backend_start IS NOT DISTINCT FROM %s"
        )
        await conn.execute(f"SELECT pg_terminate_backend(pid) FROM ({alive}) s", (pid, started))
        while await (await conn.execute(alive, (pid, started))).fetchone() is not None:
            await asyncio.sleep(0.02)
        if not write.events:
            return None  # nothing to find: answer 503 rather than trust stale refusals
        query = SQL(
            "SELECT e.originator_id, e.originator_version, e.notification_id, e.state"
            " FROM unnest(%s::uuid[], %s::bigint[]) AS u(id, v) JOIN {}.{} e"
            " ON e.originator_id = u.id AND e.originator_version = u.v"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        ids = [e.originator_id for e in write.events]
        versions = [e.originator_version for e in write.events]
        rows = await (await conn.execute(query, (ids, versions))).fetchall()
        stored = {(r[0], r[1]): (r[2], bytes(r[3])) for r in rows}
        positions = []
        for event in write.events:
            found = stored.get((event.originator_id, event.originator_version))
            if found is None or found[1] != bytes(event.state):
                return None  # not ours: the group (one transaction) was not committed
            positions.append(found[0])
        return positions

    async def events_after_async(self, versions: dict[UUID, int]) -> list[StoredEvent]:
        """Each account's stored events after the version given, in version
        order (to fast-forward accounts kept in memory), in one query."""
        conn = await self._connection()
        query = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%s::uuid[], %s::bigint[]) AS u(id, v) JOIN {}.{} e"
            " ON e.originator_id = u.id AND e.originator_version > u.v"
            " ORDER BY e.originator_id, e.originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))

        async def select() -> list[Any]:
            async with conn.cursor() as curs:
                await curs.execute(query, (list(versions), list(versions.values())), prepare=True)
                return await curs.fetchall()

        try:
            rows = await bounded(select(), QUERY_SECONDS)
        except TimeoutError:
            self._abandon(conn)
            raise psycopg.OperationalError("no answer from the database") from None
        except psycopg.Error:
            await self._drop_connection(conn)
            raise
        return [
            StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
            for r in rows
        ]

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._async_conn
        if conn is None or conn.closed:
            conn = await bounded(
                psycopg.AsyncConnection.connect(
                    self.datastore.pool.conninfo,
                    autocommit=True,
                    row_factory=dict_row,
                    **self._connect_options(),
                ),
                QUERY_SECONDS + 1,
            )
            try:
                # A plan cached while the tables were small (a seq scan) would
                # stay for the session's life: plan each call for its arguments.
                # The session's start tells it from a later one with its pid.
                rows = await bounded(self._prepare_session(conn), QUERY_SECONDS)
            except BaseException:
                self._abandon(conn)
                raise
            self._async_conn, self._session_start = conn, rows
        return conn

    def _connect_options(self) -> dict[str, Any]:
        """The pool's connection parameters (database, user…), bounded waits."""
        options = {k: v for k, v in self.datastore.pool.kwargs.items() if k != "row_factory"}
        return {**options, "connect_timeout": 2}

    @staticmethod
    async def _prepare_session(conn: psycopg.AsyncConnection[Any]) -> Any:
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        cursor = await conn.execute(
            "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
        row = await cursor.fetchone()
        return row["backend_start"] if row else None

    def _abandon(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Forgets ``conn`` and closes it in the background (never waited for)."""
        if self._async_conn is conn:
            self._async_conn = None
        task = asyncio.ensure_future(conn.close())
        task.add_done_callback(_ignore_outcome)

    async def close_connection(self) -> None:
        """Closes the group-commit connection (on the loop that opened it)."""
        conn = self._async_conn
        if conn is not None:
            await self._drop_connection(conn)

    async def _drop_connection(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._async_conn = None
        with contextlib.suppress(Exception):
            await conn.close()

    def _call(self) -> Composed:
        call: Composed | None = getattr(self, "_call_sql", None)
        if call is None:
            call = self._call_sql = SQL(
                "SELECT * FROM {}.{}(" + ", ".join(["%s"] * 12) + ")"
            ).format(Identifier(self.datastore.schema), Identifier(FUNCTION))
        return call

    @staticmethod
    def _params(write: GroupWrite) -> tuple[list[Any], ...]:
        events, records = write.events, write.idempotency
        return (
            list(write.versions),
            list(write.versions.values()),
            [a for a, _ in write.keys],
            [k for _, k in write.keys],
            [e.originator_id for e in events],
            [e.originator_version for e in events],
            [e.topic for e in events],
            [e.state for e in events],
            [r.account_id for r in records],
            [r.key for r in records],
            [r.fingerprint for r in records],
            [r.version for r in records],
        )

    @staticmethod
    def _outcome(write: GroupWrite, rows: list[tuple[Any, ...]]) -> list[int] | Refused:
        """Rows of ``ledger_record_group``: ``(kind, originator_id,
        originator_version, notification_id, account_id, key, fingerprint,
        entry_version)``."""
        conflicted = {r[1] for r in rows if r[0] == "conflict"}
        existing = {
            (r[4], r[5]): IdempotencyRecord(r[4], r[5], r[6], r[7]) for r in rows if r[0] == "key"
        }
        if conflicted or existing:
            return Refused(conflicted, existing)
        at = {(r[1], r[2]): r[3] for r in rows}
        return [at[(e.originator_id, e.originator_version)] for e in write.events]


class SQLiteGroupCommit:
    """Mixin for :class:`SQLiteLedgerRecorder` (``BEGIN IMMEDIATE``)."""

    datastore: Any
    events_table_name: str
    insert_events_statement: str

    def create_group_function(self) -> None:
        """Nothing to create on SQLite."""

    async def close_connection(self) -> None:
        """Nothing to close on SQLite (no connection of its own)."""

    async def record_group_async(
        self, write: GroupWrite, alive: Callable[[], Awaitable[bool]] | None = None
    ) -> list[int] | Refused:
        """:meth:`record_group` in a thread (no asyncio SQLite driver here)."""
        return await asyncio.to_thread(self.record_group, write)

    async def events_after_async(self, versions: dict[UUID, int]) -> list[StoredEvent]:
        """As :meth:`PostgresGroupCommit.events_after_async` (in a thread)."""

        def select() -> list[StoredEvent]:
            events: list[StoredEvent] = []
            with self.datastore.transaction(commit=False) as curs:
                for originator_id, version in versions.items():
                    curs.execute(
                        f"SELECT originator_version, topic, state FROM {self.events_table_name}"
                        " WHERE originator_id = ? AND originator_version > ?"
                        " ORDER BY originator_version",
                        (originator_id.hex, version),
                    )
                    events.extend(
                        StoredEvent(originator_id, r[0], r[1], r[2]) for r in curs.fetchall()
                    )
            return events

        return await asyncio.to_thread(select)

    def record_group(self, write: GroupWrite) -> list[int] | Refused:
        """As :meth:`PostgresGroupCommit.record_group_async`, blocking."""
        with self.datastore.get_connection(commit=True) as conn:
            curs = conn.cursor()
            curs.execute("BEGIN IMMEDIATE")
            try:
                result = self._record_group(curs, write)
            except BaseException:
                conn.rollback()
                raise
            if isinstance(result, Refused):
                conn.rollback()
            else:
                conn.commit()
            return result

    def _record_group(self, curs: Any, write: GroupWrite) -> list[int] | Refused:
        conflicted: set[UUID] = set()
        for originator_id, version in write.versions.items():
            curs.execute(
                f"SELECT MAX(originator_version) AS v FROM {self.events_table_name}"
                " WHERE originator_id = ?",
                (originator_id.hex,),
            )
            row = curs.fetchone()
            if row["v"] is not None and row["v"] > version:
                conflicted.add(originator_id)
        existing: Existing = {}
        for account_id, key in write.keys:
            curs.execute(
                "SELECT account_id, key, fingerprint, entry_version"
                f" FROM {IDEMPOTENCY_TABLE} WHERE account_id = ? AND key = ?",
                (account_id, key),
            )
            row = curs.fetchone()
            if row is not None:
                existing[(account_id, key)] = _record_of(row)
        if conflicted or existing:
            return Refused(conflicted, existing)
        positions = []
        for e in write.events:
            curs.execute(
                self.insert_events_statement,
                (UUID(str(e.originator_id)).hex, e.originator_version, e.topic, e.state),
            )
            positions.append(int(curs.lastrowid))
        curs.executemany(
            f"INSERT INTO {IDEMPOTENCY_TABLE}"
            " (account_id, key, fingerprint, entry_version) VALUES (?, ?, ?, ?)",
            [(r.account_id, r.key, r.fingerprint, r.version) for r in write.idempotency],
        )
        return positions
