"""Writes: purchases, grants, consumptions, deductions, refunds, holds and
account settings. Each parses, calls ``service.application.commands``, renders.

Handlers are plain ``def``: the commands block on the database, so they run in
the threadpool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

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
from service.application.ledger import WriteResult as Result
from service.domain.errors import EntryNotFound, HoldNotFound

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["writes"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 402, 403, 404, 409, 413, 422, 503)
}


def _render(result: Result) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(result.body, status_code=result.status, headers=headers)


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
        responses=_ERRORS,
        summary=summary,
        openapi_extra=body_doc(model),
    )


@_write_route("/purchases", PurchaseCreate, "Add purchased tokens")
def create_purchase(
    principal: Purchaser,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[PurchaseCreate], Depends(json_body(PurchaseCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    v = body.value
    return _render(
        commands.purchase(
            runtime.ledger,
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(request, key),
            payment_reference=v.payment_reference,
            expires_at=v.expires_at,
            metadata=v.metadata,
        )
    )


@_write_route("/grants", GrantCreate, "Grant free tokens")
def create_grant(
    principal: Granter,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[GrantCreate], Depends(json_body(GrantCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    v = body.value
    return _render(
        commands.grant(
            runtime.ledger,
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(request, key),
            reason=v.reason,
            expires_at=v.expires_at,
            metadata=v.metadata,
        )
    )


@_write_route("/consumptions", ConsumptionCreate, "Consume tokens (402 when not enough)")
def create_consumption(
    principal: Consumer,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[ConsumptionCreate], Depends(json_body(ConsumptionCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    v = body.value
    return _render(
        commands.consume(
            runtime.ledger,
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(request, key),
            operation=v.operation,
            model=v.model,
            metadata=v.metadata,
        )
    )


@_write_route("/deductions", DeductionCreate, "Deduct tokens (402 when not enough)")
def create_deduction(
    principal: Granter,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[DeductionCreate], Depends(json_body(DeductionCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    v = body.value
    return _render(
        commands.deduct(
            runtime.ledger,
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(request, key),
            reason=v.reason,
            metadata=v.metadata,
        )
    )


@_write_route("/consumptions/{entry_id}/refunds", RefundCreate, "Refund a consumption")
def create_refund(
    principal: Consumer,
    account_id: AccountId,
    entry_id: str,
    key: IdempotencyKey,
    body: Annotated[Payload[RefundCreate], Depends(json_body(RefundCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    v = body.value
    target = _uuid(entry_id, EntryNotFound, "consumption")
    return _render(
        commands.refund(
            runtime.ledger,
            account_id,
            target,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(request, key),
            reason=v.reason,
        )
    )


@_write_route("/holds", HoldCreate, "Reserve tokens for a while")
def create_hold(
    principal: Consumer,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[HoldCreate], Depends(json_body(HoldCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    v = body.value
    return _render(
        commands.place_hold(
            runtime.ledger,
            account_id,
            v.amount,
            actor=principal.name,
            idem=body.idempotency(request, key),
            ttl_seconds=v.ttl_seconds,
            operation=v.operation,
            metadata=v.metadata,
        )
    )


@_write_route("/holds/{hold_id}/capture", CaptureCreate, "Consume a hold, release the rest")
def capture_hold(
    principal: Consumer,
    account_id: AccountId,
    hold_id: str,
    key: IdempotencyKey,
    body: Annotated[Payload[CaptureCreate], Depends(json_body(CaptureCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    hold = _uuid(hold_id, HoldNotFound, "hold")
    return _render(
        commands.capture_hold(
            runtime.ledger,
            account_id,
            hold,
            body.value.amount,
            actor=principal.name,
            idem=body.idempotency(request, key),
        )
    )


@_write_route("/holds/{hold_id}/release", ReleaseCreate, "Release a hold")
def release_hold(
    principal: Consumer,
    account_id: AccountId,
    hold_id: str,
    key: IdempotencyKey,
    body: Annotated[Payload[ReleaseCreate], Depends(json_body(ReleaseCreate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    hold = _uuid(hold_id, HoldNotFound, "hold")
    return _render(
        commands.release_hold(
            runtime.ledger,
            account_id,
            hold,
            actor=principal.name,
            idem=body.idempotency(request, key),
        )
    )


@router.patch(
    "",
    status_code=200,
    response_model=WriteResult,
    responses=_ERRORS,
    summary="Change account settings (credit limit)",
    openapi_extra=body_doc(AccountUpdate),
)
def update_account(
    principal: Admin,
    account_id: AccountId,
    key: IdempotencyKey,
    body: Annotated[Payload[AccountUpdate], Depends(json_body(AccountUpdate))],
    runtime: RuntimeDep,
    request: Request,
) -> JSONResponse:
    return _render(
        commands.set_credit_limit(
            runtime.ledger,
            account_id,
            body.value.credit_limit,
            actor=principal.name,
            idem=body.idempotency(request, key),
        )
    )
