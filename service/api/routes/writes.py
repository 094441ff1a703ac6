"""Writes: purchases, grants, consumptions, deductions, refunds, holds and
account settings. Each checks its request, calls
``service.application.commands``, renders.

Handlers are ``async`` and take the ``Request`` alone (see
``service.api.write_requests``): a write is queued for the committer (group
commit) and awaited on the event loop, without a thread hop; only captures,
releases and refunds first read the entry they name, in the threadpool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.api.responses import FastJSONResponse
from service.api.schemas import (
    AccountUpdate,
    CaptureCreate,
    ConsumptionCreate,
    DeductionCreate,
    GrantCreate,
    HoldCreate,
    Problem,
    PurchaseCreate,
    RefundCreate,
    ReleaseCreate,
    WriteResult,
)
from service.api.write_requests import write_doc, write_request
from service.application import commands
from service.application.ledger import Write
from service.application.ledger import WriteResult as Result
from service.domain.errors import EntryNotFound, HoldNotFound
from service.runtime import Runtime

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["writes"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 402, 403, 404, 409, 413, 422, 503)
}


def _render(result: Result) -> FastJSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return FastJSONResponse(result.body, status_code=result.status, headers=headers)


async def _submit(runtime: Runtime, write: Write) -> FastJSONResponse:
    return _render(await runtime.ledger.submit_write(write))


def _uuid(value: str, not_found: type[HoldNotFound] | type[EntryNotFound], what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise not_found(f"no {what} {value}") from None


F = TypeVar("F", bound=Callable[..., Any])


def _write_route(
    path: str, model: type[Any], summary: str, *path_ids: str, method: str = "POST"
) -> Callable[[F], F]:
    return router.api_route(
        path,
        methods=[method],
        status_code=200 if method == "PATCH" else 201,
        response_model=WriteResult,
        responses=ERRORS,
        summary=summary,
        openapi_extra=write_doc(model, *path_ids),
    )


@_write_route("/purchases", PurchaseCreate, "Add purchased tokens (scope purchase)")
async def create_purchase(request: Request) -> FastJSONResponse:
    w = await write_request(request, "purchase", PurchaseCreate)
    v = w.value
    return await _submit(
        w.runtime,
        commands.purchase(
            w.account_id,
            v.amount,
            actor=w.principal.name,
            idem=w.idempotency("purchase"),
            payment_reference=v.payment_reference,
            expires_at=v.expires_at,
            metadata=v.metadata,
        ),
    )


@_write_route("/grants", GrantCreate, "Grant free tokens (scope grant)")
async def create_grant(request: Request) -> FastJSONResponse:
    w = await write_request(request, "grant", GrantCreate)
    v = w.value
    return await _submit(
        w.runtime,
        commands.grant(
            w.account_id,
            v.amount,
            actor=w.principal.name,
            idem=w.idempotency("grant"),
            reason=v.reason,
            expires_at=v.expires_at,
            metadata=v.metadata,
        ),
    )


@_write_route("/consumptions", ConsumptionCreate, "Consume tokens, 402 when short (scope consume)")
async def create_consumption(request: Request) -> FastJSONResponse:
    w = await write_request(request, "consume", ConsumptionCreate)
    v = w.value
    return await _submit(
        w.runtime,
        commands.consume(
            w.account_id,
            v.amount,
            actor=w.principal.name,
            idem=w.idempotency("consume"),
            operation=v.operation,
            model=v.model,
            metadata=v.metadata,
        ),
    )


@_write_route("/deductions", DeductionCreate, "Deduct tokens, 402 when short (scope grant)")
async def create_deduction(request: Request) -> FastJSONResponse:
    w = await write_request(request, "grant", DeductionCreate)
    v = w.value
    return await _submit(
        w.runtime,
        commands.deduct(
            w.account_id,
            v.amount,
            actor=w.principal.name,
            idem=w.idempotency("deduct"),
            reason=v.reason,
            metadata=v.metadata,
        ),
    )


@_write_route("/consumptions/{entry_id}/refunds", RefundCreate, "Refund a consumption", "entry_id")
async def create_refund(request: Request) -> FastJSONResponse:
    w = await write_request(request, "consume", RefundCreate)
    entry_id = str(request.path_params["entry_id"])
    target = _uuid(entry_id, EntryNotFound, "consumption")
    v = w.value
    write = await run_in_threadpool(
        lambda: commands.refund(
            w.runtime.ledger,
            w.account_id,
            target,
            v.amount,
            actor=w.principal.name,
            idem=w.idempotency("refund", entry_id=entry_id),
            reason=v.reason,
        )
    )
    return await _submit(w.runtime, write)


@_write_route("/holds", HoldCreate, "Reserve tokens for a while (scope consume)")
async def create_hold(request: Request) -> FastJSONResponse:
    w = await write_request(request, "consume", HoldCreate)
    v = w.value
    return await _submit(
        w.runtime,
        commands.place_hold(
            w.account_id,
            v.amount,
            actor=w.principal.name,
            idem=w.idempotency("hold"),
            ttl_seconds=v.ttl_seconds,
            operation=v.operation,
            metadata=v.metadata,
        ),
    )


@_write_route(
    "/holds/{hold_id}/capture", CaptureCreate, "Consume a hold, release the rest", "hold_id"
)
async def capture_hold(request: Request) -> FastJSONResponse:
    w = await write_request(request, "consume", CaptureCreate)
    hold_id = str(request.path_params["hold_id"])
    hold = _uuid(hold_id, HoldNotFound, "hold")
    write = await run_in_threadpool(
        lambda: commands.capture_hold(
            w.runtime.ledger,
            w.account_id,
            hold,
            w.value.amount,
            actor=w.principal.name,
            idem=w.idempotency("capture", hold_id=hold_id),
        )
    )
    return await _submit(w.runtime, write)


@_write_route("/holds/{hold_id}/release", ReleaseCreate, "Release a hold", "hold_id")
async def release_hold(request: Request) -> FastJSONResponse:
    w = await write_request(request, "consume", ReleaseCreate)
    hold_id = str(request.path_params["hold_id"])
    hold = _uuid(hold_id, HoldNotFound, "hold")
    write = await run_in_threadpool(
        lambda: commands.release_hold(
            w.runtime.ledger,
            w.account_id,
            hold,
            actor=w.principal.name,
            idem=w.idempotency("release", hold_id=hold_id),
        )
    )
    return await _submit(w.runtime, write)


@_write_route("", AccountUpdate, "Change account settings: credit limit (admin)", method="PATCH")
async def update_account(request: Request) -> FastJSONResponse:
    w = await write_request(request, "admin", AccountUpdate)
    return await _submit(
        w.runtime,
        commands.set_credit_limit(
            w.account_id,
            w.value.credit_limit,
            actor=w.principal.name,
            idem=w.idempotency("credit_limit"),
        ),
    )
