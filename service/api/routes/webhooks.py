"""Webhook endpoints (contract v1.1, "Webhooks"; scope ``admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import Field

from service.api.deps import Admin, Payload, RuntimeDep, body_doc, json_body
from service.api.responses import FastJSONResponse
from service.api.schemas import MAX_REASON, NO_STORE, RequestModel, problems
from service.application.webhooks import (
    DeliveriesPublic,
    WebhookEndpointCreated,
    WebhookEndpointsPublic,
)
from service.domain.alerts import EVENT_TYPES
from service.domain.values import MAX_AMOUNT

router = APIRouter(tags=["webhooks"])

ENDPOINT_ID = {
    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
}


class WebhookEndpointCreate(RequestModel):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=len(EVENT_TYPES), description=", ".join(EVENT_TYPES)),
    ]
    low_balance_threshold: Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)] | None = None
    description: Annotated[str, Field(max_length=MAX_REASON)] | None = None


@router.post(
    "/v1/webhook-endpoints",
    status_code=201,
    response_model=WebhookEndpointCreated,
    responses={
        201: {"headers": NO_STORE},
        **problems(
            400,
            401,
            403,
            413,
            422,
            503,
            notes={
                422: "`validation-error`: a bad field, an unknown event type, `balance.low`"
                " without `low_balance_threshold`, or a URL that is not https:// on a public"
                " address"
            },
        ),
    },
    summary="Create a webhook endpoint (its secret is shown once)",
    openapi_extra=body_doc(WebhookEndpointCreate),
)
async def create_webhook_endpoint(
    principal: Admin,
    body: Annotated[Payload[WebhookEndpointCreate], Depends(json_body(WebhookEndpointCreate))],
    runtime: RuntimeDep,
) -> FastJSONResponse:
    value = body.value
    created = await runtime.webhooks.create(
        value.url, value.events, value.low_balance_threshold, value.description
    )
    return FastJSONResponse(created, status_code=201, headers={"Cache-Control": "no-store"})


@router.get(
    "/v1/webhook-endpoints",
    response_model=WebhookEndpointsPublic,
    responses=problems(401, 403, 503),
    summary="List webhook endpoints (without secrets)",
)
async def list_webhook_endpoints(principal: Admin, runtime: RuntimeDep) -> FastJSONResponse:
    return FastJSONResponse(await runtime.webhooks.list())


@router.delete(
    "/v1/webhook-endpoints/{id}",
    status_code=204,
    responses=problems(401, 403, 404, 503, notes={404: "`not-found`: no such endpoint"}),
    openapi_extra=ENDPOINT_ID,
    summary="Delete a webhook endpoint (nothing more is sent to it)",
)
async def delete_webhook_endpoint(
    principal: Admin, request: Request, runtime: RuntimeDep
) -> Response:
    await runtime.webhooks.delete(str(request.path_params["id"]))
    return Response(status_code=204)


@router.get(
    "/v1/webhook-endpoints/{id}/deliveries",
    response_model=DeliveriesPublic,
    responses=problems(401, 403, 404, 422, 503, notes={404: "`not-found`: no such endpoint"}),
    openapi_extra=ENDPOINT_ID,
    summary="An endpoint's recent messages and their delivery, newest first",
)
async def list_deliveries(
    principal: Admin,
    request: Request,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FastJSONResponse:
    endpoint_id = str(request.path_params["id"])
    return FastJSONResponse(await runtime.webhooks.deliveries(endpoint_id, limit))
