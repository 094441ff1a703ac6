"""Reads: balance (current, waited-for or historical), entries, holds, credits,
statements and the global entry feed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.api.deps import AccountId, AccountReader, Auditor, Reader, RuntimeDep
from service.api.responses import FastJSONResponse
from service.api.schemas import (
    MAX_POSITION,
    parse_rfc3339,
    problems,
)
from service.api.write_requests import account_id_of, caller
from service.application.pages import (
    CreditsPublic,
    EntriesPage,
    GlobalEntriesPage,
    HoldsPublic,
    StatementPublic,
)
from service.domain.errors import ValidationFailed
from service.domain.published import BalancePublic
from service.domain.values import ACCOUNT_ID_PATTERN

router = APIRouter(tags=["reads"])

MAX_WAIT_SECONDS = 10.0

ACCOUNT_404 = "`account-not-found`: the account has no entries"
ACCOUNT_READ_RESPONSES = problems(401, 403, 404, 422, 503, notes={404: ACCOUNT_404})
"""What a read of one account can answer besides 200."""
STATEMENT_RESPONSES = problems(
    401,
    403,
    404,
    422,
    503,
    notes={
        404: ACCOUNT_404,
        422: "`validation-error`: a bad account id, `from` or `to` missing or not RFC 3339"
        " with an offset, or `from` not before `to`",
    },
)
ETAG = {
    "ETag": {
        "description": "The balance's position, quoted",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    }
}
BALANCE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": ETAG},
    304: {"description": "Not modified: `If-None-Match` names the current `ETag`", "headers": ETAG},
    **problems(
        401,
        403,
        404,
        422,
        503,
        notes={
            404: ACCOUNT_404 + "; `entry-not-found`: an `as_of_version` it has not reached",
            422: "`validation-error`: a bad parameter, or both `as_of` and `as_of_version`",
        },
    ),
}


def etag(position: int) -> str:
    return f'"{position}"'


def _etag_matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [c.strip() for c in if_none_match.split(",")]
    return any(c == "*" or c.removeprefix("W/") == tag for c in candidates)


def _balance_response(request: Request, balance: Mapping[str, Any]) -> Response:
    tag = etag(int(balance["position"]))
    if _etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers={"ETag": tag})
    return FastJSONResponse(balance, headers={"ETag": tag})


@router.get(
    "/v1/accounts/{account_id}/balance",
    response_model=BalancePublic,
    responses=BALANCE_RESPONSES,
    openapi_extra={
        "parameters": [
            {
                "name": "account_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": ACCOUNT_ID_PATTERN.pattern},
            },
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "ETags seen before (also `*` and weak tags): 304 if one is current",
                "schema": {"type": "string"},
            },
        ],
        "security": [{"HTTPBearer": []}],
    },
    summary="The account's balance (current, waited for, or as of a time or version)",
)
async def get_balance(
    request: Request,
    min_position: Annotated[int | None, Query(ge=0, le=MAX_POSITION)] = None,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)] = 0.0,
    as_of: Annotated[
        str | None,
        Query(
            description="RFC 3339 timestamp with an offset (fractions past microseconds ignored)",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    as_of_version: Annotated[int | None, Query(ge=0, le=MAX_POSITION)] = None,
) -> Response:
    """Scope ``read`` or a stream token of the account (credentials are read
    without a dependency graph: this is the hottest read)."""
    principal = await caller(request)
    account_id = account_id_of(request)
    principal.require_account_reader(account_id)
    queries = request.app.state.runtime.queries
    if as_of is not None or as_of_version is not None:
        principal.require("read")
        if as_of is not None and as_of_version is not None:
            raise ValidationFailed.at(["query"], "give either as_of or as_of_version, not both")
        if as_of_version is not None:
            historical = await queries.balance_at_version(account_id, as_of_version)
        else:
            try:
                moment = parse_rfc3339(as_of)
            except ValueError as error:
                raise ValidationFailed.at(["query", "as_of"], str(error)) from None
            historical = await queries.balance_as_of(account_id, moment)
        return _balance_response(request, historical)
    return _balance_response(request, await queries.balance(account_id, min_position, wait))


@router.get(
    "/v1/accounts/{account_id}/entries",
    response_model=EntriesPage,
    responses=ACCOUNT_READ_RESPONSES,
    summary="The account's entries in version order",
)
async def get_entries(
    principal: AccountReader,
    account_id: AccountId,
    runtime: RuntimeDep,
    after_version: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FastJSONResponse:
    return FastJSONResponse(await runtime.queries.entries(account_id, after_version, limit))


@router.get(
    "/v1/accounts/{account_id}/holds",
    response_model=HoldsPublic,
    responses=ACCOUNT_READ_RESPONSES,
    summary="The account's active holds",
)
async def get_holds(
    principal: Reader, account_id: AccountId, runtime: RuntimeDep
) -> FastJSONResponse:
    return FastJSONResponse(await runtime.queries.holds(account_id))


@router.get(
    "/v1/accounts/{account_id}/credits",
    response_model=CreditsPublic,
    responses=ACCOUNT_READ_RESPONSES,
    summary="Credit buckets with tokens left, in draw-down order",
)
async def get_credits(
    principal: Reader, account_id: AccountId, runtime: RuntimeDep
) -> FastJSONResponse:
    return FastJSONResponse(await runtime.queries.credits(account_id))


def _moments(query: dict[str, str]) -> list[datetime]:
    """The RFC 3339 query parameters ``query`` (name to value) as UTC datetimes.

    Raises:
        ValidationFailed: one error for each that is not RFC 3339 (422).
    """
    moments, errors = [], []
    for name, value in query.items():
        try:
            moments.append(parse_rfc3339(value))
        except ValueError as error:
            errors.append({"loc": ["query", name], "msg": str(error)})
    if errors:
        raise ValidationFailed(errors)
    return moments


@router.get(
    "/v1/accounts/{account_id}/statement",
    response_model=StatementPublic,
    responses=STATEMENT_RESPONSES,
    summary="The account over a time window: opening and closing balances, totals by type",
    description="Scope `read`. `opening` is the balance after every entry recorded before"
    " `from` (version 0 and zeros when there is none), `closing` after every entry recorded"
    " before `to`; `totals` counts the entries recorded in `[from, to)` and sums their"
    " `amount` by type (types without entries left out), and `first_version` /"
    " `last_version` name them (null when none). `from` and `to` are echoed in UTC with"
    " microseconds (fractions beyond are dropped). A window reaching past now covers the"
    " entries recorded when the statement is read. Work is bounded by the window: the two"
    " balances are found by binary search over the account's versions.",
)
async def get_statement(
    principal: Reader,
    account_id: AccountId,
    runtime: RuntimeDep,
    from_: Annotated[
        str,
        Query(
            alias="from",
            description="Start of the window (inclusive): RFC 3339 with an offset",
            json_schema_extra={"format": "date-time"},
        ),
    ],
    to: Annotated[
        str,
        Query(
            description="End of the window (exclusive): RFC 3339 with an offset",
            json_schema_extra={"format": "date-time"},
        ),
    ],
) -> FastJSONResponse:
    start, end = _moments({"from": from_, "to": to})
    return FastJSONResponse(await runtime.queries.statement(account_id, start, end))


@router.get(
    "/v1/entries",
    response_model=GlobalEntriesPage,
    responses=problems(401, 403, 422, 503),
    summary="Every account's entries in position order (audit)",
)
async def get_global_entries(
    principal: Auditor,
    runtime: RuntimeDep,
    after_position: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FastJSONResponse:
    return FastJSONResponse(await runtime.queries.global_entries(after_position, limit))
