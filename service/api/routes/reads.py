"""Reads: balance (current, waited-for or historical), entries, holds, credits,
statements and the global entry feed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from service.api.deps import AccountId, AccountReader, Auditor, Reader, RuntimeDep
from service.api.responses import FastJSONResponse
from service.api.schemas import (
    MAX_POSITION,
    BalancePublic,
    CreditsPublic,
    EntriesPage,
    GlobalEntriesPage,
    HoldsPublic,
    StatementPublic,
    parse_rfc3339,
    problems,
)
from service.api.write_requests import account_id_of, caller
from service.application import reads, statement
from service.domain.errors import AccountNotFound, ValidationFailed
from service.domain.values import ACCOUNT_ID_PATTERN
from service.runtime import Runtime

router = APIRouter(tags=["reads"])

MAX_WAIT_SECONDS = 10.0
IMPLICIT_WAIT_SECONDS = 2.0
"""Without ``min_position``, how long a balance read waits for the projection
to apply the account's last entry (read-your-writes for sequential clients)."""
POLL_SECONDS = 0.05
"""How often a waiting balance read re-checks the projection's position."""

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


def _balance_response(request: Request, balance: dict[str, Any]) -> Response:
    tag = etag(int(balance["position"]))
    if _etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers={"ETag": tag})
    return FastJSONResponse(balance, headers={"ETag": tag})


async def _reached(runtime: Runtime, account_id: str, min_position: int, wait: float) -> bool:
    """Waits up to ``wait`` seconds until the projection has applied ``min_position``."""
    return await runtime.hub.wait_for_position(min_position, wait)


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
    runtime: Runtime = request.app.state.runtime
    if as_of is not None or as_of_version is not None:
        principal.require("read")
        if as_of is not None and as_of_version is not None:
            raise ValidationFailed.at(["query"], "give either as_of or as_of_version, not both")
        if as_of_version is not None:
            historical = await runtime.guard.call(
                reads.balance_at_version, runtime.ledger, account_id, as_of_version
            )
        else:
            try:
                moment = parse_rfc3339(as_of)
            except ValueError as error:
                raise ValidationFailed.at(["query", "as_of"], str(error)) from None
            historical = await runtime.guard.call(
                reads.balance_as_of, runtime.ledger, account_id, moment
            )
        return _balance_response(request, historical)
    if min_position is None:
        # Read-your-writes without asking: wait (briefly) until the projection
        # has applied the account's last stored entry.
        min_position = runtime.ledger.written.get(account_id, 0)
        wait = IMPLICIT_WAIT_SECONDS
    stale = not await _reached(runtime, account_id, min_position, wait)
    balance = runtime.hub.latest.get(account_id)
    if balance is None or balance["position"] < min_position:
        balance = await runtime.guard.call(runtime.balances.get_balance, account_id)
        if balance is None:
            raise AccountNotFound(f"account {account_id} has no entries")
        runtime.hub.latest.heard(balance)
    if stale:
        balance = {**balance, "stale": True}
    return _balance_response(request, balance)


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
) -> JSONResponse:
    page = await runtime.guard.call(
        reads.account_entries, runtime.ledger, account_id, after_version, limit
    )
    return JSONResponse(page)


@router.get(
    "/v1/accounts/{account_id}/holds",
    response_model=HoldsPublic,
    responses=ACCOUNT_READ_RESPONSES,
    summary="The account's active holds",
)
async def get_holds(principal: Reader, account_id: AccountId, runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(await runtime.guard.call(reads.active_holds, runtime.ledger, account_id))


@router.get(
    "/v1/accounts/{account_id}/credits",
    response_model=CreditsPublic,
    responses=ACCOUNT_READ_RESPONSES,
    summary="Credit buckets with tokens left, in draw-down order",
)
async def get_credits(
    principal: Reader, account_id: AccountId, runtime: RuntimeDep
) -> JSONResponse:
    buckets = await runtime.guard.call(reads.credit_buckets, runtime.ledger, account_id)
    return JSONResponse(buckets)


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
) -> JSONResponse:
    start, end = _moments({"from": from_, "to": to})
    statement.check_window(start, end)  # bad input is a 422 even while the store is down
    body = await runtime.guard.call(
        statement.account_statement, runtime.ledger, account_id, start, end
    )
    return JSONResponse(body)


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
) -> JSONResponse:
    page = await runtime.guard.call(reads.global_entries, runtime.ledger, after_position, limit)
    return JSONResponse(page)
