"""Delivers the webhook outbox (Standard Webhooks), in the leader process only.

Each round takes the due messages that head their endpoint and account (the
store's ``due``: a message being retried holds back the later ones, so each
receiver sees an account's messages in position order) and sends each in a
task of its own, so a slow or dead receiver (10 s timeout) holds back nothing
but its own messages. A message is signed at each attempt (``webhook-id``,
``webhook-timestamp`` in Unix seconds, ``webhook-signature`` ``v1,`` + base64
HMAC-SHA256 with the endpoint's secret, by the ``standardwebhooks`` library),
posted without following redirects, and recorded: any 2xx is ``delivered``,
anything else is retried after the next delay of ``retry_seconds`` and is
``failed`` once they are used up. The host is checked again before every
attempt (``service.adapters.public_urls``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from service.adapters.leader import Leadership
from service.adapters.public_urls import UnsafeUrl, check_url
from service.adapters.webhook_store import DueMessage, WebhookStore

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
"""A receiver must answer within this (contract v1.1)."""
POLL_SECONDS = 0.25
"""Longest wait between rounds when nothing woke the dispatcher."""
ROUND_LIMIT = 500
"""Most (endpoint, account) heads read per round (the store's ``due``)."""
MAX_IN_FLIGHT = 64
"""Most deliveries under way at once."""
EXCERPT = 200
"""Characters of a failed response or error kept with the message."""


class WebhookDispatcher:
    """Runs the delivery loop in a thread of its own while this process leads."""

    def __init__(
        self,
        store: WebhookStore,
        retry_seconds: Sequence[float],
        allow_insecure: bool,
        leadership: Leadership,
        clock: Callable[[], float] = time.time,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store, self.retry_seconds = store, list(retry_seconds)
        self.allow_insecure, self.leadership, self.clock = allow_insecure, leadership, clock
        self.observe = observe
        """Called with each attempt's result (``delivered``, ``retry``,
        ``failed``) and its duration in seconds (metrics)."""
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
        """Looks for due messages now (the projection recorded some)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.leadership.is_leader.wait(0.5):
                continue
            try:
                asyncio.run(self._deliver_while_leading())
            except Exception:
                log.exception("webhook dispatcher failed; restarting in 1 s")
                self._stop.wait(1.0)

    async def _deliver_while_leading(self) -> None:
        in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            while not self._stop.is_set() and self.leadership.is_leader.is_set():
                self._wake.clear()
                due = await asyncio.to_thread(self.store.due, self.clock(), ROUND_LIMIT)
                for message in due:
                    group = (message.endpoint_id, message.account_id)
                    if group in in_flight or len(in_flight) >= MAX_IN_FLIGHT:
                        continue
                    task = asyncio.create_task(self._attempt(client, message))
                    in_flight[group] = task
                    task.add_done_callback(_forget(in_flight, group))
                await asyncio.to_thread(self._wake.wait, POLL_SECONDS)
            for task in list(in_flight.values()):
                task.cancel()

    async def _attempt(self, client: httpx.AsyncClient, message: DueMessage) -> None:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            await asyncio.to_thread(check_url, message.url, self.allow_insecure)
            response = await client.post(
                message.url, content=message.body, headers=self.headers(message)
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = response.text[:EXCERPT]
        except UnsafeUrl as unsafe:
            error = f"refused: {unsafe}"[:EXCERPT]
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:EXCERPT]
        delivered = status is not None and 200 <= status < 300
        attempts = message.attempts + 1
        if delivered:
            outcome, next_at = "delivered", None
        elif attempts > len(self.retry_seconds):
            outcome, next_at = "failed", None
        else:
            outcome, next_at = "pending", self.clock() + self.retry_seconds[attempts - 1]
        await asyncio.to_thread(
            self.store.record_attempt, message.webhook_id, outcome, status, error, next_at
        )
        if self.observe is not None:
            result = "retry" if outcome == "pending" else outcome
            self.observe(result, time.monotonic() - started)
        if outcome != "pending":
            self._wake.set()  # the next message of this endpoint and account may go

    def headers(self, message: DueMessage) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt (signed now)."""
        moment = datetime.fromtimestamp(int(self.clock()), tz=UTC)
        signature = Webhook(message.secret).sign(
            message.webhook_id, moment, message.body.decode("utf-8")
        )
        return {
            "content-type": "application/json",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
            "user-agent": "tokenledger-webhooks/1",
        }


def _forget(
    in_flight: dict[tuple[str, str], asyncio.Task[None]], group: tuple[str, str]
) -> Callable[[asyncio.Task[None]], None]:
    """A done callback removing ``group``'s task from ``in_flight``."""

    def forget(_: asyncio.Task[None]) -> None:
        in_flight.pop(group, None)

    return forget
