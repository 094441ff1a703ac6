"""Shapes of ``POST /v1/batch`` (contract v1.1, "Batched writes")."""

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.config import JsonDict
from typing_extensions import TypedDict

from service.api.schemas import (
    CaptureCreate,
    ConsumptionCreate,
    DeductionCreate,
    GrantCreate,
    HoldCreate,
    PurchaseCreate,
    RefundCreate,
    ReleaseCreate,
    RequestModel,
)
from service.domain.published import BalancePublic, EntryPublic

MAX_OPERATIONS = 1000
"""Most operations in one batch."""

OperationKind = Literal[
    "purchase", "grant", "consume", "deduct", "refund", "hold", "capture", "release"
]

OPERATION_MODELS: dict[str, type[RequestModel]] = {
    "purchase": PurchaseCreate,
    "grant": GrantCreate,
    "consume": ConsumptionCreate,
    "deduct": DeductionCreate,
    "refund": RefundCreate,
    "hold": HoldCreate,
    "capture": CaptureCreate,
    "release": ReleaseCreate,
}
"""The body model of the single write each operation kind stands for."""

OPERATION_SCOPES: dict[str, str] = {
    "purchase": "purchase",
    "grant": "grant",
    "consume": "consume",
    "deduct": "grant",
    "refund": "consume",
    "hold": "consume",
    "capture": "consume",
    "release": "consume",
}
"""The scope each operation kind needs (as its single write)."""

PATH_IDS: dict[str, str] = {"refund": "entry_id", "capture": "hold_id", "release": "hold_id"}
"""The id an operation names where its single write has it in the path."""


OPERATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One write: `op`, `account_id`, an optional `idempotency_key`, the id its"
    " single write takes in the path (`entry_id` for `refund`, `hold_id` for `capture` and"
    " `release`) and that write's body fields. Only its being an object is checked for the"
    " request: an operation that is not valid is answered by its own 422 result.",
    "properties": {
        "op": {"description": "One of " + ", ".join(f"`{op}`" for op in OPERATION_MODELS)},
        "account_id": {"description": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
        "idempotency_key": {"description": "1-255 printable ASCII characters"},
        "entry_id": {"description": "`refund`: the consumption refunded"},
        "hold_id": {"description": "`capture`, `release`: the hold"},
    },
    "additionalProperties": True,
}
"""An operation as documented: its fields are described, not constrained (a
request with a malformed operation is answered 200, with a 422 result for it)."""

Operation = Annotated[dict[str, Any], WithJsonSchema(OPERATION_SCHEMA)]

BATCH_EXAMPLE: JsonDict = {
    "operations": [
        {"op": "purchase", "account_id": "user-7", "amount": 5000, "payment_reference": "pi_123"},
        {"op": "consume", "account_id": "user-7", "amount": 120, "model": "gpt-4o"},
        {"op": "hold", "account_id": "user-7", "amount": 30, "ttl_seconds": 60},
    ]
}


class BatchCreate(BaseModel):
    """``{"operations": [...]}``: 1 to 1,000 operation objects, applied in order
    (other top-level members are ignored). Anything else is refused as a whole
    (422, nothing written)."""

    model_config = ConfigDict(json_schema_extra={"examples": [BATCH_EXAMPLE]})

    operations: list[Operation] = Field(min_length=1, max_length=MAX_OPERATIONS)


class OperationResult(TypedDict):
    """``status`` 201 with ``entry`` and ``balance`` (and ``idempotent_replayed``
    when it repeats an earlier answer), or a 4xx ``status`` with ``problem``
    (the RFC 9457 object the single write would have answered)."""

    status: int
    entry: NotRequired[EntryPublic]
    balance: NotRequired[BalancePublic]
    idempotent_replayed: NotRequired[bool]
    problem: NotRequired[dict[str, Any]]


class BatchPublic(TypedDict):
    """One result per operation, in request order."""

    results: list[OperationResult]
