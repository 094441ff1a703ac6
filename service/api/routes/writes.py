"""Writes: purchases, grants, consumptions, deductions, refunds, holds and
account settings. Each checks its request, calls
``service.application.commands``, renders.

Handlers are ``async`` and take the ``Request`` alone (see
``service.api.write_requests``); each becomes the same :class:`Operation` a
``/v1/batch`` operation of its kind becomes, planned by
``service.application.batch``. A write is queued for the committer (group
commit) and awaited on the event loop, without a thread hop; only captures,
releases and refunds first read the entry they name, in the threadpool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request

from service.api.responses import FastJSONResponse
from service.api.schemas import (
    AccountUpdate,
    CaptureCreate,
    ConsumptionCreate,
    DeductionCreate,
    GrantCreate,
    HoldCreate,
    PurchaseCreate,
    RefundCreate,
    ReleaseCreate,
    problems,
)
from service.api.write_requests import write_doc, write_request
from service.application.batch import (
    NEEDS_STORE,
    Operation,
    parse_target,
    plan,
    plan_credit_limit,
)
from service.application.ledger import WriteResult
from service.domain.published import WritePublic

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["writes"])

IDEMPOTENCY_409 = "`idempotency-key-in-flight`: the same `Idempotency-Key` is being processed"
REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when the answer repeats the one first given to this"
        " `Idempotency-Key`",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
WRITE_ERRORS = (400, 401, 403, 409, 413, 422, 503)
"""What every single write can answer besides its success."""


def _responses(
    *more: int, status: int = 201, notes: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A write's ``responses``: :data:`WRITE_ERRORS`, ``more`` statuses, and the
    ``Idempotent-Replayed`` header of its success ``status``."""
    statuses = sorted({*WRITE_ERRORS, *more})
    return {
        status: {"headers": REPLAYED},
        **problems(*statuses, notes={409: IDEMPOTENCY_409, **(notes or {})}),
    }


REFUND_RESPONSES = _responses(
    404,
    notes={
        404: "`entry-not-found`: no such consumption in the account (or not a UUID)",
        409: "`refund-exceeds-consumption`, or " + IDEMPOTENCY_409,
    },
)
HOLD_RESPONSES = _responses(
    404,
    notes={
        404: "`hold-not-found`: no such hold in the account (or not a UUID)",
        409: "`hold-not-active`: captured, released or expired; or " + IDEMPOTENCY_409,
    },
)


SUCCESS_STATUS = {"credit_limit": 200}
"""A write's success status when not 201 Created (account settings are
updated, no resource is created); a replay answers the same (IETF
Idempotency-Key draft: the first response, repeated)."""


def _render(kind: str, result: WriteResult) -> FastJSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    status = SUCCESS_STATUS.get(kind, 201)
    return FastJSONResponse(result.body, status_code=status, headers=headers)


async def _write(
    request: Request, scope: str, kind: str, model: type[Any], path_id: str | None = None
) -> FastJSONResponse:
    """Checks the request, plans its write as the batch operation of ``kind``
    would be planned, and answers once it is committed."""
    w = await write_request(request, scope, model)
    target, named = None, {}
    if path_id is not None:
        value = str(request.path_params[path_id])
        target, named = parse_target(kind, value), {path_id: value}
    op = Operation(kind, w.account_id, w.value, target, w.idempotency(kind, **named))
    actor, ledger = w.principal.name, w.runtime.ledger
    if kind == "credit_limit":
        write = plan_credit_limit(op, actor)
    elif kind in NEEDS_STORE:
        write = await w.runtime.guard.call(plan, ledger, op, actor)
    else:
        write = plan(ledger, op, actor)
    return _render(kind, await ledger.submit_write(write))


F = TypeVar("F", bound=Callable[..., Any])


def _write_route(
    path: str,
    model: type[Any],
    summary: str,
    *path_ids: str,
    responses: dict[int | str, dict[str, Any]],
    method: str = "POST",
) -> Callable[[F], F]:
    return router.api_route(
        path,
        methods=[method],
        status_code=200 if method == "PATCH" else 201,
        response_model=WritePublic,
        responses=responses,
        summary=summary,
        openapi_extra=write_doc(model, *path_ids),
    )


@_write_route(
    "/purchases", PurchaseCreate, "Add purchased tokens (scope purchase)", responses=_responses()
)
async def create_purchase(request: Request) -> FastJSONResponse:
    return await _write(request, "purchase", "purchase", PurchaseCreate)


@_write_route("/grants", GrantCreate, "Grant free tokens (scope grant)", responses=_responses())
async def create_grant(request: Request) -> FastJSONResponse:
    return await _write(request, "grant", "grant", GrantCreate)


@_write_route(
    "/consumptions",
    ConsumptionCreate,
    "Consume tokens, 402 when short (scope consume)",
    responses=_responses(402),
)
async def create_consumption(request: Request) -> FastJSONResponse:
    return await _write(request, "consume", "consume", ConsumptionCreate)


@_write_route(
    "/deductions",
    DeductionCreate,
    "Deduct tokens, 402 when short (scope grant)",
    responses=_responses(402),
)
async def create_deduction(request: Request) -> FastJSONResponse:
    return await _write(request, "grant", "deduct", DeductionCreate)


@_write_route(
    "/consumptions/{entry_id}/refunds",
    RefundCreate,
    "Refund a consumption",
    "entry_id",
    responses=REFUND_RESPONSES,
)
async def create_refund(request: Request) -> FastJSONResponse:
    return await _write(request, "consume", "refund", RefundCreate, "entry_id")


@_write_route(
    "/holds",
    HoldCreate,
    "Reserve tokens for a while (scope consume)",
    responses=_responses(402),
)
async def create_hold(request: Request) -> FastJSONResponse:
    return await _write(request, "consume", "hold", HoldCreate)


@_write_route(
    "/holds/{hold_id}/capture",
    CaptureCreate,
    "Consume a hold, release the rest",
    "hold_id",
    responses=HOLD_RESPONSES,
)
async def capture_hold(request: Request) -> FastJSONResponse:
    return await _write(request, "consume", "capture", CaptureCreate, "hold_id")


@_write_route(
    "/holds/{hold_id}/release",
    ReleaseCreate,
    "Release a hold",
    "hold_id",
    responses=HOLD_RESPONSES,
)
async def release_hold(request: Request) -> FastJSONResponse:
    return await _write(request, "consume", "release", ReleaseCreate, "hold_id")


@_write_route(
    "",
    AccountUpdate,
    "Change account settings: credit limit (admin)",
    responses=_responses(status=200),
    method="PATCH",
)
async def update_account(request: Request) -> FastJSONResponse:
    return await _write(request, "admin", "credit_limit", AccountUpdate)
