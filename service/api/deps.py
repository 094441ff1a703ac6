"""FastAPI dependencies: the runtime, the caller, path ids, idempotency keys and
JSON bodies, as ``Annotated`` aliases.

Order matters: routes declare the caller first, so a 401/403 wins over a 422
on the path or the body. Bodies are parsed here, not by FastAPI, which also
tells a malformed body (400) from an invalid one (422). (The write routes and
the balance read check their request in one step instead:
``service.api.write_requests``.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from service.adapters.key_cache import CacheMiss
from service.api.auth import Principal, StreamTokens, authenticate
from service.api.errors import validation_errors
from service.domain.errors import MalformedRequest, ValidationFailed
from service.domain.values import ACCOUNT_ID_PATTERN, is_valid_account_id
from service.runtime import Runtime

__all__ = [
    "AccountId",
    "AccountIdPath",
    "AccountReader",
    "Admin",
    "Auditor",
    "Payload",
    "Principal",
    "Reader",
    "RuntimeDep",
    "StreamTokensDep",
    "json_body",
    "require_scope",
]

M = TypeVar("M", bound=BaseModel)

_bearer = HTTPBearer(auto_error=False, description="An API key, or a stream token")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_stream_tokens(request: Request) -> StreamTokens:
    tokens: StreamTokens = request.app.state.stream_tokens
    return tokens


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StreamTokensDep = Annotated[StreamTokens, Depends(get_stream_tokens)]


async def current_principal(
    request: Request,
    runtime: RuntimeDep,
    tokens: StreamTokensDep,
    _doc: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Any valid credentials: an API key or a stream token (401 otherwise).
    Answered from the key cache; the store is asked (in a thread) on a miss."""
    authorization = request.headers.get("authorization")
    access_token = request.query_params.get("access_token")
    try:
        return authenticate(runtime.key_cache.cached, tokens, authorization, access_token)
    except CacheMiss:
        return await runtime.guard.call(
            authenticate, runtime.key_cache, tokens, authorization, access_token
        )


Caller = Annotated[Principal, Depends(current_principal)]


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: an API key with ``scope`` (or ``admin``); else 403."""

    async def dependency(principal: Caller) -> Principal:
        return principal.require(scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


AccountIdPath = Annotated[
    str,
    Path(
        description="The caller's own user or tenant id",
        json_schema_extra={"pattern": ACCOUNT_ID_PATTERN.pattern},
    ),
]
"""The ``account_id`` path parameter, documented with its pattern (checked by
:func:`valid_account_id`, after the credentials, so a 401/403 wins)."""


async def account_reader(principal: Caller, account_id: AccountIdPath) -> Principal:
    """Scope ``read``, or a stream token of the path's ``account_id``."""
    return principal.require_account_reader(account_id)


Reader = Annotated[Principal, Depends(require_scope("read"))]
Auditor = Annotated[Principal, Depends(require_scope("audit"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
AccountReader = Annotated[Principal, Depends(account_reader)]


async def valid_account_id(account_id: AccountIdPath) -> str:
    """The path's ``account_id``. Raises ValidationFailed (422)."""
    if not is_valid_account_id(account_id):
        raise ValidationFailed.at(
            ["path", "account_id"], f"must match {ACCOUNT_ID_PATTERN.pattern}"
        )
    return account_id


AccountId = Annotated[str, Depends(valid_account_id)]


@dataclass(frozen=True)
class Payload(Generic[M]):
    """A request body: the parsed JSON object (``raw``) and its validated
    model (``value``)."""

    raw: dict[str, Any]
    value: M


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A ``\ud800``-``\udfff`` escape: how a body can carry a UTF-16 surrogate."""


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object of a body (an empty body is ``{}``).

    Raises:
        MalformedRequest: not JSON (400).
        ValidationFailed: JSON, but not an object (422).
    """
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationFailed.at(["body"], "the body must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw) is None:  # the only way to write one
        return data
    try:  # lone surrogates ("\ud800") are JSON, but no text can store them
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRequest("the request body holds invalid Unicode") from None
    except (ValueError, RecursionError):
        pass  # non-finite numbers, deep nesting: left to validation
    return data


def json_body(model: type[M]) -> Callable[[Request], Awaitable[Payload[M]]]:
    """A dependency: the request body parsed as JSON and validated as ``model``."""

    async def dependency(request: Request) -> Payload[M]:
        data = parse_json_object(await request.body())
        try:
            value = model.model_validate(data)
        except ValidationError as error:
            raise ValidationFailed(
                validation_errors(error.errors(include_url=False), ["body"])
            ) from None
        return Payload(data, value)

    dependency.__name__ = f"{model.__name__}_body"
    return dependency


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON request body, with
    the models it nests inlined (they are not among the document's components)."""
    schema = _inline_defs(model.model_json_schema())
    return {
        "requestBody": {
            "required": any(f.is_required() for f in model.model_fields.values()),
            "content": {"application/json": {"schema": schema}},
        }
    }


_DEFS_REF = "#/$defs/"


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without ``$defs``: each ``{"$ref": "#/$defs/Name"}`` replaced by
    that definition (request models nest, but never recursively)."""
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_DEFS_REF):
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                return inline({**defs[ref.removeprefix(_DEFS_REF)], **siblings})
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result
