"""Credentials: API key management (admin) and stream tokens (read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

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
from service.api.responses import FastJSONResponse
from service.api.schemas import (
    NO_STORE,
    ApiKeyCreate,
    StreamTokenCreate,
    StreamTokenPublic,
    problems,
)
from service.application.api_keys import ApiKeyCreated, ApiKeysPublic

router = APIRouter(tags=["credentials"])


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses={
        201: {"headers": NO_STORE},
        **problems(
            400, 401, 403, 409, 413, 422, 503, notes={409: "`api-key-exists`: the name is taken"}
        ),
    },
    summary="Create an API key (its secret is shown once)",
    openapi_extra=body_doc(ApiKeyCreate),
)
async def create_api_key(
    principal: Admin,
    body: Annotated[Payload[ApiKeyCreate], Depends(json_body(ApiKeyCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    created = await runtime.api_keys.create(body.value.name, body.value.scopes)
    return FastJSONResponse(created, status_code=201, headers={"Cache-Control": "no-store"})


@router.get(
    "/v1/api-keys",
    response_model=ApiKeysPublic,
    responses=problems(401, 403, 503),
    summary="List API keys (without secrets)",
)
async def list_api_keys(principal: Admin, runtime: RuntimeDep) -> FastJSONResponse:
    return FastJSONResponse(await runtime.api_keys.list())


@router.delete(
    "/v1/api-keys/{name}",
    status_code=204,
    responses=problems(
        401,
        403,
        404,
        409,
        503,
        notes={
            404: "`not-found`: no API key has that name",
            409: "`api-key-not-revocable`: the bootstrap key (`LEDGER_ADMIN_API_KEY`)",
        },
    ),
    openapi_extra={
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    },
    summary="Revoke an API key (refused from the next request on)",
)
async def revoke_api_key(principal: Admin, request: Request, runtime: RuntimeDep) -> Response:
    """Refused by this process from the next request on, by the others as soon
    as the bridge tells them and within 1 second at worst (key cache TTL).

    ``name`` is read from the path, not declared: any string is a name (one
    that names no key is a 404), so no 422 is documented for it."""
    name = str(request.path_params["name"])
    await runtime.api_keys.revoke(name)
    return Response(status_code=204)


@router.post(
    "/v1/accounts/{account_id}/stream-tokens",
    status_code=201,
    response_model=StreamTokenPublic,
    responses={201: {"headers": NO_STORE}, **problems(400, 401, 403, 413, 422, 503)},
    summary="A token that reads one account (for browsers)",
    openapi_extra=body_doc(StreamTokenCreate),
)
def create_stream_token(
    principal: Reader,
    account_id: AccountId,
    body: Annotated[Payload[StreamTokenCreate], Depends(json_body(StreamTokenCreate))],
    tokens: StreamTokensDep,
) -> FastJSONResponse:
    token = tokens.issue(account_id, principal.name, body.value.ttl_seconds)
    return FastJSONResponse(
        token.as_public(), status_code=201, headers={"Cache-Control": "no-store"}
    )
