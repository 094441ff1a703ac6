"""Serves the write routes without FastAPI's router and middleware stack.

The write endpoints take the ``Request`` alone (``service.api.write_requests``),
so they can be called directly: this middleware matches their paths with the
routes' own patterns and calls the same endpoint functions, rendering
:class:`LedgerError` and store failures exactly as ``service.api.errors`` does.
Everything else, and the OpenAPI description of these routes, stays FastAPI's.
Measured: FastAPI's router, dependency solver and inner middleware cost more
per write than the write itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_ERRORS,
    InternalError,
    problem_response,
)
from service.domain.errors import LedgerError, Unavailable

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class FastPathMiddleware:
    """Calls ``routes``' endpoints directly when method and path match."""

    def __init__(self, app: ASGIApp, routes: list[APIRoute]) -> None:
        self.app = app
        self.routes = [(method, route) for route in routes for method in route.methods or ()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            for route_method, route in self.routes:
                if route_method != method:
                    continue
                match = route.path_regex.match(path)
                if match is not None:
                    scope["path_params"] = match.groupdict()
                    scope["route"] = route
                    response = await _serve(route.endpoint, Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _serve(endpoint: Any, request: Request) -> Response:
    try:
        response: Response = await endpoint(request)
    except LedgerError as error:
        return problem_response(error)
    except UNAVAILABLE_ERRORS as error:
        log.warning("store unavailable on %s: %s", request.url.path, type(error).__name__)
        return problem_response(
            Unavailable("a backing store is unavailable; retry later", RETRY_AFTER_SECONDS)
        )
    except Exception as error:
        log.error("unexpected error on %s", request.url.path, exc_info=error)
        return problem_response(InternalError("an unexpected error occurred"))
    return response
