"""Shapes of ``POST /v1/batch`` (contract v1.1, "Batched writes")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.api.schemas import (
    BalancePublic,
    CaptureCreate,
    ConsumptionCreate,
    DeductionCreate,
    EntryPublic,
    GrantCreate,
    HoldCreate,
    PurchaseCreate,
    RefundCreate,
    ReleaseCreate,
    RequestModel,
)

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


class OperationCreate(BaseModel):
    """One operation: ``op``, ``account_id``, an optional ``idempotency_key``,
    the id its single write takes in the path (``entry_id`` for ``refund``,
    ``hold_id`` for ``capture`` and ``release``), and that write's body fields."""

    model_config = {"extra": "allow"}

    op: OperationKind
    account_id: str
    idempotency_key: str | None = None


class BatchCreate(BaseModel):
    """``{"operations": [...]}``: 1 to 1,000 operations, applied in order."""

    operations: list[OperationCreate] = Field(min_length=1, max_length=MAX_OPERATIONS)


class OperationResult(BaseModel):
    """``status`` 201 with ``entry`` and ``balance`` (and ``idempotent_replayed``
    when it repeats an earlier answer), or a 4xx ``status`` with ``problem``
    (the RFC 9457 object the single write would have answered)."""

    status: int
    entry: EntryPublic | None = None
    balance: BalancePublic | None = None
    idempotent_replayed: bool | None = None
    problem: dict[str, Any] | None = None


class BatchPublic(BaseModel):
    """One result per operation, in request order."""

    results: list[OperationResult]
