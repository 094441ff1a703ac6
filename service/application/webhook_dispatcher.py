"""Delivers the webhook outbox (Standard Webhooks), in the process leading delivery only.

Each endpoint has a reader following its outbox rows in order (the order the
projection appends in), which hands each message to the endpoint's lanes
(``service.application.delivery_lanes``: one lane per account, one message
in flight per lane, so a receiver sees an account's messages in position
order). Each endpoint has :data:`WORKERS` workers of its own, so a slow
or dead receiver (10 s timeout) holds back only its own messages.

Readers do not poll: one watch of the outbox's last position every
:data:`POLL_SECONDS` (or a wake-up from an in-process projection) tells them
all when there is more to read, and workers wake a reader waiting for room.
Ended messages past ``retention_seconds`` are pruned while leading
(``service.application.outbox_retention``).

Each attempt is signed, posted and decided by
``service.application.delivery_attempts`` (10 s timeout, no redirects).
Outcomes are recorded in group commits (:class:`AttemptRecorder`), and a
lane's next message goes only once its head's outcome is committed: after a
crash a receiver may see a message again (same ``webhook-id``), never out of
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import httpx
from standardwebhooks import Webhook

from service.adapters.leader import Leadership
from service.adapters.public_urls import UnsafeUrl, check_target
from service.adapters.webhook_http import WebhookPoster
from service.adapters.webhook_records import EndpointRecord, Key
from service.adapters.webhook_store import WebhookStore
from service.application.attempt_recorder import AttemptRecorder
from service.application.delivery_attempts import EXCERPT, AttemptSender
from service.application.delivery_lanes import (
    ENDPOINT_MESSAGES,
    LANE_MESSAGES,
    EndpointLanes,
    Lane,
)
from service.application.outbox_retention import prune_while_leading

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""How often the outbox's last position is read (one query for all
endpoints; its readers read on when it grew, or when woken), and how long a
lane waiting for room in its endpoint waits before it tries again."""
NEWS_SECONDS = 5.0
"""Longest a reader waits for news before reading anyway (a safety net: the
watch of the last position wakes it)."""
ENDPOINTS_SECONDS = 1.0
"""How often the endpoint list is read again (deletions take effect)."""
PAGE = 1_000
"""Outbox rows read at once."""
WORKERS = 64
"""Deliveries under way at once per endpoint (its workers): each waits for
its receiver's answer, then for its outcome's group commit."""
CONNECTIONS = 64
"""Kept-alive connections per receiving host at most."""


@dataclass(eq=False)
class Endpoint:
    """A subscribed endpoint while this process leads: its lanes, its queue
    of lanes ready to send, its workers."""

    record: EndpointRecord
    url: httpx.URL
    """Its URL, parsed once."""
    signer: Webhook
    unsafe: str | None
    """Why its URL is refused without resolving it (form, literal address)."""
    lanes: EndpointLanes
    ready: asyncio.Queue[Lane] = field(default_factory=asyncio.Queue)
    news: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when there may be more to read: new messages, or room for them."""
    paused: bool = False
    """Its reader waits for room (its lanes hold all they may)."""
    cursor: Key = (-1, "", -1)
    """The last row its reader took; rows after it are the reader's to read."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """Its reader and workers."""

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


