"""Payments from Stripe: webhook events as purchases (contract v1.1, ``API.md``
"Webhooks", "In: payments from Stripe").

Stripe calls ``POST /v1/webhooks/stripe`` with an event (a JSON object) and a
``Stripe-Signature`` header, ``t=<unix seconds>,v1=<hex>[,v1=<hex>…]``: each
``v1`` is the hex HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the
endpoint's signing secret (``whsec_…``), several of them while Stripe rolls a
secret; one match suffices (https://docs.stripe.com/webhooks#verify-events,
https://docs.stripe.com/webhooks/signature). The ``stripe`` library checks it
(:func:`stripe.WebhookSignature.verify_header`, the check
``stripe.Webhook.construct_event`` makes), over the exact bytes received and
with a tolerance of :data:`TOLERANCE_SECONDS`; the event is then read here
(``construct_event`` itself fails with an ``AttributeError`` on a signed body
that is JSON but not an object).

Two events record a purchase:

- ``checkout.session.completed`` whose session has ``payment_status`` ``"paid"``
  (``"unpaid"`` and ``"no_payment_required"`` record nothing: the former is
  followed by ``checkout.session.async_payment_succeeded`` once paid);
- ``checkout.session.async_payment_succeeded``.

The purchase goes to the account ``client_reference_id`` (else
``metadata.account_id``) of the session (``data.object``), for
``metadata.tokens`` tokens (Stripe metadata values are strings: ``"5000"``),
with ``payment_reference`` the session's ``payment_intent`` (else its ``id``),
actor :data:`ACTOR`, no ``metadata``, and idempotency key ``stripe:<event id>``
fingerprinted as the purchase ``{"amount": tokens, "payment_reference": …}``
would be: a redelivered event replays the first answer and records nothing new
(and ``POST /v1/accounts/{id}/purchases`` with that key and body is the same
request). Every other event type is acknowledged and ignored
(https://docs.stripe.com/checkout/fulfillment).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from stripe import SignatureVerificationError, WebhookSignature
from typing_extensions import TypedDict

from service.application import commands
from service.application.idempotency import IdempotencyRequest
from service.application.ledger import Ledger, Write
from service.domain.errors import MalformedRequest, ValidationFailed
from service.domain.values import ACCOUNT_ID_PATTERN, MAX_AMOUNT, is_valid_account_id

__all__ = [
    "ACTOR",
    "TOLERANCE_SECONDS",
    "StripeEvent",
    "StripePurchase",
    "StripeReceipt",
    "purchase_of",
    "receive",
    "verify_event",
]

log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300
"""Oldest signature timestamp accepted, in seconds before now (Stripe's
default: a captured request cannot be replayed later)."""
ACTOR = "stripe"
"""The ``actor`` of the entries Stripe's events record."""
KEY_PREFIX = "stripe:"
"""An event's idempotency key is this prefix and the event id."""
COMPLETED = "checkout.session.completed"
ASYNC_PAYMENT_SUCCEEDED = "checkout.session.async_payment_succeeded"
PAID = "paid"
"""The ``payment_status`` of a completed session whose payment is done."""

MAX_KEY = 255
"""Longest idempotency key (contract "Idempotency": 1-255 printable ASCII)."""
_EVENT_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY - len(KEY_PREFIX)}}}")
"""An event id (``evt_…``) that makes a valid idempotency key."""
_REFERENCE = re.compile(r"[\x21-\x7e]{1,255}")
"""A Stripe object id usable as ``payment_reference`` (1-255 characters)."""
_TOKENS = re.compile(r"[0-9]{1,32}")
"""``metadata.tokens``: decimal digits (no sign, space, ``_`` or fraction)."""

SESSION = ["body", "data", "object"]
"""Where a validation error's ``loc`` points: the event's checkout session."""


class StripeReceipt(TypedDict):
    """The answer to every event Stripe delivered and the ledger accepted,
    whether it recorded a purchase, replayed one or ignored the event."""

    received: Literal[True]


@dataclass(frozen=True)
class StripeEvent:
    """A verified event: its ``id`` (``evt_…``), ``type`` (e.g.
    ``checkout.session.completed``) and ``data.object`` (the checkout
    session; ``None`` when absent, as on types the ledger ignores)."""

    id: str
    type: str
    data_object: dict[str, Any] | None


@dataclass(frozen=True)
class StripePurchase:
    """The purchase an event records: ``tokens`` on ``account_id``."""

    event_id: str
    account_id: str
    tokens: int
    payment_reference: str

    @property
    def idempotency(self) -> IdempotencyRequest:
        """Key ``stripe:<event id>``, fingerprinted as the purchase with body
        ``{"amount": tokens, "payment_reference": …}``."""
        fields = {"amount": self.tokens, "payment_reference": self.payment_reference}
        key = KEY_PREFIX + self.event_id
        return IdempotencyRequest.of(key, "purchase", self.account_id, fields)

    def write(self) -> Write:
        """The purchase as a :class:`Write` for the ledger."""
        return commands.purchase(
            self.account_id,
            self.tokens,
            actor=ACTOR,
            idem=self.idempotency,
            payment_reference=self.payment_reference,
        )


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def verify_event(payload: bytes, signature: str | None, secret: str) -> StripeEvent:
    """The event in ``payload`` (the raw request body), once ``signature``
    (the ``Stripe-Signature`` header) is found to sign it with ``secret``
    less than :data:`TOLERANCE_SECONDS` ago.

    Raises:
        MalformedRequest: no signature, none that matches, one older than
            :data:`TOLERANCE_SECONDS`, or a body that is not a Stripe event (a
            JSON object with a string ``id`` and ``type``, and for the types
            that record a purchase a ``data.object`` object) (400).
    """
    if not signature:
        raise MalformedRequest("the Stripe-Signature header is missing")
    try:
        WebhookSignature.verify_header(payload, signature, secret, TOLERANCE_SECONDS)
    except SignatureVerificationError as error:
        raise MalformedRequest(f"the Stripe-Signature header does not verify: {error}") from None
    except ValueError:  # UnicodeDecodeError: Stripe signs text
        raise MalformedRequest("the body is not UTF-8 text") from None
    try:
        event = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise MalformedRequest("the body is not valid JSON") from None
    if not isinstance(event, dict):
        raise MalformedRequest("the body is not a Stripe event: not a JSON object")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or _EVENT_ID.fullmatch(event_id) is None:
        raise MalformedRequest("the body is not a Stripe event: no valid `id`")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedRequest("the body is not a Stripe event: no `type`")
    data = event.get("data")
    session = data.get("object") if isinstance(data, dict) else None
    if event_type in (COMPLETED, ASYNC_PAYMENT_SUCCEEDED) and not isinstance(session, dict):
        raise MalformedRequest(f"the body is not a Stripe event: {event_type} without data.object")
    return StripeEvent(event_id, event_type, session if isinstance(session, dict) else None)


