"""Credentials: API key management (admin) and stream tokens (read)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse, Response

from projections.channels import KEYS
from service.api.deps import (
    AccountId,
    Admin,
    Payload,
    Reader,
    RuntimeDep,
    StreamTokensDep,
    body_doc,
    json_body,
)
from service.api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeysPublic,
    Problem,
    StreamTokenCreate,
    StreamTokenPublic,
)

router = APIRouter(tags=["credentials"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 409, 413, 422, 503)
}


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=_ERRORS,
    summary="Create an API key (its secret is shown once)",
    openapi_extra=body_doc(ApiKeyCreate),
)
def create_api_key(
    principal: Admin,
    body: Annotated[Payload[ApiKeyCreate], Depends(json_body(ApiKeyCreate))],
    runtime: RuntimeDep,
) -> JSONResponse:
    record, key = runtime.keys.create(body.value.name, body.value.scopes)
    runtime.key_cache.created(record.name)
    created = {"name": record.name, "scopes": list(record.scopes), "key": key,
               "created_at": record.created_at}  # fmt: skip
    return JSONResponse(created, status_code=201, headers={"Cache-Control": "no-store"})


@router.get(
    "/v1/api-keys",
    response_model=ApiKeysPublic,
    responses=_ERRORS,
    summary="List API keys (without secrets)",
)
def list_api_keys(principal: Admin, runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse({"api_keys": [r.as_public() for r in runtime.keys.list()]})


@router.delete(
    "/v1/api-keys/{name}",
    status_code=204,
    responses=_ERRORS,
    summary="Revoke an API key (refused from the next request on)",
)
def revoke_api_key(principal: Admin, name: Annotated[str, Path()], runtime: RuntimeDep) -> Response:
    """Refused by this process from the next request on, by the others as soon
    as the bridge tells them and within 1 second at worst (key cache TTL)."""
    runtime.key_cache.revoke(name)
    runtime.broker.publish_many([(KEYS, {"revoked": name})])
    return Response(status_code=204)


@router.post(
    "/v1/accounts/{account_id}/stream-tokens",
    status_code=201,
    response_model=StreamTokenPublic,
    responses=_ERRORS,
    summary="A token that reads one account (for browsers)",
    openapi_extra=body_doc(StreamTokenCreate),
)
def create_stream_token(
    principal: Reader,
    account_id: AccountId,
    body: Annotated[Payload[StreamTokenCreate], Depends(json_body(StreamTokenCreate))],
    tokens: StreamTokensDep,
) -> JSONResponse:
    token = tokens.issue(account_id, principal.name, body.value.ttl_seconds)
    return JSONResponse(token.as_public(), status_code=201, headers={"Cache-Control": "no-store"})
