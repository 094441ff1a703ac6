"""Every error answer as RFC 9457 ``application/problem+json``.

The one place where ledger errors meet HTTP: :data:`STATUS` maps each
:class:`~service.domain.errors.LedgerError` code to its status (contract v1.1,
``API.md`` "Errors"), :func:`problem` renders the body and
:func:`problem_response` adds the headers (``WWW-Authenticate`` on 401,
``Retry-After`` on 503). The other handlers translate what the framework and
the stores raise into ledger errors first, so all problems share one shape:
``type``, ``title``, ``status``, ``detail``, ``code`` and the error's context
as extra members (e.g. ``errors`` on 422, ``available`` on 402).
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
    Unauthorized,
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
    """Nothing the client did: a defect, logged (HTTP 500)."""

    code, title = "internal-error", "Internal server error"


STATUS: dict[str, int] = {
    "bad-request": 400,
    "malformed-request": 400,
    "unauthorized": 401,
    "insufficient-balance": 402,
    "forbidden": 403,
    "not-found": 404,
    "account-not-found": 404,
    "hold-not-found": 404,
    "entry-not-found": 404,
    "method-not-allowed": 405,
    "conflict": 409,
    "hold-not-active": 409,
    "idempotency-key-in-flight": 409,
    "refund-exceeds-consumption": 409,
    "api-key-exists": 409,
    "api-key-not-revocable": 409,
    "payload-too-large": 413,
    "validation-error": 422,
    "balance-limit-exceeded": 422,
    "idempotency-key-reused": 422,
    "internal-error": 500,
    "unavailable": 503,
}
"""HTTP status of each ledger error code (contract v1.1); a code missing here
is a defect, answered 500 (``tests/unit/test_error_statuses.py`` checks every
subclass)."""


def status_of(error: LedgerError) -> int:
    """The HTTP status answering ``error``."""
    return STATUS.get(error.code, 500)


def problem(error: LedgerError) -> dict[str, Any]:
    """The RFC 9457 problem object of ``error``: ``type``, ``title``,
    ``status``, ``detail``, ``code`` and the error's context members."""
    return {
        "type": f"/problems/{error.code}",
        "title": error.title,
        "status": status_of(error),
        "detail": error.detail,
        "code": error.code,
        **error.context,
    }


def problem_headers(error: LedgerError) -> dict[str, str]:
    """Headers the status of ``error`` calls for: ``WWW-Authenticate`` on 401
    (RFC 6750), ``Retry-After`` in seconds on 503 (RFC 9110)."""
    if isinstance(error, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(error, Unavailable):
        return {"Retry-After": str(error.retry_after)}
    return {}


def problem_response(error: LedgerError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem+json response of ``error``, with its headers and ``headers``."""
    return JSONResponse(
        problem(error),
        status_code=status_of(error),
        headers={**problem_headers(error), **(headers or {})},
        media_type=PROBLEM_JSON,
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
        error = MethodNotAllowed("method not allowed on this resource")
        return problem_response(error, {**headers, "Allow": allowed_methods(request)})
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