def purchase_of(event: StripeEvent) -> StripePurchase | None:
    """The purchase ``event`` records, or ``None`` when it records none (an
    ignored type, or a completed session not paid yet).

    Raises:
        ValidationFailed: a paid session without a valid account id or without
            ``metadata.tokens`` a whole number of tokens, 1 to 10^15 (422;
            ``errors`` names each, under ``["body", "data", "object", …]``).
        MalformedRequest: a paid session with neither ``payment_intent`` nor
            ``id`` a Stripe id (400: not a checkout session).
    """
    session = event.data_object
    if session is None or event.type not in (COMPLETED, ASYNC_PAYMENT_SUCCEEDED):
        return None
    if event.type == COMPLETED and session.get("payment_status") != PAID:
        return None
    metadata = session.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    errors: list[dict[str, Any]] = []
    account_id = _account_id(session, metadata, errors)
    tokens = _tokens(metadata.get("tokens"), errors)
    if errors:
        raise ValidationFailed(errors)
    assert account_id is not None and tokens is not None
    return StripePurchase(event.id, account_id, tokens, _payment_reference(session))


def _account_id(
    session: dict[str, Any], metadata: dict[str, Any], errors: list[dict[str, Any]]
) -> str | None:
    """``client_reference_id``, else ``metadata.account_id``; adds to ``errors``
    and answers ``None`` when the one used is missing or invalid."""
    pattern = ACCOUNT_ID_PATTERN.pattern
    if session.get("client_reference_id") is not None:
        value, loc = session["client_reference_id"], [*SESSION, "client_reference_id"]
    elif metadata.get("account_id") is not None:
        value, loc = metadata["account_id"], [*SESSION, "metadata", "account_id"]
    else:
        msg = f"a paid session needs client_reference_id or metadata.account_id matching {pattern}"
        errors.append({"loc": [*SESSION, "client_reference_id"], "msg": msg})
        return None
    if isinstance(value, str) and is_valid_account_id(value):
        return value
    errors.append({"loc": loc, "msg": f"must be an account id matching {pattern}"})
    return None


def _tokens(value: Any, errors: list[dict[str, Any]]) -> int | None:
    """``metadata.tokens`` as tokens: a string of decimal digits (as Stripe
    metadata holds it) or a JSON integer, 1 to 10^15; adds to ``errors`` and
    answers ``None`` otherwise."""
    tokens: int | None = None
    if isinstance(value, str) and _TOKENS.fullmatch(value):
        tokens = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        tokens = value
    if tokens is not None and 1 <= tokens <= MAX_AMOUNT:
        return tokens
    errors.append(
        {
            "loc": [*SESSION, "metadata", "tokens"],
            "msg": 'must be a whole number of tokens from 1 to 10^15, e.g. "5000"',
        }
    )
    return None


def _payment_reference(session: dict[str, Any]) -> str:
    """The session's ``payment_intent`` (its id when expanded), else its ``id``.

    Raises:
        MalformedRequest: neither is a Stripe id (400).
    """
    intent = session.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    for reference in (intent, session.get("id")):
        if isinstance(reference, str) and _REFERENCE.fullmatch(reference):
            return reference
    raise MalformedRequest(
        "the body is not a Stripe event: the checkout session has no `payment_intent` or `id`"
    )


async def receive(
    ledger: Ledger, payload: bytes, signature: str | None, secret: str
) -> StripeReceipt:
    """Verifies the event Stripe delivered (``payload``, the raw body, and
    ``signature``, its ``Stripe-Signature`` header, against ``secret``) and
    records the purchase it stands for, if any, once.

    Raises:
        MalformedRequest: see :func:`verify_event` (400).
        ValidationFailed: see :func:`purchase_of` (422).
        LedgerError: what the ledger answers a purchase (e.g. 422
            ``balance-limit-exceeded`` or ``idempotency-key-reused``, 503
            ``unavailable``).
    """
    event = verify_event(payload, signature, secret)
    purchase = purchase_of(event)
    if purchase is None:
        log.debug("stripe event %s (%s): nothing to record", event.id, event.type)
        return {"received": True}
    result = await ledger.submit_write(purchase.write())
    if not result.replayed:
        log.info(
            "stripe event %s: %d tokens purchased on %s (%s)",
            event.id,
            purchase.tokens,
            purchase.account_id,
            purchase.payment_reference,
        )
    return {"received": True}
