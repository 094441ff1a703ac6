"""The FastAPI application: routes, error handlers, middleware and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from service.api import redaction
from service.api.auth import StreamTokens
from service.api.errors import install_error_handlers
from service.api.fast_path import FastPathMiddleware
from service.api.limits import BodyLimitMiddleware
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.routes import batch, keys, ops, reads, stripe, webhooks, writes
from service.api.streams import router as streams_router
from service.api.ui import CorsMiddleware
from service.api.ui import router as ui_router
from service.config import Settings
from service.runtime import Runtime

DESCRIPTION = """\
Event-sourced token ledger, HTTP contract v1.1 (`API.md`).

Choices where the contract is silent:

- **Unknown body fields are refused** (422 `validation-error`): a misspelt field
  of a payments request must not be dropped silently.
- **Bodies are read as JSON whatever the `Content-Type`**; an empty body is `{}`
  (so `release` needs no body); JSON that is not an object → 422; text that is
  not JSON (also `NaN`, `Infinity`, lone UTF-16 surrogates such as `"\\ud800"`)
  → 400 `malformed-request`. Numbers in `metadata` must be finite.
- Text fields: `operation`, `model`, `payment_reference` 1-255 characters;
  `reason` 1-1000 and **required** on grants and deductions.
- `expires_at` / `as_of`: RFC 3339 with `Z` or an offset (naive times → 422),
  stored and answered in UTC.
- Credentials are checked before the path and the body: a 401/403 wins over a
  422. Path ids that are not UUIDs answer 404 (`hold-not-found`,
  `entry-not-found`).
- API keys are read only from `Authorization: Bearer`; `?access_token=` carries
  stream tokens only (URLs end up in logs). API keys are `tl_` + 32 random
  bytes; only SHA-256 hashes are stored. Each process caches keys for under
  a second: a revocation takes effect at once in the process that revoked it
  and, through the bridge, in the others (within 1 s at worst). `scopes`
  keep the order given, duplicates dropped; at least one scope. A duplicate
  name → 409 `api-key-exists`.
- `LEDGER_ADMIN_API_KEY` is not stored: it is accepted as `bootstrap-admin`
  (scope `admin`) while the variable is set; it is not listed and cannot be
  revoked through the API (409 `api-key-not-revocable`).
- Stream tokens are HS256 JWTs signed with `LEDGER_SECRET_KEY`; when it is
  unset, with a random per-process secret (tokens then die with the process).
  A token stops working when the key that issued it is revoked. `ttl_seconds`
  defaults to 3600 (1..86400).
- Balance: `ETag` is the quoted position; `If-None-Match` (also `*` and weak
  tags) → 304. `wait` is a number of seconds 0..10; `min_position` without
  `wait` checks once. `as_of` and `as_of_version` need scope `read` (not a
  stream token) and exclude each other (422). Without `min_position`, a read
  waits up to 2 s for the projection to apply the account's last entry written
  through the same process (read-your-writes without asking), else answers
  with `"stale": true`; across processes, pass the write's `position` as
  `min_position`.
- Query integers (`after_version`, `after_position`, `min_position`,
  `as_of_version`) are 0..2^63-1; `limit` is 1..1000 (default 100).
- Responses carrying a secret (new API key, stream token) are `Cache-Control:
  no-store`.
- Writes replayed from an `Idempotency-Key` carry `Idempotent-Replayed: true`.
  A key identifies the request by its kind, account and fields (the path's
  ids included), so a single write and the equal `/v1/batch` operation are
  the same request. Two requests with one key at once in one process: the
  second answers the first's result as a replay once it is recorded.
- `/v1/batch`: top-level members other than `operations` are ignored; an
  operation with an unknown `op` is a 422 result; scope is checked before the
  operation's fields (403 before 422, as for single writes); an id that is
  not a UUID answers 404 (`hold-not-found`, `entry-not-found`). If the
  database fails, the operations not recorded answer 503 results.
- Unknown routes → 404 `not-found`, wrong methods → 405 `method-not-allowed`,
  store failures → 503 `unavailable` with `Retry-After`, anything unexpected →
  500 `internal-error` without details.
- `/healthz`, `/readyz` and `/metrics` need no credentials (keep them on an
  internal network). `/readyz` is 503 when the database is unreachable or
  when the projection lags more than 10000 positions; with Redis configured
  but down it answers 200 with `"status": "degraded"`.
- `/ui/` (the dashboard and `tokenledger.js`) is outside this document. CORS:
  the dashboard's files and an account's `GET` balance, entries and their
  streams answer any origin (`Access-Control-Allow-Origin: *`, never with
  credentials: they act only on the bearer credential the calling page
  holds, and the API sets no cookie), so `<token-balance>` works on any
  site; every other route answers only the origins in
  `LEDGER_CORS_ORIGINS` (comma-separated, or `*`; none by default).
"""


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The service. Builds a :class:`Runtime` from ``settings`` (default: the
    environment) at startup unless one is given; starts it unless it runs
    already, and then stops it at shutdown."""
    metrics = Metrics()
    redaction.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = runtime
        if current is None:
            current = await run_in_threadpool(Runtime.create, settings or Settings())
        app.state.runtime = current
        app.state.stream_tokens = StreamTokens(current.secret_key)
        metrics.watch_ledger(lambda: metrics.positions)
        owned = not current.started
        if owned:
            await current.start()
        try:
            yield
        finally:
            if owned:
                await current.stop()

    app = FastAPI(
        title="tokenledger",
        version="1.1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(writes.router)
    app.include_router(batch.router)
    app.include_router(reads.router)
    app.include_router(keys.router)
    app.include_router(streams_router)
    app.include_router(ops.router)
    app.include_router(webhooks.router)  # /v1/webhook-endpoints: signed alerts out
    app.include_router(stripe.router)  # POST /v1/webhooks/stripe: payments from Stripe
    app.include_router(ui_router)  # /ui/: the dashboard and tokenledger.js
    metrics.routes = app.router.routes
    fast = [r for r in writes.router.routes + batch.router.routes if isinstance(r, APIRoute)]
    app.add_middleware(FastPathMiddleware, routes=fast)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(CorsMiddleware)
    return app
