"""The parts of a write request, read in one step (no dependency graph).

FastAPI 0.165 spends most of a small request solving its dependency graph
(about 0.2 ms for the nine dependencies a write had), so the hot routes take
the ``Request`` alone and call :func:`write_request`, which checks, in the
contract's order, the credentials (401/403), the path's account id (422), the
``Idempotency-Key`` header (422) and the JSON body (400/422). Their OpenAPI
description comes from :func:`write_doc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from service.adapters.key_cache import CacheMiss
from service.api.auth import Principal, authenticate
from service.api.deps import body_doc, parse_json_object
from service.api.errors import validation_errors
from service.application.idempotency import IdempotencyRequest
from service.domain.errors import ValidationFailed
from service.domain.values import ACCOUNT_ID_PATTERN, is_valid_account_id
from service.runtime import Runtime

M = TypeVar("M", bound=BaseModel)


async def caller(request: Request) -> Principal:
    """The request's credentials: an API key or a stream token, answered from
    the key cache (the store is asked in a thread on a miss).

    Raises:
        Unauthorized: none or unknown (401).
    """
    runtime: Runtime = request.app.state.runtime
    tokens = request.app.state.stream_tokens
    authorization = request.headers.get("authorization")
    query = request.scope.get("query_string")
    access_token = request.query_params.get("access_token") if query else None
    try:
        return authenticate(runtime.key_cache.cached, tokens, authorization, access_token)
    except CacheMiss:
        return await runtime.guard.call(
            authenticate, runtime.key_cache, tokens, authorization, access_token
        )


def account_id_of(request: Request) -> str:
    """The path's ``account_id``. Raises ValidationFailed (422)."""
    account_id = str(request.path_params["account_id"])
    if not is_valid_account_id(account_id):
        raise ValidationFailed.at(
            ["path", "account_id"], f"must match {ACCOUNT_ID_PATTERN.pattern}"
        )
    return account_id


def idempotency_key_of(request: Request) -> str | None:
    """The ``Idempotency-Key`` header (1-255 printable ASCII, IETF draft), or
    ``None``. Raises ValidationFailed (422)."""
    key = request.headers.get("idempotency-key")
    if key is not None and (
        not 1 <= len(key) <= 255 or any(not 0x20 <= ord(c) <= 0x7E for c in key)
    ):
        raise ValidationFailed.at(
            ["header", "Idempotency-Key"], "must be 1 to 255 printable ASCII characters"
        )
    return key


async def body_of(request: Request, model: type[M]) -> tuple[dict[str, Any], M]:
    """The JSON body as parsed (what idempotency keys fingerprint) and validated.

    Raises:
        MalformedRequest: not JSON (400). ValidationFailed: invalid (422).
    """
    raw = parse_json_object(await request.body())
    try:
        return raw, model.model_validate(raw)
    except ValidationError as error:
        raise ValidationFailed(
            validation_errors(error.errors(include_url=False), ["body"])
        ) from None


@dataclass(frozen=True)
class WriteRequest(Generic[M]):
    """A checked write request: who, which account, its key and its body."""

    runtime: Runtime
    principal: Principal
    account_id: str
    key: str | None
    raw: dict[str, Any]
    value: M

    def idempotency(self, kind: str, **path: str) -> IdempotencyRequest | None:
        """The idempotency request (kind, account, body fields, path ids), when
        a key came with it: the equal ``/v1/batch`` operation is the same."""
        if self.key is None:
            return None
        return IdempotencyRequest.of(self.key, kind, self.account_id, {**self.raw, **path})


async def write_request(request: Request, scope: str, model: type[M]) -> WriteRequest[M]:
    """Checks a write request in the contract's order (see the module docstring)."""
    principal = (await caller(request)).require(scope)
    account_id = account_id_of(request)
    key = idempotency_key_of(request)
    raw, value = await body_of(request, model)
    return WriteRequest(request.app.state.runtime, principal, account_id, key, raw, value)


def write_doc(model: type[BaseModel], *path_ids: str) -> dict[str, Any]:
    """``openapi_extra`` of a write: its body, path parameters, the
    ``Idempotency-Key`` header and the bearer credentials."""
    doc = body_doc(model)
    parameters = [
        {
            "name": "account_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": ACCOUNT_ID_PATTERN.pattern},
        },
        *(
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in path_ids
        ),
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "1-255 printable ASCII characters (IETF Idempotency-Key draft)",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[\\x20-\\x7E]+$",
            },
        },
    ]
    return {**doc, "parameters": parameters, "security": [{"HTTPBearer": []}]}
