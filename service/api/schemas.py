"""Request and response bodies of contract v1 (pydantic).

Requests forbid unknown fields (a typo such as ``ammount`` must not be silently
dropped by a payments API) and take integers strictly: ``true``, ``1.0``,
``1e3`` and ``"5"`` are not amounts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    with_config,
)
from typing_extensions import TypedDict

from service.api.errors import PROBLEM_JSON
from service.application.api_keys import ApiKeyCreated, ApiKeyPublic, ApiKeysPublic
from service.application.pages import (
    CreditPublic,
    CreditsPublic,
    EntriesPage,
    GlobalEntriesPage,
    HoldPublic,
    HoldsPublic,
    StatementPublic,
    TypeTotalPublic,
)
from service.domain.published import BalancePublic, EntryPublic, WritePublic
from service.domain.values import MAX_AMOUNT

MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 8 * 1024
MAX_TTL_SECONDS = 86_400
MAX_TEXT = 255
"""Longest ``operation``, ``model``, ``payment_reference``."""
MAX_REASON = 1_000
MAX_POSITION = 2**63 - 1
"""Largest position or version a query may name (a 64-bit signed integer)."""
SCOPES = ("consume", "purchase", "grant", "read", "audit", "admin")

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_OFFSET_AFTER_SPACE = re.compile(r"(\d) (\d{2}:\d{2})$")


def parse_rfc3339(value: Any) -> datetime:
    """An RFC 3339 timestamp with a ``Z`` or ``±hh:mm`` offset, as UTC.

    Raises:
        ValueError: not a string, naive, or not RFC 3339.
    """
    if not isinstance(value, str):
        msg = "must be an RFC 3339 timestamp string"
        raise ValueError(msg)
    # A "+" in a query string arrives as a space: "…T00:00:00 02:00".
    text = _OFFSET_AFTER_SPACE.sub(r"\1+\2", value.strip())
    if not _RFC3339.fullmatch(text):
        msg = "must be an RFC 3339 timestamp with a time zone offset, e.g. 2026-01-01T00:00:00Z"
        raise ValueError(msg)
    date, rest = text[:10], text[11:].replace("z", "Z")  # "T", "t" or " " between
    fraction = re.search(r"\.(\d+)", rest)
    if fraction and len(fraction.group(1)) > 6:  # Python keeps microseconds
        rest = rest.replace(fraction.group(0), "." + fraction.group(1)[:6])
    try:
        moment = datetime.fromisoformat(f"{date}T{rest}".replace("Z", "+00:00"))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        msg = "is not a valid date and time (years 0001 to 9999 in UTC)"
        raise ValueError(msg) from None


MAX_METADATA_DEPTH = 32
"""Most levels of nested objects and arrays in ``metadata``."""
RESERVED_SHAPE = {"_type_", "_data_"}
"""An object of exactly these keys is how stored events mark typed values."""


def _check_nesting(value: Any, depth: int) -> None:
    """Raises ``ValueError`` beyond ``MAX_METADATA_DEPTH`` levels, or on an
    object shaped like the event store's typed values (it would not read back
    as written)."""
    if depth > MAX_METADATA_DEPTH:
        msg = f"at most {MAX_METADATA_DEPTH} levels of nesting"
        raise ValueError(msg)
    if isinstance(value, dict):
        if set(value) == RESERVED_SHAPE:
            msg = 'an object with exactly the keys "_type_" and "_data_" is reserved'
            raise ValueError(msg)
        for item in value.values():
            _check_nesting(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_nesting(item, depth + 1)


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_KEYS:
        msg = f"at most {MAX_METADATA_KEYS} keys"
        raise ValueError(msg)
    _check_nesting(value, 1)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        msg = "numbers must be finite"
        raise ValueError(msg) from None
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_METADATA_BYTES:
        msg = f"at most {MAX_METADATA_BYTES} bytes serialized"
        raise ValueError(msg)
    return value


Amount = Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT, description="Tokens, 1..10^15")]
Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    Field(description="RFC 3339 with an offset; stored in UTC"),
]
Metadata = Annotated[
    dict[str, Any] | None,
    AfterValidator(_check_metadata),
    Field(description="JSON object, at most 50 keys and 8 KiB serialized"),
]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON)]


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class PurchaseCreate(RequestModel):
    amount: Amount
    payment_reference: Text | None = None
    expires_at: Timestamp | None = None
    metadata: Metadata = None


class GrantCreate(RequestModel):
    amount: Amount
    reason: Reason
    expires_at: Timestamp | None = None
    metadata: Metadata = None


class ConsumptionCreate(RequestModel):
    amount: Amount
    operation: Text | None = None
    model: Text | None = None
    metadata: Metadata = None


class DeductionCreate(RequestModel):
    amount: Amount
    reason: Reason
    metadata: Metadata = None


class RefundCreate(RequestModel):
    amount: Amount | None = None
    reason: Reason | None = None


class HoldCreate(RequestModel):
    amount: Amount
    ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=MAX_TTL_SECONDS)] = 900
    operation: Text | None = None
    metadata: Metadata = None


class CaptureCreate(RequestModel):
    amount: Amount | None = None


class ReleaseCreate(RequestModel):
    pass


class AccountUpdate(RequestModel):
    credit_limit: Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]


class StreamTokenCreate(RequestModel):
    ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=MAX_TTL_SECONDS)] = 3600


class ApiKeyCreate(RequestModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:@-]{1,64}$")]
    scopes: Annotated[
        list[Annotated[str, Field(pattern="^(" + "|".join(SCOPES) + ")$")]],
        Field(min_length=1, max_length=len(SCOPES) * 2),
    ]


# Responses ------------------------------------------------------------------
# Every response body is a TypedDict: built typed (mypy --strict), serialized
# as is (orjson), documented by FastAPI from the same class (``response_model``).
# Those built below the API are defined there (service.domain.published,
# service.application.pages); those the API builds are defined here.


class StreamTokenPublic(TypedDict):
    """A stream token: a JWT for one account's streams and balance."""

    token: str
    account_id: str
    expires_at: str


