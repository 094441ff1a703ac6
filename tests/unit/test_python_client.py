"""Unit tests of the Python client's own logic: retry delays, error classes,
stream resumption bookkeeping, hold settlement plans, operation objects and
the parity of the sync and async clients. The client against a real
``ledger serve`` is in tests/e2e/test_python_client.py."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import tokenledger_client as tl
from tokenledger_client import operations as ops
from tokenledger_client._core import (
    Resume,
    balance_call,
    batch_call,
    derived_key,
    parse_write,
    write_call,
)
from tokenledger_client._hold import HoldBase
from tokenledger_client.errors import error_from_response, parse_retry_after


def problem_response(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/problem+json", **headers},
    )


# --- retry policy ----------------------------------------------------------


def test_backoff_doubles_from_the_base_within_jitter_and_stops_at_the_cap() -> None:
    policy = tl.RetryPolicy(backoff=0.1, max_backoff=0.5)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (10, 0.5)]:
        delays = [policy.delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), failures


def test_a_retry_after_is_obeyed_up_to_its_cap() -> None:
    policy = tl.RetryPolicy(max_retry_after=10)
    assert policy.delay(1, retry_after=2.0) == 2.0
    assert policy.delay(3, retry_after=0.0) == 0.0
    assert policy.delay(1, retry_after=3600.0) == 10.0


def test_only_gateway_errors_unavailable_and_in_flight_keys_are_retried() -> None:
    policy = tl.RetryPolicy()
    for status, code, retried in [
        (503, "unavailable", True),
        (502, None, True),
        (504, None, True),
        (409, "idempotency-key-in-flight", True),
        (409, "hold-not-active", False),
        (402, "insufficient-balance", False),
        (500, "internal-error", False),
        (422, "validation-error", False),
    ]:
        error = tl.errors.error_from_problem(status, {"code": code} if code else {})
        assert policy.retryable(error) is retried, (status, code)


def test_a_policy_without_attempts_or_with_negative_delays_is_refused() -> None:
    with pytest.raises(ValueError):
        tl.RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        tl.RetryPolicy(backoff=-1)


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= (parse_retry_after(later) or 0) <= 31


# --- errors ----------------------------------------------------------------


def test_problems_become_the_exception_class_of_their_code_with_their_extras() -> None:
    error = error_from_response(
        problem_response(
            402,
            {
                "type": "/problems/insufficient-balance",
                "title": "Insufficient balance",
                "status": 402,
                "detail": "available 5, requested 9",
                "code": "insufficient-balance",
                "available": 5,
                "requested": 9,
            },
        )
    )
    assert isinstance(error, tl.InsufficientBalance)
    assert (error.status, error.code, error.available, error.requested) == (
        402,
        "insufficient-balance",
        5,
        9,
    )
    assert error.detail == "available 5, requested 9"
    assert "402 insufficient-balance" in str(error)

    invalid = error_from_response(
        problem_response(
            422, {"code": "validation-error", "errors": [{"loc": ["body", "amount"], "msg": "x"}]}
        )
    )
    assert isinstance(invalid, tl.ValidationError) and isinstance(invalid, tl.Unprocessable)
    assert invalid.errors == [{"loc": ["body", "amount"], "msg": "x"}]

    for code, cls, parent in [
        ("account-not-found", tl.AccountNotFound, tl.NotFound),
        ("hold-not-found", tl.HoldNotFound, tl.NotFound),
        ("entry-not-found", tl.EntryNotFound, tl.NotFound),
        ("hold-not-active", tl.HoldNotActive, tl.Conflict),
        ("refund-exceeds-consumption", tl.RefundExceedsConsumption, tl.Conflict),
        ("idempotency-key-in-flight", tl.IdempotencyKeyInFlight, tl.Conflict),
        ("idempotency-key-reused", tl.IdempotencyKeyReused, tl.Unprocessable),
        ("balance-limit-exceeded", tl.BalanceLimitExceeded, tl.Unprocessable),
        ("unauthorized", tl.Unauthorized, tl.ApiError),
        ("forbidden", tl.Forbidden, tl.ApiError),
        ("malformed-request", tl.MalformedRequest, tl.ApiError),
        ("payload-too-large", tl.PayloadTooLarge, tl.ApiError),
    ]:
        raised = tl.errors.error_from_problem(400, {"code": code})
        assert type(raised) is cls and isinstance(raised, parent), code
        assert isinstance(raised, tl.TokenLedgerError)


def test_a_503_carries_its_retry_after_and_an_unknown_code_falls_back_to_its_status() -> None:
    down = error_from_response(
        problem_response(503, {"code": "unavailable"}, **{"retry-after": "1"})
    )
    assert isinstance(down, tl.Unavailable) and isinstance(down, tl.ServerError)
    assert down.retry_after == 1.0
    odd = tl.errors.error_from_problem(404, {"code": "something-new"})
    assert type(odd) is tl.NotFound and odd.code == "something-new"
    teapot = tl.errors.error_from_problem(418, {"code": "teapot"})
    assert type(teapot) is tl.ApiError


def test_a_body_that_is_not_a_problem_still_gives_an_error_with_its_status() -> None:
    error = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(error, tl.ServerError)
    assert (error.status, error.code) == (502, "http-502")
    assert "bad gateway" in error.detail


def test_batch_error_is_none_for_a_success_and_the_typed_error_for_a_refusal() -> None:
    assert tl.batch_error({"status": 201}) is None
    refused = tl.batch_error(
        {"status": 402, "problem": {"code": "insufficient-balance", "available": 0}}  # type: ignore[typeddict-item]
    )
    assert isinstance(refused, tl.InsufficientBalance) and refused.available == 0


# --- writes and operations -------------------------------------------------


def test_operations_leave_out_unset_fields_and_write_times_in_utc_with_a_z() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert ops.purchase("u-1", 10, expires_at=at) == {
        "op": "purchase",
        "account_id": "u-1",
        "amount": 10,
        "expires_at": "2026-01-02T01:04:05Z",
    }
    assert ops.capture("u-1", "h-1", idempotency_key="k") == {
        "op": "capture",
        "account_id": "u-1",
        "hold_id": "h-1",
        "idempotency_key": "k",
    }
    with pytest.raises(ValueError):
        ops.rfc3339(datetime(2026, 1, 1))  # naive: no time zone


def test_a_single_write_is_its_operation_posted_to_its_path_with_a_key() -> None:
    call = write_call(ops.refund("u-1", "e-9", 5, reason="bad answer"))
    assert (call.method, call.path) == ("POST", "/v1/accounts/u-1/consumptions/e-9/refunds")
    assert call.json == {"amount": 5, "reason": "bad answer"}
    assert call.idempotency_key and len(call.idempotency_key) == 36
    assert write_call(ops.consume("u-1", 1)).idempotency_key != call.idempotency_key
    given = write_call(ops.release("u-1", "h-1", idempotency_key="mine"))
    assert (given.path, given.json, given.idempotency_key) == (
        "/v1/accounts/u-1/holds/h-1/release",
        {},
        "mine",
    )
    assert write_call(ops.consume("a/../b", 1)).path == "/v1/accounts/a%2F..%2Fb/consumptions"


def test_a_batch_gives_each_operation_without_a_key_its_own_and_leaves_the_input_alone() -> None:
    operations = [ops.consume("u-1", 1), ops.purchase("u-2", 5, idempotency_key="pay-1")]
    call = batch_call(operations, keys=True)
    assert call.json is not None
    sent = call.json["operations"]
    assert sent[1]["idempotency_key"] == "pay-1"
    assert len(sent[0]["idempotency_key"]) == 36
    assert "idempotency_key" not in operations[0]
    assert "idempotency_key" not in batch_call(operations, keys=False).json["operations"][0]  # type: ignore[index]


def test_a_replayed_answer_is_marked_and_a_first_answer_is_not() -> None:
    body = {"entry": {"position": 1}, "balance": {"available": 1}}
    replayed = httpx.Response(201, json=body, headers={"Idempotent-Replayed": "true"})
    assert parse_write(replayed).get("idempotent_replayed") is True
    assert "idempotent_replayed" not in parse_write(httpx.Response(201, json=body))


def test_a_balance_read_that_waits_gets_that_much_more_read_timeout() -> None:
    call = balance_call("u-1", min_position=7, wait=4, as_of=None, as_of_version=None)
    assert call.params == {"min_position": 7, "wait": 4}
    assert call.timeout(httpx.Timeout(10.0)).read == 14.0
    plain = balance_call("u-1", min_position=None, wait=None, as_of=None, as_of_version=None)
    assert plain.params is None and plain.timeout(httpx.Timeout(10.0)).read == 10.0


def test_keys_derived_for_a_holds_settlement_stay_within_255_characters() -> None:
    assert derived_key("abc", "capture") == "abc:capture"
    long = derived_key("k" * 255, "capture")
    assert len(long) <= 255 and long.endswith(":capture")
    assert long == derived_key("k" * 255, "capture")


# --- streams ---------------------------------------------------------------


def test_a_stream_delivers_its_event_in_order_and_skips_what_it_already_delivered() -> None:
    resume = Resume("entry")
    assert resume.headers() == {}
    assert resume.accept("message", "", "", 3000) is None  # the retry: frame
    assert resume.retry_ms == 3000
    assert resume.accept("entry", '{"version": 1}', "10", None) == {"version": 1}
    assert resume.accept("entry", '{"version": 2}', "12", None) == {"version": 2}
    assert resume.headers() == {"Last-Event-ID": "12"}
    # After a reconnection, frames at or before position 12 are not delivered again.
    assert resume.accept("entry", '{"version": 1}', "10", None) is None
    assert resume.accept("entry", '{"version": 2}', "12", None) is None
    assert resume.accept("balance", '{"x": 1}', "13", None) is None  # another event type
    assert resume.accept("entry", '{"version": 3}', "15", None) == {"version": 3}
    assert (resume.last_event_id, resume.skipped) == (15, 2)


def test_a_stream_started_after_a_position_sends_it_and_waits_at_most_its_retry() -> None:
    resume = Resume("balance", last_event_id=41, retry_ms=500)
    assert resume.headers() == {"Last-Event-ID": "41"}
    policy = tl.RetryPolicy(backoff=10, max_backoff=60)
    assert resume.reconnect_delay(policy, 5, None) == 0.5
    assert resume.reconnect_delay(policy, 1, retry_after=5.0) == 5.0


# --- holds ------------------------------------------------------------------


def hold_of(amount: int) -> HoldBase:
    entry = {"amount": amount, "hold_id": "h-1", "operation": "chat"}
    return HoldBase("u-1", {"entry": entry, "balance": {}}, "key-1")  # type: ignore[typeddict-item]


def test_a_hold_captures_all_when_told_nothing_and_releases_when_nothing_was_used() -> None:
    hold = hold_of(100)
    assert hold._plan() == tl._hold.Settlement("capture")
    hold.used = 0
    assert hold._plan().action == "release"


def test_a_hold_captures_what_was_used_and_the_excess_over_it_is_an_overage() -> None:
    hold = hold_of(100)
    hold.use(30)
    hold.use(20)
    assert hold.used == 50
    assert (hold._plan().action, hold._plan().amount, hold._plan().overage) == ("capture", 50, 0)
    hold.used = 130
    assert (hold._plan().amount, hold._plan().overage) == (100, 30)


def test_a_hold_refuses_negative_or_non_integer_usage() -> None:
    hold = hold_of(100)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            hold.use(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            hold.used = bad  # type: ignore[assignment]


# --- the two clients ------------------------------------------------------------


def public_methods(cls: type) -> dict[str, Callable[..., object]]:
    return {
        name: member
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


def test_the_async_client_has_every_method_of_the_sync_one_with_the_same_arguments() -> None:
    sync, aio = public_methods(tl.LedgerClient), public_methods(tl.AsyncLedgerClient)
    assert set(sync) - {"close"} == set(aio) - {"aclose"}
    for name, method in sync.items():
        if name == "close":
            continue
        parameters = inspect.signature(method).parameters
        assert list(parameters) == list(inspect.signature(aio[name]).parameters), name
        assert inspect.iscoroutinefunction(aio[name]) or name in (
            "hold",
            "iter_entries",
            "stream_balance",
            "stream_entries",
        ), name


def test_the_client_package_needs_only_httpx_and_httpx_sse() -> None:
    import ast
    import sys
    from pathlib import Path

    package = Path(tl.__file__).parent
    imported: set[str] = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"tokenledger_client", "__future__"}
    assert third_party == {"httpx", "httpx_sse"}
