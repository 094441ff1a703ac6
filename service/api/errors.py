"""Every error answer as RFC 9457 ``application/problem+json``.

One handler renders any :class:`~service.domain.errors.LedgerError`; the others
translate what the framework and the stores raise into ledger errors first, so
all problems share one shape: ``type``, ``title``, ``status``, ``detail``,
``code`` and extra members (e.g. ``errors`` for 422).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import eventsourcing.persistence as es
import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.domain.errors import (
    LedgerError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    Unavailable,
    ValidationFailed,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    es.OperationalError,
    es.InterfaceError,
    es.ConnectionUnavailableError,
    es.ConnectionPoolClosedError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    psycopg_pool.PoolTimeout,
    TimeoutError,
)
"""Store failures answered with 503 ``unavailable`` (the request may be retried);
``TimeoutError``: a store did not answer in time (``projections.hub``)."""

RETRY_AFTER_SECONDS = 1


class InternalError(LedgerError):
    status, code, title = 500, "internal-error", "Internal server error"


def problem_response(error: LedgerError) -> JSONResponse:
    """The problem+json response of ``error`` with its headers."""
    return JSONResponse(
        error.problem(), status_code=error.status, headers=error.headers, media_type=PROBLEM_JSON
    )


def validation_errors(
    errors: Sequence[Any], prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as the contract's ``[{"loc", "msg"}]``."""
    return [
        {"loc": [*prefix, *error.get("loc", ())], "msg": str(error.get("msg", "invalid"))}
        for error in errors
    ]


async def _ledger_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, LedgerError)
    return problem_response(exc)


async def _request_validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem_response(MalformedRequest("the request body is not valid JSON"))
    return problem_response(ValidationFailed(validation_errors(errors)))


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
"""The methods a route of this app may take (never ``OPTIONS`` or ``TRACE``)."""


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405: every method some route takes at the
    request's path (Starlette names those of the first route it tried, e.g.
    ``POST`` alone for ``OPTIONS /v1/api-keys``, which also takes ``GET``)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return problem_response(NotFound("no such resource"))
    if exc.status_code == 405:
        error: LedgerError = MethodNotAllowed("method not allowed on this resource")
        error.headers.update(headers)
        error.headers["Allow"] = allowed_methods(request)
        return problem_response(error)
    # Any other HTTP error of the framework: status kept, a generic code.
    status = exc.status_code
    code = {400: "malformed-request", 413: "payload-too-large"}.get(status, "http-error")
    body = {
        "type": f"/problems/{code}",
        "title": str(exc.detail),
        "status": status,
        "detail": str(exc.detail),
        "code": code,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning(
        "store unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return problem_response(
        Unavailable("a backing store is unavailable; retry later", RETRY_AFTER_SECONDS)
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(InternalError("an unexpected error occurred"))


def install_error_handlers(app: FastAPI) -> None:
    """Registers the problem+json handlers on ``app``."""
    app.add_exception_handler(LedgerError, _ledger_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_class in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_class, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
