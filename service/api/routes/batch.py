"""``POST /v1/batch``: up to 1,000 writes in one request (contract v1.1).

The request is refused as a whole (422) only when its body is not an object
with an ``operations`` list of 1 to 1,000 objects; every operation is then
parsed, checked against the caller's scopes and validated on its own, and the
valid ones are queued for the committer together, in request order (the same
account's operations apply in that order, each seeing the ones before it).
Answered 200 means every 201 result is durably recorded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from service.api.batch_schemas import (
    MAX_OPERATIONS,
    OPERATION_MODELS,
    OPERATION_SCOPES,
    PATH_IDS,
    BatchCreate,
    BatchPublic,
    OperationResult,
)
from service.api.deps import body_doc, parse_json_object
from service.api.errors import problem, status_of, validation_errors
from service.api.responses import FastJSONResponse
from service.api.schemas import problems
from service.api.write_requests import caller
from service.application.batch import NEEDS_STORE, Operation, parse_target, plan
from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Write, WriteResult
from service.domain.errors import LedgerError, Unavailable, ValidationFailed
from service.domain.values import is_valid_account_id

router = APIRouter(tags=["writes"])

RESPONSES = problems(
    400,
    401,
    413,
    422,
    503,
    notes={
        413: "`payload-too-large`: the body is over 1 MiB",
        422: "`validation-error`: the body is not an object with an `operations` list of 1"
        " to 1,000 objects (nothing is written)",
    },
)
"""A batch's own answers: a refused operation is a result of the 200, not one
of these (a key lacking scopes gets 403 results, not a 403)."""


def _operation(raw: dict[str, Any], index: int, principal: Any) -> Operation:
    """Parses one operation object.

    Raises:
        ValidationFailed (422), Forbidden (403), HoldNotFound / EntryNotFound
        (404, an id that is not a UUID) — as the single write would.
    """
    at: list[str | int] = ["body", "operations", index]
    kind = raw.get("op")
    if not isinstance(kind, str) or kind not in OPERATION_MODELS:
        raise ValidationFailed.at([*at, "op"], f"must be one of {', '.join(OPERATION_MODELS)}")
    principal.require(OPERATION_SCOPES[kind])
    account_id = raw.get("account_id")
    if not isinstance(account_id, str) or not is_valid_account_id(account_id):
        raise ValidationFailed.at(
            [*at, "account_id"], "must match ^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
        )
    key = raw.get("idempotency_key")
    if key is not None and (
        not isinstance(key, str)
        or not 1 <= len(key) <= 255
        or any(not 0x20 <= ord(c) <= 0x7E for c in key)
    ):
        raise ValidationFailed.at(
            [*at, "idempotency_key"], "must be 1 to 255 printable ASCII characters"
        )
    fields = {k: v for k, v in raw.items() if k not in ("op", "account_id", "idempotency_key")}
    id_name = PATH_IDS.get(kind)
    target = None
    if id_name is not None:
        named = fields.pop(id_name, None)
        if not isinstance(named, str):
            raise ValidationFailed.at([*at, id_name], "a string id is required")
        target = parse_target(kind, named)
    try:
        value = OPERATION_MODELS[kind].model_validate(fields)
    except ValidationError as error:
        raise ValidationFailed(validation_errors(error.errors(include_url=False), at)) from None
    if id_name is not None:
        fields[id_name] = raw[id_name]
    idem = IdempotencyRequest.of(key, kind, account_id, fields) if key is not None else None
    return Operation(kind, account_id, value, target, idem)


def _result(answer: WriteResult | LedgerError) -> OperationResult:
    if isinstance(answer, LedgerError):
        return {"status": status_of(answer), "problem": problem(answer)}
    result: OperationResult = {
        "status": 201,
        "entry": answer.body["entry"],
        "balance": answer.body["balance"],
    }
    if answer.replayed:
        result["idempotent_replayed"] = True
    return result


@router.post(
    "/v1/batch",
    status_code=200,
    response_model=BatchPublic,
    responses=RESPONSES,
    summary="Apply up to 1,000 writes in one request",
    openapi_extra={**body_doc(BatchCreate), "security": [{"HTTPBearer": []}]},
)
async def create_batch(request: Request) -> Any:
    """One result per operation, in request order: ``{"status": 201, "entry",
    "balance"}`` or ``{"status": 4xx, "problem"}`` as the single write would
    answer. The body is limited to 1 MiB.

    Raises:
        MalformedRequest: the body is not JSON (400).
        ValidationFailed: not an object with 1 to 1,000 operation objects (422).
    """
    principal = await caller(request)
    runtime = request.app.state.runtime
    data = parse_json_object(await request.body())
    raw_ops = data.get("operations")
    if (
        not isinstance(raw_ops, list)
        or not 1 <= len(raw_ops) <= MAX_OPERATIONS
        or not all(isinstance(op, dict) for op in raw_ops)
    ):
        raise ValidationFailed.at(
            ["body", "operations"], f"must be a list of 1 to {MAX_OPERATIONS} objects"
        )
    answers: list[WriteResult | LedgerError | None] = [None] * len(raw_ops)
    operations: list[tuple[int, Operation]] = []
    for index, raw in enumerate(raw_ops):
        try:
            operations.append((index, _operation(raw, index, principal)))
        except LedgerError as error:
            answers[index] = error
    planned = await _plan(runtime, operations, principal.name, answers)
    results = await runtime.ledger.submit_many([write for _, write in planned])
    for (index, _), answer in zip(planned, results, strict=True):
        answers[index] = answer
    down = [a for a in answers if isinstance(a, Unavailable)]
    if down and not any(isinstance(a, WriteResult) for a in answers):
        raise down[0]  # the store is down and nothing was written: 503 for the request
    body: BatchPublic = {"results": [_result(a) for a in answers if a is not None]}
    return FastJSONResponse(body)


async def _plan(
    runtime: Any,
    operations: list[tuple[int, Operation]],
    actor: str,
    answers: list[WriteResult | LedgerError | None],
) -> list[tuple[int, Write]]:
    """The operations' writes, in order; a plan that fails answers its error."""

    def plan_all(ops: list[tuple[int, Operation]]) -> list[tuple[int, Write | LedgerError]]:
        planned: list[tuple[int, Write | LedgerError]] = []
        for index, op in ops:
            try:
                planned.append((index, plan(runtime.ledger, op, actor)))
            except LedgerError as error:
                planned.append((index, error))
        return planned

    if any(op.kind in NEEDS_STORE for _, op in operations):
        planned = await runtime.guard.call(plan_all, operations)
    else:
        planned = plan_all(operations)
    writes: list[tuple[int, Write]] = []
    for index, write in planned:
        if isinstance(write, LedgerError):
            answers[index] = write
        else:
            writes.append((index, write))
    return writes