class HealthPublic(TypedDict):
    """``GET /healthz``: the process is up."""

    status: Literal["ok"]


class ReadyPublic(TypedDict):
    """``GET /readyz`` when ready: ``status`` ``ready``, or ``degraded`` while
    Redis is down (streams then read the store)."""

    status: Literal["ready", "degraded"]
    checks: dict[str, Any]
    """`database`, `projection` (`position`, `head`, `lag` in positions),
    `broker` (`ok`, `unreachable` or `in-process`)."""


class Problem(TypedDict):
    """RFC 9457 problem details; the error's context adds members (e.g.
    `errors` on 422, `available` and `requested` on 402)."""

    type: str
    title: str
    status: int
    detail: str
    code: str


DOCUMENTED: tuple[type[Any], ...] = (
    EntryPublic,
    BalancePublic,
    WritePublic,
    EntriesPage,
    GlobalEntriesPage,
    HoldPublic,
    HoldsPublic,
    CreditPublic,
    CreditsPublic,
    TypeTotalPublic,
    StatementPublic,
    StreamTokenPublic,
    ApiKeyPublic,
    ApiKeyCreated,
    ApiKeysPublic,
    HealthPublic,
    ReadyPublic,
    Problem,
)
"""The response shapes whose attribute docstrings describe their fields in
the OpenAPI document (pydantic's ``use_attribute_docstrings``)."""
for _shape in DOCUMENTED:
    with_config(ConfigDict(use_attribute_docstrings=True))(_shape)


# OpenAPI ``responses`` (what each route can answer besides its success) -----

NO_STORE = {
    "Cache-Control": {
        "description": "`no-store`: the answer holds a secret",
        "required": True,
        "schema": {"type": "string", "const": "no-store"},
    }
}
"""The ``Cache-Control`` header of answers that show a secret once."""

PROBLEM_SCHEMA: dict[str, Any] = TypeAdapter(Problem).json_schema()
"""The problem object's JSON Schema, inlined in every error response (it has
no references, and FastAPI registers ``model=`` schemas under the route's own
media type, ``application/json``, which error answers never carry)."""

PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "`malformed-request`: the body is not JSON (or holds invalid Unicode)",
    401: "`unauthorized`: no or unknown credentials",
    402: "`insufficient-balance`: `available - amount < -credit_limit` (extra `available`,"
    " `requested`)",
    403: "`forbidden`: the credentials lack the scope or the account",
    404: "`not-found`: no such resource",
    409: "`idempotency-key-in-flight`: the same `Idempotency-Key` is being processed",
    413: "`payload-too-large`: the body is over 64 KiB",
    422: "`validation-error` (extra `errors`: `[{loc, msg}]`), `idempotency-key-reused` or"
    " `balance-limit-exceeded`",
    503: "`unavailable`: a backing store is down; retry after `Retry-After` seconds",
}
"""Default description of each problem status; routes name their own codes."""

_INTEGER_SECONDS = {"type": "string", "pattern": "^[0-9]+$"}
PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer`",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying",
            "required": True,
            "schema": _INTEGER_SECONDS,
        }
    },
}


def problems(
    *statuses: int, notes: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the ``application/problem+json`` answers
    ``statuses``, each described by ``notes[status]`` (the route's own codes)
    or else by :data:`PROBLEM_DESCRIPTIONS`."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        doc: dict[str, Any] = {
            "description": (notes or {}).get(status, PROBLEM_DESCRIPTIONS[status]),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        if status in PROBLEM_HEADERS:
            doc["headers"] = PROBLEM_HEADERS[status]
        responses[status] = doc
    return responses


def sse_responses(event: str, data_schema: str) -> dict[int | str, dict[str, Any]]:
    """The ``200`` of a Server-Sent Events stream (``text/event-stream``):
    ``event`` frames whose ``data`` is the JSON of the component
    ``data_schema`` and whose ``id`` is a log position.

    The ``schema`` describes one event (``{event, data, id, retry}``), as tools
    read it before OpenAPI 3.2; 3.2's ``itemSchema`` is not valid in the 3.1
    document FastAPI writes."""
    item = {
        "type": "object",
        "required": ["event", "data", "id"],
        "properties": {
            "event": {"const": event},
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "Log position"},
            "retry": {"type": "integer", "minimum": 0, "description": "Milliseconds"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{data_schema}"},
            },
        },
    }
    return {
        200: {
            "description": f"`event: {event}` frames (first `retry: 3000`, then `: ping`"
            " comments every `LEDGER_SSE_PING_SECONDS`); the stream ends when its"
            " credentials expire or are revoked",
            "content": {"text/event-stream": {"schema": item}},
        }
    }
