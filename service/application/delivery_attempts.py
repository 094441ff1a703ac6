"""One webhook delivery attempt: signed now, posted, its outcome decided.

Signing follows the Standard Webhooks specification with the
``standardwebhooks`` library: ``webhook-id``, ``webhook-timestamp`` (Unix
seconds, the attempt's) and ``webhook-signature`` (``v1,`` + base64
HMAC-SHA256 with the endpoint's secret). The post follows no redirect and
reads at most :data:`EXCERPT` characters of the answer
(``service.adapters.webhook_http``). Any 2xx within :data:`TIMEOUT_SECONDS`
is ``delivered``; anything else is retried after the next delay of the
retry schedule, and is ``failed`` once the schedule is used up (contract v1.1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from service.adapters.webhook_http import WebhookPoster
from service.adapters.webhook_records import Attempt, PendingMessage

TIMEOUT_SECONDS = 10.0
"""A receiver must answer within this, connection included (contract v1.1)."""
EXCERPT = 200
"""Characters of a failed response or error kept with the message."""


class AttemptSender:
    """Sends attempts with ``poster``; ``retry_seconds``: the delays before
    each retry; ``clock``: Unix seconds (signatures, retry times)."""

    def __init__(
        self, poster: WebhookPoster, retry_seconds: Sequence[float], clock: Callable[[], float]
    ) -> None:
        self.poster, self.retry_seconds, self.clock = poster, list(retry_seconds), clock

    async def send(
        self, url: httpx.URL, signer: Webhook, refused: str | None, message: PendingMessage
    ) -> Attempt:
        """Posts ``message`` to ``url`` signed by ``signer``, unless
        ``refused`` says why its URL is refused: then that is the attempt's
        error. Returns the attempt's outcome, timed. Never raises: a failure
        is the attempt's."""
        status: int | None = None
        error, seconds = refused, None
        if error is None:
            started = time.monotonic()
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    headers = list(self.headers(message, signer).items())
                    status, excerpt = await self.poster.post(url, message.body, headers, EXCERPT)
                error = None if 200 <= status < 300 else excerpt
            except Exception as failure:  # any failure is the attempt's: recorded, retried
                error = f"{type(failure).__name__}: {failure}"[:EXCERPT]
            seconds = time.monotonic() - started
        attempts = message.attempts + 1
        if status is not None and 200 <= status < 300:
            outcome, next_at = "delivered", None
        elif attempts > len(self.retry_seconds):
            outcome, next_at = "failed", None
        else:
            outcome, next_at = "pending", self.clock() + self.retry_seconds[attempts - 1]
        return Attempt(message.key, outcome, status, error, next_at, seconds)

    def headers(self, message: PendingMessage, signer: Webhook) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt (signed now)."""
        moment = datetime.fromtimestamp(int(self.clock()), tz=UTC)
        signature = signer.sign(message.webhook_id, moment, message.body.decode("utf-8"))
        return {
            "content-type": "application/json",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
            "user-agent": "tokenledger-webhooks/1",
        }
