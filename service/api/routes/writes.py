"""Writes: purchases, grants, consumptions, deductions, refunds, holds and
account settings. Each parses, calls ``service.application.commands``, renders.

Handlers are ``async``: a write is queued for the committer (group commit)
and awaited on the event loop, without a thread hop; only captures, releases
and refunds first read the entry they name, in the threadpool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from service.api.deps import (
    AccountId,
    Admin,
    Consumer,
    Granter,
    IdempotencyKey,
    Payload,
    Purchaser,
    RuntimeDep,
    body_doc,
    json_body,
)
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
from service.application import commands
from service.application.ledger import Write
from service.application.ledger import WriteResult as Result
from service.domain.errors import EntryNotFound, HoldNotFound

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["writes"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 402, 403, 404, 409, 413, 422, 503)
}


def _render(result: Result) -> FastJSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return FastJSONResponse(result.body, status_code=result.status, headers=headers)


async def _submit(runtime: Any, write: Write) -> FastJSONResponse:
    return _render(await runtime.ledger.submit_write(write))


def _uuid(value: str, not_found: type[HoldNotFound] | type[EntryNotFound], what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise not_found(f"no {what} {value}") from None


F = TypeVar("F", bound=Callable[..., Any])


def _write_route(path: str, model: type[Any], summary: str, status: int = 201) -> Callable[[F], F]:
    return router.post(
        path,
        status_code=status,
        response_model=WriteResult,
        responses=ERRORS,
        summary=summary,
        openapi_extra=body_doc(model),
    )


@_write_route("/purchases", PurchaseCreate, "Add purchased tokens")
async def create_purchase(
    principal: Purchaser,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[PurchaseCreate], Depends(json_body(PurchaseCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    v = body.value
    return await _submit(
        runtime,
        commands.purchase(
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(key, "purchase", account_id),
            payment_reference=v.payment_reference,
            expires_at=v.expires_at,
            metadata=v.metadata,
        ),
    )


@_write_route("/grants", GrantCreate, "Grant free tokens")
async def create_grant(
    principal: Granter,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[GrantCreate], Depends(json_body(GrantCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    v = body.value
    return await _submit(
        runtime,
        commands.grant(
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(key, "grant", account_id),
            reason=v.reason,
            expires_at=v.expires_at,
            metadata=v.metadata,
        ),
    )


@_write_route("/consumptions", ConsumptionCreate, "Consume tokens (402 when not enough)")
async def create_consumption(
    principal: Consumer,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[ConsumptionCreate], Depends(json_body(ConsumptionCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    v = body.value
    return await _submit(
        runtime,
        commands.consume(
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(key, "consume", account_id),
            operation=v.operation,
            model=v.model,
            metadata=v.metadata,
        ),
    )


@_write_route("/deductions", DeductionCreate, "Deduct tokens (402 when not enough)")
async def create_deduction(
    principal: Granter,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[DeductionCreate], Depends(json_body(DeductionCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    v = body.value
    return await _submit(
        runtime,
        commands.deduct(
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(key, "deduct", account_id),
            reason=v.reason,
            metadata=v.metadata,
        ),
    )


@_write_route("/consumptions/{entry_id}/refunds", RefundCreate, "Refund a consumption")
async def create_refund(
    principal: Consumer,
    account_id: AccountId,
    entry_id: str,
    key: IdempotencyKey,
    body: Annotated[Payload[RefundCreate], Depends(json_body(RefundCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    v = body.value
    target = _uuid(entry_id, EntryNotFound, "consumption")
    write = await run_in_threadpool(
        lambda: commands.refund(
            runtime.ledger,
            account_id,
            target,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(key, "refund", account_id, entry_id=entry_id),
            reason=v.reason,
        )
    )
    return await _submit(runtime, write)


@_write_route("/holds", HoldCreate, "Reserve tokens for a while")
async def create_hold(
    principal: Consumer,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[HoldCreate], Depends(json_body(HoldCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    v = body.value
    return await _submit(
        runtime,
        commands.place_hold(
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(key, "hold", account_id),
            ttl_seconds=v.ttl_seconds,
            operation=v.operation,
            metadata=v.metadata,
        ),
    )


@_write_route("/holds/{hold_id}/capture", CaptureCreate, "Consume a hold, release the rest")
async def capture_hold(
    principal: Consumer,
    account_id: AccountId,
    hold_id: str,
    key: IdempotencyKey,
    body: Annotated[Payload[CaptureCreate], Depends(json_body(CaptureCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    hold = _uuid(hold_id, HoldNotFound, "hold")
    write = await run_in_threadpool(
        lambda: commands.capture_hold(
            runtime.ledger,
            account_id,
            hold,
            body.value.amount,
            actor=principal.name,
            idem=body.idempotency(key, "capture", account_id, hold_id=hold_id),
        )
    )
    return await _submit(runtime, write)


@_write_route("/holds/{hold_id}/release", ReleaseCreate, "Release a hold")
async def release_hold(
    principal: Consumer,
    account_id: AccountId,
    hold_id: str,
    key: IdempotencyKey,
    body: Annotated[Payload[ReleaseCreate], Depends(json_body(ReleaseCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    hold = _uuid(hold_id, HoldNotFound, "hold")
    write = await run_in_threadpool(
        lambda: commands.release_hold(
            runtime.ledger,
            account_id,
            hold,
            actor=principal.name,
            idem=body.idempotency(key, "release", account_id, hold_id=hold_id),
        )
    )
    return await _submit(runtime, write)


@router.patch(
    "",
    status_code=200,
    response_model=WriteResult,
    responses=ERRORS,
    summary="Change account settings (credit limit)",
    openapi_extra=body_doc(AccountUpdate),
)
async def update_account(
    principal: Admin,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[AccountUpdate], Depends(json_body(AccountUpdate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    return await _submit(
        runtime,
        commands.set_credit_limit(
            account_id,
            body.value.credit_limit,
            actor=principal.name,
            idem=body.idempotency(key, "credit_limit", account_id),
        ),
    )
