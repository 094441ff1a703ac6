"""Operations: liveness, readiness and Prometheus metrics (no credentials)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service.api.deps import RuntimeDep
from service.api.errors import problem_response
from service.api.metrics import Metrics
from service.api.responses import FastJSONResponse
from service.api.schemas import HealthPublic, ReadyPublic, problems
from service.domain.errors import Unavailable
from service.runtime import Runtime

router = APIRouter(tags=["operations"])

MAX_READY_LAG = 10_000
"""Projection lag (positions) above which the process reports not ready."""


@router.get("/healthz", summary="The process is up", response_model=HealthPublic)
async def healthz() -> HealthPublic:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database reachable and the projection caught up (200, `degraded` while Redis"
    " is down), else 503",
    response_model=ReadyPublic,
    responses=problems(503, notes={503: "`unavailable`: not ready (extra `checks`)"}),
)
async def readyz(runtime: RuntimeDep) -> Response:
    checks: dict[str, Any] = {}
    ready = True
    try:
        applied, head = await runtime.queries.projection_progress()
    except Exception:
        checks["database"] = "unreachable"
        ready = False
    else:
        checks["database"] = "ok"
        lag = max(head - applied, 0)
        checks["projection"] = {"position": applied, "head": head, "lag": lag}
        if lag > MAX_READY_LAG:
            ready = False
    if runtime.settings.redis_url:
        checks["broker"] = "ok" if runtime.queries.bridge_healthy else "unreachable"
    else:
        checks["broker"] = "in-process"
    if not ready:
        return problem_response(Unavailable("not ready", retry_after=5, context={"checks": checks}))
    # Contract v1.1: Redis down is "degraded", not unready (streams read the store).
    ready_body: ReadyPublic = {
        "status": "ready" if checks["broker"] != "unreachable" else "degraded",
        "checks": checks,
    }
    return FastJSONResponse(ready_body)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    assert isinstance(registry, Metrics)
    runtime: Runtime = request.app.state.runtime
    try:  # bounded: a scrape never hangs on the database
        registry.positions = await runtime.queries.projection_progress()
    except Exception:
        registry.positions = None
    try:
        registry.webhooks = await runtime.webhooks.totals()
    except Exception:
        registry.webhooks = None
    payload = await run_in_threadpool(generate_latest, registry.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
