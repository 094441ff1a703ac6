"""The synchronous client: :class:`LedgerClient`, its :class:`Hold` and
:class:`EventStream`."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

import httpx
from httpx_sse import connect_sse

from tokenledger_client import operations as ops
from tokenledger_client._core import (
    DEFAULT_LIMITS,
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    Call,
    OnRetry,
    Resume,
    RetryEvent,
    RetryPolicy,
    account_path,
    balance_call,
    batch_call,
    check,
    credit_limit_call,
    is_event_stream,
    new_idempotency_key,
    parse_batch,
    parse_write,
    transport_retryable,
    write_call,
)
from tokenledger_client._hold import HoldBase
from tokenledger_client.errors import (
    AccountNotFound,
    ConnectionFailed,
    TokenLedgerError,
    error_from_response,
)
from tokenledger_client.types import (
    ActiveHold,
    Balance,
    BatchResult,
    CreditBucket,
    EntriesPage,
    Entry,
    GlobalEntriesPage,
    Statement,
    StreamToken,
    WriteResult,
)

T = TypeVar("T")


class LedgerClient:
    """A client of the token ledger's HTTP API (contract v1.1) over ``httpx``.

    ``LedgerClient("http://127.0.0.1:8000", api_key)``; use it as a context
    manager or call :meth:`close`. ``api_key`` may also be a stream token
    (reads of its account only). One client is safe to share between threads.

    Every write sends an ``Idempotency-Key``: the one given as
    ``idempotency_key``, else a new UUID4 per call, the same on every retry.
    A request is retried (see :class:`RetryPolicy`, default 5 attempts) after
    transport errors (refused, reset, timed out), 502/503/504 (waiting the
    ``Retry-After`` the service sends) and 409 ``idempotency-key-in-flight``.

    Args:
        base_url: the service's root URL (``/v1/...`` is appended).
        api_key: an API key or a stream token, sent as a Bearer token.
        timeout: seconds (or an ``httpx.Timeout``) for each attempt; a
            balance read with ``wait`` gets ``wait`` seconds more to read.
        retry: the retry policy.
        stream_timeout: seconds a stream may stay silent (no frame, no ping)
            before it is taken for dead and resumed; keep it above the
            service's ``LEDGER_SSE_PING_SECONDS``.
        on_retry: called with a :class:`RetryEvent` before every retry and
            stream reconnection (logging, metrics).
        transport, limits, headers: passed to ``httpx.Client`` (``limits`` default:
            100 connections; each open stream holds one).

    Errors (every method): :class:`ApiError` subclasses for error answers
    (:class:`Unauthorized`, :class:`Forbidden`, :class:`ValidationError`, …),
    :class:`ConnectionFailed` when every attempt failed in transport.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
        on_retry: OnRetry | None = None,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.stream_timeout = stream_timeout
        self.on_retry = on_retry
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        all_headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=all_headers,
            timeout=self._timeout,
            transport=transport,
            limits=limits or DEFAULT_LIMITS,
        )

    # -- plumbing -----------------------------------------------------------

    def close(self) -> None:
        """Closes the connections (open streams end)."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _notify(self, event: RetryEvent) -> None:
        if self.on_retry is not None:
            self.on_retry(event)

    def _send(self, call: Call) -> httpx.Response:
        """The successful answer to ``call``, retried as the policy says.

        Raises:
            ApiError: an error answer that is not retried, or the last one.
            ConnectionFailed: the last attempt failed in transport.
        """
        failures = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    params=call.params,
                    headers=call.headers(),
                    timeout=call.timeout(self._timeout),
                )
            except httpx.TransportError as error:
                failures += 1
                if not transport_retryable(error) or failures >= self.retry.max_attempts:
                    failed = ConnectionFailed(
                        f"{call.method} {call.path}: {error!r} ({failures} attempt(s))",
                        attempts=failures,
                    )
                    failed.idempotency_key = call.idempotency_key
                    raise failed from error
                failure: BaseException = error
                status = None
            else:
                api_error = check(response)
                if api_error is None:
                    return response
                api_error.idempotency_key = call.idempotency_key
                failures += 1
                if not self.retry.retryable(api_error) or failures >= self.retry.max_attempts:
                    raise api_error
                failure, status, retry_after = api_error, api_error.status, api_error.retry_after
            delay = self.retry.delay(failures, retry_after)
            self._notify(
                RetryEvent(
                    call.method, call.path, failures, delay, status, failure, call.idempotency_key
                )
            )
            time.sleep(delay)

    def _json(self, call: Call) -> Any:
        return self._send(call).json()

    def _write(self, operation: ops.Operation) -> WriteResult:
        return parse_write(self._send(write_call(operation)))

    # -- writes -------------------------------------------------------------

    def purchase(
        self,
        account_id: str,
        amount: int,
        *,
        payment_reference: str | None = None,
        expires_at: datetime | str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Adds ``amount`` purchased tokens (1 … 10^15) to ``account_id``
        (scope ``purchase``); ``expires_at`` (aware ``datetime`` or RFC 3339)
        makes them a credit bucket that expires then.

        Returns:
            ``{"entry": Entry (type "purchase"), "balance": Balance}``.

        Raises:
            ValidationError: a bad amount, account id or metadata (422).
            BalanceLimitExceeded: a counter would pass 2^53 - 1 (422).
        """
        return self._write(
            ops.purchase(
                account_id,
                amount,
                payment_reference=payment_reference,
                expires_at=expires_at,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    def grant(
        self,
        account_id: str,
        amount: int,
        reason: str,
        *,
        expires_at: datetime | str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Grants ``amount`` free tokens for ``reason`` (scope ``grant``).

        Returns:
            ``{"entry": Entry (type "grant"), "balance": Balance}``.

        Raises:
            ValidationError, BalanceLimitExceeded: as :meth:`purchase`.
        """
        return self._write(
            ops.grant(
                account_id,
                amount,
                reason,
                expires_at=expires_at,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    def consume(
        self,
        account_id: str,
        amount: int,
        *,
        operation: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Consumes ``amount`` tokens (scope ``consume``), e.g. after an AI
        call of ``model`` for ``operation``.

        Returns:
            ``{"entry": Entry (type "consumption"), "balance": Balance}``.

        Raises:
            InsufficientBalance: ``available - amount < -credit_limit`` (402;
                ``available`` and ``requested`` in tokens).
            ValidationError: a bad amount, account id or metadata (422).
        """
        return self._write(
            ops.consume(
                account_id,
                amount,
                operation=operation,
                model=model,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    def deduct(
        self,
        account_id: str,
        amount: int,
        reason: str,
        *,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Deducts ``amount`` tokens for ``reason`` (scope ``grant``).

        Returns:
            ``{"entry": Entry (type "deduction"), "balance": Balance}``.

        Raises:
            InsufficientBalance: as :meth:`consume` (402).
        """
        return self._write(
            ops.deduct(
                account_id, amount, reason, metadata=metadata, idempotency_key=idempotency_key
            )
        )

    def refund(
        self,
        account_id: str,
        entry_id: str,
        amount: int | None = None,
        *,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Refunds ``amount`` tokens (default: all still unrefunded) of the
        consumption ``entry_id`` (scope ``consume``).

        Returns:
            ``{"entry": Entry (type "refund"), "balance": Balance}``.

        Raises:
            EntryNotFound: no such consumption in the account (404).
            RefundExceedsConsumption: more than is still unrefunded (409).
        """
        return self._write(
            ops.refund(account_id, entry_id, amount, reason=reason, idempotency_key=idempotency_key)
        )

    def hold(
        self,
        account_id: str,
        amount: int,
        *,
        ttl_seconds: int | None = None,
        operation: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Hold:
        """Holds ``amount`` tokens for ``ttl_seconds`` (default 900, at most
        86,400) (scope ``consume``) and returns the :class:`Hold`.

        As a context manager the hold settles itself: when the block ends
        normally it captures what the block reported with ``hold.use(n)`` or
        ``hold.used = n`` (all of it when nothing was reported; 0 releases
        it), and when the block raises it releases the hold and the exception
        propagates. Without ``with``, call :meth:`Hold.capture` or
        :meth:`Hold.release` yourself (or the hold expires after its TTL).

        Raises:
            InsufficientBalance: not enough available to hold (402).
        """
        key = idempotency_key or new_idempotency_key()
        result = self._write(
            ops.hold(
                account_id,
                amount,
                ttl_seconds=ttl_seconds,
                operation=operation,
                metadata=metadata,
                idempotency_key=key,
            )
        )
        return Hold(self, account_id, result, key)

    def capture(
        self,
        account_id: str,
        hold_id: str,
        amount: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Consumes ``amount`` tokens (default: all, at most the held amount)
        of hold ``hold_id`` and releases the rest (scope ``consume``).

        Returns:
            ``{"entry": Entry (type "hold_capture"), "balance": Balance}``.

        Raises:
            HoldNotFound: no such hold (404).
            HoldNotActive: captured, released or expired already (409).
            ValidationError: ``amount`` above the held amount (422).
        """
        return self._write(
            ops.capture(account_id, hold_id, amount, idempotency_key=idempotency_key)
        )

    def release(
        self, account_id: str, hold_id: str, *, idempotency_key: str | None = None
    ) -> WriteResult:
        """Releases hold ``hold_id`` (scope ``consume``).

        Returns:
            ``{"entry": Entry (type "hold_release"), "balance": Balance}``.

        Raises:
            HoldNotFound, HoldNotActive: as :meth:`capture`.
        """
        return self._write(ops.release(account_id, hold_id, idempotency_key=idempotency_key))

    def set_credit_limit(
        self, account_id: str, credit_limit: int, *, idempotency_key: str | None = None
    ) -> WriteResult:
        """Sets how far below zero ``available`` may go, in tokens (≥ 0;
        scope ``admin``).

        Returns:
            ``{"entry": Entry (type "credit_limit_change"), "balance": Balance}``.
        """
        return parse_write(self._send(credit_limit_call(account_id, credit_limit, idempotency_key)))

    def batch(
        self, operations: Iterable[Mapping[str, Any]], *, idempotency_keys: bool = True
    ) -> list[BatchResult]:
        """Applies up to 1,000 operations in one request (``POST /v1/batch``),
        built with :mod:`tokenledger_client.operations` (or the contract's
        operation objects). Operations are independent; those on one account
        apply in order. With ``idempotency_keys`` (default) every operation
        without an ``idempotency_key`` gets a new one, the same on every
        retry of the request; ``operations`` are not modified.

        Returns:
            One :class:`BatchResult` per operation, in order: ``status`` 201
            with ``entry`` and ``balance``, or an error ``status`` with its
            ``problem`` (see :func:`batch_error`). Results with status 503
            were not recorded: send them again with the same keys.

        Raises:
            ValidationError: not 1 to 1,000 operation objects (422; nothing written).
            PayloadTooLarge: the body is over 1 MiB (413).
        """
        return parse_batch(self._send(batch_call(operations, idempotency_keys)))

    # -- reads --------------------------------------------------------------

    def balance(
        self,
        account_id: str,
        *,
        min_position: int | None = None,
        wait: float | None = None,
        as_of: datetime | str | None = None,
        as_of_version: int | None = None,
    ) -> Balance:
        """The account's balance.

        With ``min_position``, waits up to ``wait`` seconds (≤ 10) on the
        server until the balance has applied that position; if it has not,
        the current balance comes with ``"stale": True``. ``as_of`` (a time)
        or ``as_of_version`` rebuild the balance as it was then (scope ``read``).

        Raises:
            AccountNotFound: the account has no entries (404).
            EntryNotFound: ``as_of_version`` not reached yet (404).
        """
        return cast(
            Balance,
            self._json(
                balance_call(
                    account_id,
                    min_position=min_position,
                    wait=wait,
                    as_of=as_of,
                    as_of_version=as_of_version,
                )
            ),
        )

    def entries(self, account_id: str, *, after_version: int = 0, limit: int = 100) -> EntriesPage:
        """One page of the account's entries with versions after
        ``after_version``, oldest first, at most ``limit`` (≤ 1,000).

        Raises:
            AccountNotFound: the account has no entries (404).
        """
        params = {"after_version": after_version, "limit": limit}
        return cast(
            EntriesPage, self._json(Call("GET", account_path(account_id, "entries"), params=params))
        )

    def iter_entries(
        self, account_id: str, *, after_version: int = 0, page_size: int = 1000
    ) -> Iterator[Entry]:
        """Every entry of the account after ``after_version``, oldest first,
        read ``page_size`` at a time.

        Raises:
            AccountNotFound: the account has no entries (404).
        """
        after: int | None = after_version
        while after is not None:
            page = self.entries(account_id, after_version=after, limit=page_size)
            yield from page["entries"]
            after = page["next_after_version"]

    def global_entries(self, *, after_position: int = 0, limit: int = 100) -> GlobalEntriesPage:
        """One page of every account's entries after ``after_position``, in
        position order (scope ``audit``)."""
        params = {"after_position": after_position, "limit": limit}
        return cast(GlobalEntriesPage, self._json(Call("GET", "/v1/entries", params=params)))

    def holds(self, account_id: str) -> list[ActiveHold]:
        """The account's active holds (scope ``read``)."""
        body = self._json(Call("GET", account_path(account_id, "holds")))
        return cast(list[ActiveHold], body["holds"])

    def credits(self, account_id: str) -> list[CreditBucket]:
        """The account's credit buckets with tokens left, in draw-down order
        (scope ``read``)."""
        body = self._json(Call("GET", account_path(account_id, "credits")))
        return cast(list[CreditBucket], body["credits"])

    def statement(self, account_id: str, start: datetime | str, end: datetime | str) -> Statement:
        """The account over ``[start, end)``: opening and closing balances and
        totals by entry type (scope ``read``).

        Raises:
            AccountNotFound: the account has no entries (404).
            ValidationError: ``start`` not before ``end`` (422).
        """
        params = {"from": ops.rfc3339(start), "to": ops.rfc3339(end)}
        return cast(
            Statement,
            self._json(Call("GET", account_path(account_id, "statement"), params=params)),
        )

    def create_stream_token(self, account_id: str, *, ttl_seconds: int = 3600) -> StreamToken:
        """A token reading only this account for ``ttl_seconds`` (≤ 86,400;
        scope ``read``), for a browser or a client of its own."""
        call = Call(
            "POST", account_path(account_id, "stream-tokens"), json={"ttl_seconds": ttl_seconds}
        )
        return cast(StreamToken, self._json(call))

    def _current_position(self, account_id: str) -> int:
        try:
            return self.balance(account_id)["position"]
        except AccountNotFound:
            return 0

    # -- streams ------------------------------------------------------------

    def stream_balance(
        self,
        account_id: str,
        *,
        after_position: int | None = None,
        max_reconnects: int | None = None,
    ) -> EventStream[Balance]:
        """The account's balance, live: the current balance first, then every
        change, oldest first, never an older one after a newer one.

        With ``after_position`` (a ``last_event_id`` kept from an earlier
        stream), only balances after that position. The stream resumes by
        itself after a disconnection (``Last-Event-ID``), skipping what it
        already delivered; it gives up with :class:`ConnectionFailed` after
        ``max_reconnects`` failed connections in a row (``None``: never).

        Raises (while iterating):
            Unauthorized, Forbidden: the credential expired, was revoked or
                does not cover the account.
        """
        return EventStream(
            self,
            account_path(account_id, "balance/stream"),
            "balance",
            after_position,
            max_reconnects,
        )

    def stream_entries(
        self,
        account_id: str,
        *,
        after_position: int | None = None,
        max_reconnects: int | None = None,
    ) -> EventStream[Entry]:
        """The account's entries, live, oldest first, none missing, none twice.

        ``after_position=None`` starts at the account's current position, read
        from its balance now (this call makes that one request): the stream
        delivers the entries recorded after it, even those recorded before
        iteration starts. ``0`` replays all history first; any other position
        resumes after it. Resumes by itself as :meth:`stream_balance`.

        Raises:
            Unauthorized, Forbidden: as :meth:`stream_balance` (also at once,
                from the balance read).
        """
        return EventStream(
            self,
            account_path(account_id, "entries/stream"),
            "entry",
            self._current_position(account_id) if after_position is None else after_position,
            max_reconnects,
        )


class Hold(HoldBase):
    """A hold of tokens, settled by the end of its ``with`` block.

    ``with client.hold(account, 2_000) as hold: ... hold.use(tokens)``: on a
    normal exit it captures ``hold.used`` tokens (all of them when ``used`` is
    ``None``, releases when it is 0; tokens used beyond the hold are captured
    in full and the excess consumed as well, see ``overage``); when the block
    raises it releases the hold and the exception propagates (a failure to
    release is added to it as a note; the hold would expire anyway).

    Raises (on exit):
        HoldNotActive: the hold expired during the block (409).
        InsufficientBalance: the excess over the hold could not be paid (402;
            the hold itself was captured).
    """

    def __init__(
        self, client: LedgerClient, account_id: str, result: WriteResult, idempotency_key: str
    ) -> None:
        super().__init__(account_id, result, idempotency_key)
        self._client = client

    def capture(self, amount: int | None = None) -> WriteResult:
        """Captures ``amount`` tokens (default: all) now; releases the rest."""
        self.settlement = self._client.capture(
            self.account_id, self.hold_id, amount, idempotency_key=self._key("capture")
        )
        return self.settlement

    def release(self) -> WriteResult:
        """Releases the whole hold now."""
        self.settlement = self._client.release(
            self.account_id, self.hold_id, idempotency_key=self._key("release")
        )
        return self.settlement

    def settle(self) -> WriteResult:
        """Captures what was used (see the class), as a normal exit does."""
        plan = self._plan()
        if plan.action == "release":
            return self.release()
        result = self.capture(plan.amount)
        if plan.overage:
            self.overage = self._client.consume(
                self.account_id,
                plan.overage,
                operation=self.entry["operation"],
                metadata={"hold_id": self.hold_id, "overage": True},
                idempotency_key=self._key("overage"),
            )
        return result

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.settled:
            return
        if exc is None:
            self.settle()
            return
        try:
            self.release()
        except TokenLedgerError as error:
            exc.add_note(f"releasing hold {self.hold_id} failed too: {error!r}")


class EventStream(Generic[T]):
    """An iterator over one Server-Sent Events stream's data (decoded JSON),
    resuming by itself after disconnections with ``Last-Event-ID`` and
    skipping frames it already delivered.

    ``last_event_id`` is the position of the last item delivered: keep it to
    start a later stream where this one stopped (``after_position=``).
    ``reconnects`` counts reconnections. Close it (or use it as a context
    manager) to end the connection.
    """

    def __init__(
        self,
        client: LedgerClient,
        path: str,
        event: str,
        after_position: int | None,
        max_reconnects: int | None,
    ) -> None:
        self._client = client
        self.path = path
        self._resume = Resume(event, after_position)
        self.max_reconnects = max_reconnects
        self._frames = self._run()

    @property
    def last_event_id(self) -> int | None:
        """Position of the last item delivered (``None`` before the first)."""
        return self._resume.last_event_id

    @property
    def reconnects(self) -> int:
        """Reconnections so far."""
        return self._resume.reconnects

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._frames)

    def close(self) -> None:
        """Ends the stream and its connection."""
        self._frames.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> Generator[T, None, None]:
        client, resume, policy = self._client, self._resume, self._client.retry
        timeout = httpx.Timeout(client._timeout.connect, read=client.stream_timeout)
        failures = 0
        while True:
            failure: BaseException | None = None
            status: int | None = None
            retry_after: float | None = None
            try:
                with connect_sse(
                    client._http, "GET", self.path, headers=resume.headers(), timeout=timeout
                ) as source:
                    response = source.response
                    if response.status_code != 200:
                        response.read()
                        error = error_from_response(response)
                        if not policy.retryable(error):
                            raise error
                        failure, status, retry_after = error, error.status, error.retry_after
                    elif not is_event_stream(response):
                        msg = f"{self.path}: not an event stream ({response.headers})"
                        raise TokenLedgerError(msg)
                    else:
                        for sse in source.iter_sse():
                            failures = 0
                            data = resume.accept(sse.event, sse.data, sse.id, sse.retry)
                            if data is not None:
                                yield cast(T, data)
            except httpx.TransportError as error:
                if not transport_retryable(error):
                    raise ConnectionFailed(f"{self.path}: {error!r}", attempts=1) from error
                failure = error
            failures += 1
            if self.max_reconnects is not None and failures > self.max_reconnects:
                failed = ConnectionFailed(
                    f"{self.path}: {failures} failed connections in a row", attempts=failures
                )
                raise failed from failure
            delay = resume.reconnect_delay(policy, failures, retry_after)
            resume.reconnects += 1
            client._notify(RetryEvent("GET", self.path, failures, delay, status, failure))
            time.sleep(delay)


__all__ = ["EventStream", "Hold", "LedgerClient"]
