"""Stripe events as purchases (``service.application.payments``): signature
checks, which events record what, validation, and idempotency, on a real
SQLite ledger. Events are signed as Stripe signs them (HMAC-SHA256 of
``"<t>.<body>"``, hex, in ``Stripe-Signature: t=…,v1=…``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.adapters.migrate import migrate
from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Ledger
from service.application.payments import (
    ACTOR,
    TOLERANCE_SECONDS,
    StripeEvent,
    StripePurchase,
    purchase_of,
    receive,
    verify_event,
)
from service.config import Settings
from service.domain.errors import IdempotencyKeyReused, MalformedRequest, ValidationFailed
from service.domain.values import account_uuid

SECRET = "whsec_unit_test_secret_0123456789"
COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"


def header(payload: bytes, t: int | None = None, secret: str = SECRET) -> str:
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def body(event_type: str = COMPLETED, data: Any = None, event_id: str = "evt_1") -> bytes:
    event: dict[str, Any] = {"id": event_id, "object": "event", "type": event_type}
    if data is not None:
        event["data"] = {"object": data}
    return json.dumps(event).encode()


def paid_session(**fields: Any) -> dict[str, Any]:
    session: dict[str, Any] = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "client_reference_id": "user-1",
        "payment_intent": "pi_1",
        "payment_status": "paid",
        "metadata": {"tokens": "5000"},
    }
    session.update(fields)
    return session


def completed(**fields: Any) -> StripeEvent:
    return StripeEvent("evt_1", COMPLETED, paid_session(**fields))


# Signatures -----------------------------------------------------------------


def test_a_correctly_signed_event_is_read_with_its_id_type_and_session() -> None:
    payload = body(data=paid_session())
    event = verify_event(payload, header(payload), SECRET)
    assert (event.id, event.type) == ("evt_1", COMPLETED)
    assert event.data_object == paid_session()


@pytest.mark.parametrize("signature", [None, ""])
def test_a_missing_signature_is_malformed(signature: str | None) -> None:
    with pytest.raises(MalformedRequest, match="missing"):
        verify_event(body(), signature, SECRET)


def test_a_signature_with_another_secret_is_malformed() -> None:
    payload = body()
    with pytest.raises(MalformedRequest, match="does not verify"):
        verify_event(payload, header(payload, secret="whsec_other"), SECRET)


def test_a_signature_older_than_the_tolerance_is_malformed() -> None:
    payload = body()
    stale = int(time.time()) - TOLERANCE_SECONDS - 1
    with pytest.raises(MalformedRequest, match="tolerance"):
        verify_event(payload, header(payload, stale), SECRET)


def test_the_tolerance_is_300_seconds() -> None:
    assert TOLERANCE_SECONDS == 300


def test_one_matching_v1_among_several_suffices() -> None:
    payload = body("customer.created")
    t = int(time.time())
    wrong = header(payload, t, "whsec_rolled").split("v1=")[1]
    right = header(payload, t).split("v1=")[1]
    assert verify_event(payload, f"t={t},v1={wrong},v1={right}", SECRET).id == "evt_1"


def test_the_signature_covers_the_exact_bytes() -> None:
    payload = body()
    respaced = json.dumps(json.loads(payload), indent=1).encode()
    with pytest.raises(MalformedRequest):
        verify_event(respaced, header(payload), SECRET)


@pytest.mark.parametrize(
    "payload",
    [
        b"{",
        b"[]",
        b"null",
        b'{"id": "evt_1", "type": "x", "n": NaN}',
        b'{"type": "x"}',
        b'{"id": 5, "type": "x"}',
        b'{"id": "", "type": "x"}',
        b'{"id": "evt 1", "type": "x"}',
        b'{"id": "evt_1"}',
        b'{"id": "evt_1", "type": ""}',
        b'{"id": "evt_1", "type": "checkout.session.completed"}',
        b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": []}}',
        b"\xff",
    ],
)
def test_a_signed_body_that_is_not_a_stripe_event_is_malformed(payload: bytes) -> None:
    t = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    with pytest.raises(MalformedRequest):
        verify_event(payload, f"t={t},v1={digest}", SECRET)


def test_an_event_id_too_long_for_an_idempotency_key_is_malformed() -> None:
    payload = body(event_id="evt_" + "x" * 245)  # "stripe:" + 249 characters > 255
    with pytest.raises(MalformedRequest, match="id"):
        verify_event(payload, header(payload), SECRET)


def test_an_ignored_event_type_needs_no_session() -> None:
    payload = body("customer.created")
    event = verify_event(payload, header(payload), SECRET)
    assert event.data_object is None
    assert purchase_of(event) is None


# Which events record what ---------------------------------------------------


def test_a_paid_completed_session_is_a_purchase_of_its_tokens_on_its_client_reference() -> None:
    assert purchase_of(completed()) == StripePurchase("evt_1", "user-1", 5000, "pi_1")


def test_an_async_payment_success_is_a_purchase() -> None:
    event = StripeEvent("evt_2", ASYNC_SUCCEEDED, paid_session())
    assert purchase_of(event) == StripePurchase("evt_2", "user-1", 5000, "pi_1")


@pytest.mark.parametrize("status", ["unpaid", "no_payment_required", None])
def test_a_completed_session_not_paid_is_no_purchase(status: str | None) -> None:
    assert purchase_of(completed(payment_status=status)) is None


@pytest.mark.parametrize(
    "event_type",
    ["checkout.session.expired", "checkout.session.async_payment_failed", "charge.succeeded"],
)
def test_other_event_types_are_no_purchase(event_type: str) -> None:
    assert purchase_of(StripeEvent("evt_1", event_type, paid_session())) is None


def test_metadata_account_id_is_the_account_when_client_reference_id_is_absent() -> None:
    event = completed(client_reference_id=None, metadata={"tokens": "7", "account_id": "org:acme"})
    purchase = purchase_of(event)
    assert purchase is not None and (purchase.account_id, purchase.tokens) == ("org:acme", 7)


def test_the_session_id_is_the_payment_reference_without_a_payment_intent() -> None:
    purchase = purchase_of(completed(payment_intent=None))
    assert purchase is not None and purchase.payment_reference == "cs_test_1"


def test_an_expanded_payment_intent_gives_its_id() -> None:
    purchase = purchase_of(completed(payment_intent={"id": "pi_9", "object": "payment_intent"}))
    assert purchase is not None and purchase.payment_reference == "pi_9"


def test_a_session_without_payment_intent_or_id_is_malformed() -> None:
    with pytest.raises(MalformedRequest):
        purchase_of(completed(payment_intent=None, id=None))


@pytest.mark.parametrize(("tokens", "expected"), [("1", 1), ("0005", 5), (str(10**15), 10**15)])
def test_tokens_are_a_string_of_digits_from_1_to_10_to_the_15(tokens: str, expected: int) -> None:
    purchase = purchase_of(completed(metadata={"tokens": tokens}))
    assert purchase is not None and purchase.tokens == expected


@pytest.mark.parametrize(
    "tokens",
    ["0", str(10**15 + 1), "-1", "+1", " 1", "1 ", "1_000", "1.0", "1e3", "٣", "", True, 1.0, None],
)
def test_anything_else_as_tokens_is_a_validation_error_at_metadata_tokens(tokens: Any) -> None:
    with pytest.raises(ValidationFailed) as refused:
        purchase_of(completed(metadata={"tokens": tokens}))
    [error] = refused.value.context["errors"]
    assert error["loc"] == ["body", "data", "object", "metadata", "tokens"]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"client_reference_id": None}, "client_reference_id"),
        ({"client_reference_id": "bad id"}, "client_reference_id"),
        ({"client_reference_id": 42}, "client_reference_id"),
        (
            {"client_reference_id": None, "metadata": {"tokens": "1", "account_id": "-x"}},
            "account_id",
        ),
    ],
)
def test_a_missing_or_invalid_account_id_is_a_validation_error(
    fields: dict[str, Any], loc: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        purchase_of(completed(**fields))
    [error] = refused.value.context["errors"]
    assert error["loc"][-1] == loc


def test_missing_metadata_reports_both_the_account_and_the_tokens() -> None:
    with pytest.raises(ValidationFailed) as refused:
        purchase_of(completed(client_reference_id=None, metadata=None))
    assert [e["loc"][-1] for e in refused.value.context["errors"]] == [
        "client_reference_id",
        "tokens",
    ]


def test_the_key_is_the_event_id_fingerprinted_as_the_equal_purchase_body() -> None:
    purchase = StripePurchase("evt_1", "user-1", 5000, "pi_1")
    expected = IdempotencyRequest.of(
        "stripe:evt_1", "purchase", "user-1", {"amount": 5000, "payment_reference": "pi_1"}
    )
    assert purchase.idempotency == expected


# On a ledger ----------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/l.db")
    migrate(settings)
    app = Ledger(env=settings.eventsourcing_env())
    yield app
    app.close()
    loop = app.committer.loop  # the committer's private loop: stopped, left open
    if loop is not None and not loop.is_running():
        loop.close()


def entry_count(ledger: Ledger, account_id: str) -> int:
    return len(ledger.ledger_recorder.select_entries(account_uuid(account_id), 0, 10**6))


def test_a_purchase_is_recorded_by_stripe_once_per_event(ledger: Ledger) -> None:
    purchase = StripePurchase("evt_1", "user-1", 5000, "pi_1")
    first = ledger.execute_write(purchase.write())
    again = ledger.execute_write(purchase.write())
    assert not first.replayed and again.replayed
    entry = first.body["entry"]
    assert (entry["type"], entry["amount"], entry["actor"]) == ("purchase", 5000, ACTOR)
    assert (entry["idempotency_key"], entry["payment_reference"]) == ("stripe:evt_1", "pi_1")
    assert again.body == first.body
    assert entry_count(ledger, "user-1") == 1


def test_receiving_an_event_records_it_once_and_acknowledges_every_delivery(
    ledger: Ledger,
) -> None:
    payload = body(data=paid_session(), event_id="evt_received")

    async def deliver() -> Any:
        return await receive(ledger, payload, header(payload), SECRET)

    assert asyncio.run(deliver()) == {"received": True}
    assert asyncio.run(deliver()) == {"received": True}
    assert entry_count(ledger, "user-1") == 1


def test_the_same_event_id_with_another_session_is_refused_as_a_reused_key(
    ledger: Ledger,
) -> None:
    ledger.execute_write(StripePurchase("evt_1", "user-1", 5000, "pi_1").write())
    with pytest.raises(IdempotencyKeyReused):
        ledger.execute_write(StripePurchase("evt_1", "user-1", 6000, "pi_1").write())
    assert entry_count(ledger, "user-1") == 1
