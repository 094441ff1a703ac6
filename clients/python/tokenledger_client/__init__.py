"""Python client of the tokenledger HTTP API (contract v1.1).

>>> from tokenledger_client import LedgerClient, InsufficientBalance
>>> with LedgerClient("http://127.0.0.1:8000", api_key) as ledger:   # doctest: +SKIP
...     ledger.purchase("user-42", 10_000, payment_reference="pi_123")
...     with ledger.hold("user-42", 2_000, operation="chat.completion") as hold:
...         reply = call_the_model()
...         hold.use(reply.usage.total_tokens)
...     for balance in ledger.stream_balance("user-42"):
...         print(balance["available"])

:class:`LedgerClient` (threads) and :class:`AsyncLedgerClient` (asyncio) have
the same methods. Writes carry an ``Idempotency-Key`` (generated per call, or
given) reused on their retries; errors are :class:`ApiError` subclasses named
after the problem's ``code``; streams resume by themselves.
"""

from tokenledger_client import operations
from tokenledger_client._core import RetryEvent, RetryPolicy, new_idempotency_key
from tokenledger_client.aio import AsyncEventStream, AsyncHold, AsyncLedgerClient, PendingHold
from tokenledger_client.client import EventStream, Hold, LedgerClient
from tokenledger_client.errors import (
    AccountNotFound,
    ApiError,
    BalanceLimitExceeded,
    Conflict,
    ConnectionFailed,
    EntryNotFound,
    Forbidden,
    HoldNotActive,
    HoldNotFound,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InsufficientBalance,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    RefundExceedsConsumption,
    ServerError,
    TokenLedgerError,
    Unauthorized,
    Unavailable,
    Unprocessable,
    ValidationError,
    batch_error,
)
from tokenledger_client.types import (
    ActiveHold,
    Balance,
    BatchResult,
    CreditBucket,
    EntriesPage,
    Entry,
    EntryType,
    GlobalEntriesPage,
    Problem,
    Statement,
    StreamToken,
    TypeTotal,
    WriteResult,
)

__version__ = "0.1.0"

__all__ = [
    "AccountNotFound",
    "ActiveHold",
    "ApiError",
    "AsyncEventStream",
    "AsyncHold",
    "AsyncLedgerClient",
    "Balance",
    "BalanceLimitExceeded",
    "BatchResult",
    "Conflict",
    "ConnectionFailed",
    "CreditBucket",
    "EntriesPage",
    "Entry",
    "EntryNotFound",
    "EntryType",
    "EventStream",
    "Forbidden",
    "GlobalEntriesPage",
    "Hold",
    "HoldNotActive",
    "HoldNotFound",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "InsufficientBalance",
    "LedgerClient",
    "MalformedRequest",
    "NotFound",
    "PayloadTooLarge",
    "PendingHold",
    "Problem",
    "RefundExceedsConsumption",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "Statement",
    "StreamToken",
    "TokenLedgerError",
    "TypeTotal",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "ValidationError",
    "WriteResult",
    "batch_error",
    "new_idempotency_key",
    "operations",
]
