"""The Python client (``clients/python``, ``tokenledger_client``) against a real
``ledger serve`` on PostgreSQL + Redis. Faults are real: a TCP proxy between
the client and the service loses answers, refuses connections or cuts
streams; another between the service and PostgreSQL makes it answer 503."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import tokenledger_client as tl
from tokenledger_client import AsyncLedgerClient, LedgerClient, RetryEvent, RetryPolicy
from tokenledger_client import operations as ops

from tests.helpers.processes import serving_ledgers
from tests.helpers.proxy import TcpProxy, tcp_proxy
from tests.helpers.servers import ADMIN_KEY, fresh_postgres_database, fresh_redis_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(backoff=0.05, max_backoff=0.5)
"""Quick retries, so that a test waits on its fault, not on the backoff."""
DEADLINE = 15.0


@dataclass(frozen=True)
class Ledger:
    """A running ``ledger serve``: its URL, and the URL of a proxy in front of it."""

    url: str
    proxied_url: str
    proxy: TcpProxy


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with fresh_postgres_database("ledger_client") as db_url, fresh_redis_database() as redis_url:
        settings = {
            "LEDGER_DATABASE_URL": db_url,
            "LEDGER_REDIS_URL": redis_url,
            "LEDGER_ADMIN_API_KEY": ADMIN_KEY,
            "LEDGER_SSE_PING_SECONDS": "1",
        }
        with serving_ledgers(settings, tmp_path_factory.mktemp("serve")) as (served,):
            port = urlsplit(served.url).port
            assert port is not None
            with tcp_proxy("127.0.0.1", port) as proxy:
                yield Ledger(served.url, f"http://127.0.0.1:{proxy.port}", proxy)


@pytest.fixture
def direct(ledger: Ledger) -> Iterator[LedgerClient]:
    """A client that does not go through the proxy (to write and check)."""
    with LedgerClient(ledger.url, ADMIN_KEY) as client:
        yield client


@pytest.fixture
def proxy(ledger: Ledger) -> Iterator[TcpProxy]:
    """The proxy in front of the service, passing again after the test."""
    yield ledger.proxy
    ledger.proxy.set_mode("pass")


def new_account() -> str:
    return f"client-{uuid.uuid4().hex[:12]}"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Polls ``condition`` until it holds (``AssertionError`` after DEADLINE)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def entries_of(client: LedgerClient, account: str) -> list[tl.Entry]:
    return list(client.iter_entries(account))


# --- retries -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["single write", "batch"])
def test_a_write_whose_answer_is_lost_is_retried_with_its_key_and_recorded_once(
    kind: str, ledger: Ledger, proxy: TcpProxy, direct: LedgerClient
) -> None:
    account = new_account()
    direct.purchase(account, 100)
    events: list[RetryEvent] = []
    with LedgerClient(ledger.proxied_url, ADMIN_KEY, retry=FAST, on_retry=events.append) as client:
        client.balance(account)  # a keep-alive connection through the proxy
        proxy.set_mode("lose-answers")  # the next request arrives; its answer does not

        def cut_once_recorded() -> None:
            wait_until(lambda: len(direct.entries(account)["entries"]) == 2, "the consumption")
            proxy.set_mode("pass")  # resets the connection that waits for its answer

        cutter = threading.Thread(target=cut_once_recorded)
        cutter.start()
        try:
            if kind == "batch":
                (answer,) = client.batch([ops.consume(account, 30, model="gpt-4o")])
                assert answer["status"] == 201
                replayed, entry = answer.get("idempotent_replayed"), answer["entry"]
            else:
                result = client.consume(account, 30, model="gpt-4o")
                replayed, entry = result.get("idempotent_replayed"), result["entry"]
        finally:
            cutter.join()

    assert replayed is True, "the retry got the first answer again"
    assert len(events) == 1 and isinstance(events[0].error, httpx.TransportError)
    if kind == "single write":
        assert events[0].idempotency_key == entry["idempotency_key"]
    consumptions = [e for e in entries_of(direct, account) if e["type"] == "consumption"]
    assert [(e["amount"], e["id"]) for e in consumptions] == [(30, entry["id"])]
    assert direct.balance(account)["available"] == 70


def test_a_refused_connection_is_retried_and_the_write_lands_once(
    ledger: Ledger, proxy: TcpProxy, direct: LedgerClient
) -> None:
    account = new_account()
    events: list[RetryEvent] = []

    def reopen(event: RetryEvent) -> None:
        events.append(event)
        proxy.set_mode("pass")

    async def purchase() -> tl.WriteResult:
        async with AsyncLedgerClient(
            ledger.proxied_url, ADMIN_KEY, retry=FAST, on_retry=reopen
        ) as client:
            return await client.purchase(account, 500, payment_reference="pi_1")

    proxy.set_mode("refuse")
    result = asyncio.run(purchase())

    assert [e.attempt for e in events] == [1]
    assert isinstance(events[0].error, httpx.TransportError) and events[0].status is None
    assert result["entry"]["idempotency_key"] == events[0].idempotency_key
    assert [e["type"] for e in entries_of(direct, account)] == ["purchase"]
    assert result["balance"]["available"] == 500


def test_a_503_is_retried_after_its_retry_after_and_the_write_lands_once(
    tmp_path: Path,
) -> None:
    with (
        fresh_postgres_database("ledger_client") as db_url,
        tcp_proxy("127.0.0.1", 5432) as database,
    ):
        settings = {
            "LEDGER_DATABASE_URL": db_url.replace(":5432/", f":{database.port}/"),
            "LEDGER_ADMIN_API_KEY": ADMIN_KEY,
        }
        with serving_ledgers(settings, tmp_path) as (served,):
            events: list[RetryEvent] = []

            def on_retry(event: RetryEvent) -> None:
                events.append(event)
                database.set_mode("pass")  # PostgreSQL is back after the first 503

            policy = RetryPolicy(max_attempts=12, backoff=0.05, max_backoff=0.5)
            with LedgerClient(served.url, ADMIN_KEY, retry=policy, on_retry=on_retry) as client:
                account = new_account()
                client.purchase(account, 100)
                database.set_mode("refuse")
                result = client.consume(account, 40, idempotency_key=f"{account}-c1")
                entries = entries_of(client, account)

    first = events[0]
    assert (first.status, first.delay) == (503, 1.0), "waited the Retry-After of the 503"
    assert isinstance(first.error, tl.Unavailable) and first.error.retry_after == 1.0
    assert result["entry"]["idempotency_key"] == f"{account}-c1"
    assert [e["type"] for e in entries] == ["purchase", "consumption"]
    assert result["balance"]["available"] == 60


# --- holds -----------------------------------------------------------------------------


def test_a_hold_block_that_ends_normally_captures_what_it_used_and_releases_the_rest(
    direct: LedgerClient,
) -> None:
    account = new_account()
    direct.purchase(account, 1000)

    with direct.hold(account, 200, operation="chat.completion") as hold:
        assert hold.result["balance"]["held"] == 200
        hold.use(30)
        hold.use(20)  # e.g. per streamed chunk
    assert hold.settlement is not None
    assert hold.settlement["entry"]["type"] == "hold_capture"
    assert hold.settlement["entry"]["amount"] == 50
    after = hold.settlement["balance"]
    assert (after["available"], after["held"], after["consumed"]) == (950, 0, 50)

    with direct.hold(account, 100) as whole:  # nothing reported: the whole hold
        pass
    assert whole.settlement is not None and whole.settlement["balance"]["consumed"] == 150

    with direct.hold(account, 100) as unused:
        unused.used = 0
    assert unused.settlement is not None
    assert unused.settlement["entry"]["type"] == "hold_release"
    assert direct.holds(account) == []


def test_a_hold_block_that_raises_releases_the_hold_and_the_exception_propagates(
    direct: LedgerClient,
) -> None:
    account = new_account()
    direct.purchase(account, 1000)

    with (
        pytest.raises(RuntimeError, match="the model timed out"),
        direct.hold(account, 300) as hold,
    ):
        hold.use(10)
        raise RuntimeError("the model timed out")

    assert hold.settlement is not None
    assert hold.settlement["entry"]["type"] == "hold_release"
    after = hold.settlement["balance"]
    assert (after["available"], after["held"], after["consumed"]) == (1000, 0, 0)
    assert direct.holds(account) == []


def test_usage_beyond_the_hold_captures_it_all_and_consumes_the_excess(
    direct: LedgerClient,
) -> None:
    account = new_account()
    direct.purchase(account, 1000)
    with direct.hold(account, 100, operation="chat.completion") as hold:
        hold.used = 130
    assert hold.overage is not None
    assert hold.overage["entry"]["amount"] == 30
    assert hold.overage["entry"]["operation"] == "chat.completion"
    assert hold.overage["balance"]["consumed"] == 130
    assert [e["type"] for e in entries_of(direct, account)] == [
        "purchase",
        "hold",
        "hold_capture",
        "consumption",
    ]


def test_an_async_hold_captures_on_exit_and_releases_when_cancelled_or_failed(
    ledger: Ledger, direct: LedgerClient
) -> None:
    account = new_account()
    direct.purchase(account, 1000)

    async def scenario() -> tuple[tl.AsyncHold, tl.AsyncHold, tl.AsyncHold]:
        async with AsyncLedgerClient(ledger.url, ADMIN_KEY) as client:
            async with client.hold(account, 100, operation="chat") as used:
                used.use(40)
            with pytest.raises(ValueError):
                async with client.hold(account, 100) as failed:
                    raise ValueError("bad prompt")
            started = asyncio.Event()
            cancelled: list[tl.AsyncHold] = []

            async def call_model() -> None:
                async with client.hold(account, 100) as hold:
                    cancelled.append(hold)
                    started.set()
                    await asyncio.Event().wait()  # a model call that never returns

            task = asyncio.create_task(call_model())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return used, failed, cancelled[0]

    used, failed, cancelled = asyncio.run(scenario())
    assert used.settlement is not None and used.settlement["entry"]["amount"] == 40
    for released in (failed, cancelled):
        assert released.settlement is not None
        assert released.settlement["entry"]["type"] == "hold_release"
    balance = direct.balance(account)
    assert (balance["available"], balance["held"], balance["consumed"]) == (960, 0, 40)


# --- streams -------------------------------------------------------------------------


def test_an_entries_stream_resumes_after_a_cut_without_losing_or_repeating_an_entry(
    ledger: Ledger, proxy: TcpProxy, direct: LedgerClient
) -> None:
    account = new_account()
    direct.purchase(account, 1000)
    events: list[RetryEvent] = []

    def reopen_after_a_refusal(event: RetryEvent) -> None:
        events.append(event)
        if len(events) >= 2:  # the cut, then a reconnection refused
            proxy.set_mode("pass")

    with (
        LedgerClient(
            ledger.proxied_url,
            ADMIN_KEY,
            retry=FAST,
            stream_timeout=5,
            on_retry=reopen_after_a_refusal,
        ) as client,
        client.stream_entries(account, after_position=0) as stream,
    ):
        got = [next(stream)]
        for _ in range(2):
            direct.consume(account, 1)
        got += [next(stream), next(stream)]
        proxy.set_mode("refuse")  # cuts the stream's connection
        for _ in range(3):
            direct.consume(account, 1)  # written while the stream is cut
        got += [next(stream) for _ in range(3)]
        direct.consume(account, 1)
        got.append(next(stream))
        assert stream.reconnects == len(events) >= 2
        assert stream.last_event_id == got[-1]["position"]

    assert [e["version"] for e in got] == [1, 2, 3, 4, 5, 6, 7]
    positions = [e["position"] for e in got]
    assert positions == sorted(set(positions))
    assert [e["type"] for e in got] == ["purchase"] + ["consumption"] * 6


def test_a_live_entries_stream_starts_after_the_current_entries_and_sees_new_ones(
    ledger: Ledger, direct: LedgerClient
) -> None:
    account = new_account()
    direct.purchase(account, 1000)
    with direct.stream_entries(account) as stream:
        consumed = direct.consume(account, 7)  # before the first next(): still delivered
        entry = next(stream)
    assert (entry["version"], entry["id"]) == (2, consumed["entry"]["id"])

    async def watch() -> tuple[tl.Entry, tl.WriteResult]:
        async with (
            AsyncLedgerClient(ledger.url, ADMIN_KEY) as client,
            client.stream_entries(account) as entries,
        ):
            written = direct.consume(account, 8)
            return await asyncio.wait_for(anext(entries), DEADLINE), written

    entry, written = asyncio.run(watch())
    assert (entry["version"], entry["id"]) == (3, written["entry"]["id"])


def test_a_balance_stream_resumes_after_a_cut_and_never_goes_back(
    ledger: Ledger, proxy: TcpProxy, direct: LedgerClient
) -> None:
    account = new_account()
    direct.purchase(account, 1000)
    events: list[RetryEvent] = []

    def reopen_after_a_refusal(event: RetryEvent) -> None:
        events.append(event)
        if len(events) >= 2:
            proxy.set_mode("pass")

    async def watch() -> tuple[list[tl.Balance], int]:
        seen: list[tl.Balance] = []
        async with (
            AsyncLedgerClient(
                ledger.proxied_url,
                ADMIN_KEY,
                retry=FAST,
                stream_timeout=5,
                on_retry=reopen_after_a_refusal,
            ) as client,
            client.stream_balance(account) as stream,
        ):
            seen.append(await asyncio.wait_for(anext(stream), DEADLINE))  # the snapshot
            direct.consume(account, 100)
            seen.append(await asyncio.wait_for(anext(stream), DEADLINE))
            proxy.set_mode("refuse")
            direct.consume(account, 100)
            direct.consume(account, 100)
            while seen[-1]["version"] < 4:
                seen.append(await asyncio.wait_for(anext(stream), DEADLINE))
            return seen, stream.reconnects

    seen, reconnects = asyncio.run(watch())
    assert reconnects >= 2
    assert [b["version"] for b in seen[:2]] == [1, 2]
    positions = [b["position"] for b in seen]
    assert positions == sorted(set(positions)), "never an older or repeated balance"
    assert (seen[-1]["version"], seen[-1]["available"]) == (4, 700)


def test_a_stream_token_reads_its_account_live_and_nothing_else(direct: LedgerClient) -> None:
    account, other = new_account(), new_account()
    direct.purchase(account, 10)
    direct.purchase(other, 10)
    token = direct.create_stream_token(account, ttl_seconds=60)
    assert token["account_id"] == account
    with LedgerClient(direct.base_url, token["token"]) as browser:
        with browser.stream_balance(account) as stream:
            assert next(stream)["available"] == 10
        with pytest.raises(tl.Forbidden) as refused:
            browser.balance(other)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        with pytest.raises(tl.Forbidden):
            browser.consume(account, 1)


# --- errors, batches and reads -----------------------------------------------------


def test_refusals_raise_typed_errors_carrying_code_status_and_extras(
    direct: LedgerClient,
) -> None:
    account = new_account()
    direct.purchase(account, 100)

    with pytest.raises(tl.InsufficientBalance) as short:
        direct.consume(account, 10_000, idempotency_key=f"{account}-big")
    assert (short.value.status, short.value.code) == (402, "insufficient-balance")
    assert (short.value.available, short.value.requested) == (100, 10_000)
    assert short.value.idempotency_key == f"{account}-big"

    with pytest.raises(tl.ValidationError) as invalid:
        direct.consume(account, 0)
    assert invalid.value.status == 422
    assert any("amount" in error["loc"] for error in invalid.value.errors)

    with pytest.raises(tl.AccountNotFound):
        direct.balance(new_account())
    with pytest.raises(tl.HoldNotFound):
        direct.capture(account, str(uuid.uuid4()))

    hold = direct.hold(account, 10)
    hold.release()
    with pytest.raises(tl.HoldNotActive):
        direct.capture(account, hold.hold_id)

    direct.consume(account, 1, idempotency_key=f"{account}-k")
    again = direct.consume(account, 1, idempotency_key=f"{account}-k")
    assert again.get("idempotent_replayed") is True
    with pytest.raises(tl.IdempotencyKeyReused):
        direct.consume(account, 2, idempotency_key=f"{account}-k")

    with (
        LedgerClient(direct.base_url, "not-a-key") as stranger,
        pytest.raises(tl.Unauthorized) as unknown,
    ):
        stranger.balance(account)
    assert unknown.value.status == 401


def test_a_batch_answers_each_operation_with_its_result_or_its_typed_error(
    direct: LedgerClient,
) -> None:
    account = new_account()
    results = direct.batch(
        [
            ops.purchase(account, 100, payment_reference="pi_9"),
            ops.consume(account, 30, model="gpt-4o"),
            ops.consume(account, 1000),
            ops.hold(account, 10, ttl_seconds=60),
        ]
    )
    assert [r["status"] for r in results] == [201, 201, 402, 201]
    assert [tl.batch_error(r) is None for r in results] == [True, True, False, True]
    refused = tl.batch_error(results[2])
    assert isinstance(refused, tl.InsufficientBalance) and refused.available == 70
    hold_entry = results[3]["entry"]
    assert hold_entry["hold_id"] is not None
    (captured,) = direct.batch([ops.capture(account, hold_entry["hold_id"], 4)])
    assert captured["balance"]["consumed"] == 34


def test_reads_wait_for_a_position_page_through_entries_and_sum_a_statement(
    direct: LedgerClient,
) -> None:
    account = new_account()
    started = datetime.now(UTC) - timedelta(seconds=1)
    direct.purchase(account, 1000)
    last = direct.consume(account, 1)
    for amount in (2, 3, 4):
        last = direct.consume(account, amount, operation="embed")
    balance = direct.balance(account, min_position=last["entry"]["position"], wait=5)
    assert "stale" not in balance
    assert (balance["version"], balance["available"]) == (5, 990)

    entries = list(direct.iter_entries(account, page_size=2))
    assert [e["version"] for e in entries] == [1, 2, 3, 4, 5]
    page = direct.entries(account, after_version=3, limit=10)
    assert [e["version"] for e in page["entries"]] == [4, 5]
    assert page["next_after_version"] is None
    assert direct.balance(account, as_of_version=1)["available"] == 1000

    statement = direct.statement(account, started, datetime.now(UTC) + timedelta(minutes=1))
    assert statement["totals"]["consumption"] == {"count": 4, "amount": 10}
    assert statement["closing"]["available"] == 990
    (bucket,) = direct.credits(account)
    assert bucket["remaining"] == 990

    refund = direct.refund(account, last["entry"]["id"], reason="bad answer")
    assert (refund["entry"]["type"], refund["entry"]["amount"]) == ("refund", 4)
    limit = direct.set_credit_limit(account, 50)
    assert limit["balance"]["credit_limit"] == 50
    newest = direct.global_entries(after_position=limit["entry"]["position"] - 1, limit=1)
    assert newest["entries"][0]["id"] == limit["entry"]["id"]


def test_the_hold_example_wraps_a_fake_llm_call_in_a_hold(
    ledger: Ledger, direct: LedgerClient
) -> None:
    account = new_account()
    direct.purchase(account, 5_000)
    env = {**os.environ, "LEDGER_URL": ledger.url, "LEDGER_API_KEY": ADMIN_KEY}
    ran = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hold_llm_call.py"), account],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    types = [e["type"] for e in entries_of(direct, account)]
    assert types == ["purchase", "hold", "hold_capture"]
    balance = direct.balance(account)
    assert balance["held"] == 0 and 0 < balance["consumed"] < 2_000
    assert f"{balance['available']:,}" in ran.stdout