class WebhookDispatcher:
    """Runs the delivery loop in a thread of its own while this process leads."""

    def __init__(
        self,
        store: WebhookStore,
        retry_seconds: Sequence[float],
        allow_insecure: bool,
        leadership: Leadership,
        clock: Callable[[], float] = time.time,
        niceness: int = 0,
        retention_seconds: float = 0.0,
    ) -> None:
        self.store, self.retry_seconds = store, list(retry_seconds)
        self.allow_insecure, self.leadership, self.clock = allow_insecure, leadership, clock
        self.niceness = niceness
        """Added to the delivery thread's niceness (its worker threads inherit it)."""
        self.retention_seconds = retention_seconds
        """Ended messages older than this are deleted while leading
        (``service.application.outbox_retention``); 0: kept forever."""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Reads the outbox now (the projection recorded messages)."""
        self._wake.set()

    def _run(self) -> None:
        if self.niceness and hasattr(os, "setpriority"):
            # Linux: a thread's own nice value, inherited by threads it starts.
            thread = threading.get_native_id()
            with contextlib.suppress(OSError):
                os.setpriority(
                    os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + self.niceness
                )
        while not self._stop.is_set():
            if not self.leadership.is_leader.wait(0.5):
                continue
            try:
                asyncio.run(self._deliver_while_leading())
            except Exception:
                log.exception("webhook dispatcher failed; restarting in 1 s")
                self._stop.wait(1.0)

    async def _deliver_while_leading(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._shut: set[str] = set()
        """Endpoints whose secret no configured key opens: not delivered to."""
        self._recorder = AttemptRecorder(self.store.record_attempts)
        self._poster = WebhookPoster(CONNECTIONS, self.allow_insecure)
        self._sender = AttemptSender(self._poster, self.retry_seconds, self.clock)
        background = [asyncio.create_task(self._recorder.run())]
        if self.retention_seconds > 0:
            pruning = prune_while_leading(self.store, self.retention_seconds, self.clock)
            background.append(asyncio.create_task(pruning))
        try:
            # Readers read once when they start: news is what comes after.
            (last, _), refreshed = await self._watch(-1), -ENDPOINTS_SECONDS
            while not self._stop.is_set() and self.leadership.is_leader.is_set():
                if time.monotonic() - refreshed >= ENDPOINTS_SECONDS:
                    await self._refresh()
                    refreshed = time.monotonic()
                woken = await asyncio.to_thread(self._wake.wait, POLL_SECONDS)
                self._wake.clear()
                last, grew = await self._watch(last)
                if woken or grew:
                    for endpoint in self._endpoints.values():
                        endpoint.news.set()
        finally:
            for endpoint in self._endpoints.values():
                endpoint.stop()
            for task in background:
                task.cancel()
            await self._poster.aclose()

    async def _refresh(self) -> None:
        """Starts the reader and workers of new endpoints, stops those of
        deleted ones."""
        records = {r.id: r for r in await asyncio.to_thread(self.store.endpoints)}
        for endpoint_id in set(self._endpoints) - set(records):
            self._endpoints.pop(endpoint_id).stop()
        for endpoint_id, record in records.items():
            if endpoint_id in self._endpoints:
                continue
            if record.secret is None:  # its messages wait, pending, for the key
                if endpoint_id not in self._shut:
                    self._shut.add(endpoint_id)
                    log.error(
                        "webhook endpoint %s: no configured key opens its secret", endpoint_id
                    )
                continue
            url, unsafe = httpx.URL(), None
            try:
                check_target(record.url, self.allow_insecure)
                url = httpx.URL(record.url)
            except (UnsafeUrl, httpx.InvalidURL) as refused:
                unsafe = f"refused: {refused}"[:EXCERPT]
            signer = Webhook(record.secret)
            endpoint = Endpoint(record, url, signer, unsafe, EndpointLanes(endpoint_id))
            endpoint.tasks = [asyncio.create_task(self._follow(endpoint))] + [
                asyncio.create_task(self._work(endpoint)) for _ in range(WORKERS)
            ]
            self._endpoints[endpoint_id] = endpoint

    async def _watch(self, last: int) -> tuple[int, bool]:
        """The outbox's last position, and whether it grew past ``last`` (on
        failure: unchanged, and grown, so readers look for themselves)."""
        try:
            now = await asyncio.to_thread(self.store.last_position)
        except Exception:
            log.exception("webhook outbox watch failed; readers read anyway")
            return last, True
        return now, now != last

    async def _follow(self, endpoint: Endpoint) -> None:
        """Reads the endpoint's messages in order into its lanes, pausing
        while they hold all they may."""
        endpoint_id = endpoint.record.id
        while endpoint.cursor[0] < 0:
            try:
                first = await asyncio.to_thread(self.store.first_to_deliver, endpoint_id)
            except Exception:
                log.exception("webhook reader of %s failed; again in 1 s", endpoint_id)
                await asyncio.sleep(1.0)
                continue
            endpoint.cursor = (first - 1, endpoint_id, 0)
        while True:
            try:
                await self._read(endpoint)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook reader of %s failed; again in 1 s", endpoint_id)
                await asyncio.sleep(1.0)

    async def _read(self, endpoint: Endpoint) -> None:
        """Reads a page into the lanes, or waits for news when there is no
        room or nothing new."""
        endpoint.news.clear()
        endpoint.paused = endpoint.lanes.full
        if not endpoint.paused:
            rows = await asyncio.to_thread(self.store.pending_after, endpoint.cursor, PAGE)
            for message in rows:
                if endpoint.lanes.full:  # read on from here once there is room
                    endpoint.paused = True  # (the workers wake it then)
                    break
                lane = endpoint.lanes.admit(message)
                if lane is not None:
                    endpoint.ready.put_nowait(lane)
                endpoint.cursor = message.key
            if len(rows) == PAGE and not endpoint.paused:
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endpoint.news.wait(), NEWS_SECONDS)

    async def _work(self, endpoint: Endpoint) -> None:
        while True:
            lane = await endpoint.ready.get()
            try:
                await self._serve(endpoint, lane)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook lane %s failed; again in 1 s", lane.account_id)
                asyncio.get_running_loop().call_later(1.0, endpoint.ready.put_nowait, lane)

    async def _serve(self, endpoint: Endpoint, lane: Lane) -> None:
        """Sends the lane's head (reading the lane back first if need be)."""
        lanes, loop = endpoint.lanes, asyncio.get_running_loop()
        if not lane.messages and lane.truncated:
            room = min(LANE_MESSAGES, ENDPOINT_MESSAGES - lanes.held)
            if room <= 0:  # the endpoint holds all it may: try again later
                loop.call_later(POLL_SECONDS, endpoint.ready.put_nowait, lane)
                return
            lane.reloading = True
            # Only what the reader has passed: it never reads that again, so
            # no message is taken twice, even by a lane created anew.
            read = await asyncio.to_thread(
                self.store.pending_of,
                endpoint.record.id,
                lane.account_id,
                lane.last,
                endpoint.cursor,
                room,
            )
            held = len(lane.messages)
            lane.reloaded(read, room)
            lanes.held += len(lane.messages) - held
        if not lane.messages:
            if lane.truncated:
                endpoint.ready.put_nowait(lane)
            else:
                lane.scheduled = False
                lanes.lanes.pop(lane.account_id, None)
            return
        head = lane.messages[0]
        wait = head.next_attempt_at - self.clock()
        if wait > 0:  # a retry from before this process led
            lanes.hold_back(lane, head)
            loop.call_later(wait, endpoint.ready.put_nowait, lane)
            self._wake_if_room(endpoint)
            return
        attempt = await self._sender.send(endpoint.url, endpoint.signer, endpoint.unsafe, head)
        await self._recorder.record(attempt)
        if attempt.status == "pending" and attempt.next_attempt_at is not None:
            due = attempt.next_attempt_at
            lanes.hold_back(lane, replace(head, attempts=head.attempts + 1, next_attempt_at=due))
            loop.call_later(due - self.clock(), endpoint.ready.put_nowait, lane)
            self._wake_if_room(endpoint)
            return
        if lanes.done(lane):
            endpoint.ready.put_nowait(lane)
        self._wake_if_room(endpoint)

    @staticmethod
    def _wake_if_room(endpoint: Endpoint) -> None:
        """Wakes the endpoint's paused reader once its lanes have room for a page."""
        if endpoint.paused and endpoint.lanes.held <= ENDPOINT_MESSAGES - PAGE:
            endpoint.paused = False
            endpoint.news.set()
