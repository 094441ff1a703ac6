"""``POST /v1/webhooks/stripe``: payments from Stripe (contract v1.1).

Authenticated by Stripe's signature, not an API key. The route reads the raw
body (the signature covers its exact bytes) and the ``Stripe-Signature``
header, and leaves the event to :mod:`service.application.payments`; it is off
(404 ``not-found``, as an unknown route) while ``LEDGER_STRIPE_WEBHOOK_SECRET``
is unset or empty.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import ConfigDict, with_config

from service.api.deps import RuntimeDep
from service.api.responses import FastJSONResponse
from service.api.schemas import problems
from service.application.payments import TOLERANCE_SECONDS, StripeReceipt, receive
from service.domain.errors import NotFound

router = APIRouter(tags=["webhooks"])

with_config(ConfigDict(use_attribute_docstrings=True))(StripeReceipt)

DESCRIPTION = f"""\
Takes Stripe's webhook calls (https://docs.stripe.com/webhooks). No API key:
the `Stripe-Signature` header (`t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" keyed with LEDGER_STRIPE_WEBHOOK_SECRET>`, possibly several
`v1` values while Stripe rolls a secret; one match suffices) authenticates the
exact body; a signature more than {TOLERANCE_SECONDS} seconds old is refused.
Off (404 `not-found`, as any unknown route) while
`LEDGER_STRIPE_WEBHOOK_SECRET` is unset or empty.

- `checkout.session.completed` with `payment_status` `"paid"`, and
  `checkout.session.async_payment_succeeded`, record a purchase on the account
  `client_reference_id` (else `metadata.account_id`) of `metadata.tokens`
  tokens (a string of decimal digits such as `"5000"`, or an integer;
  1..10^15), with `payment_reference` = the session's `payment_intent` (else
  its `id`), actor `stripe`, empty `metadata` and idempotency key
  `stripe:<event id>`, fingerprinted as the purchase body
  `{{"amount", "payment_reference"}}`: a redelivered event records nothing new.
- Every other event type, and a completed session whose `payment_status` is
  not `"paid"` (`"unpaid"`: the async payment follows;
  `"no_payment_required"`), is acknowledged and records nothing.
- A Stripe event is a JSON object with a string `id` and `type` (and
  `data.object`, the checkout session, for the two types above).
"""

NOTES = {
    400: "`malformed-request`: the `Stripe-Signature` header is missing, matches no"
    f" `v1` signature of the body or is more than {TOLERANCE_SECONDS} s old, or the body"
    " is not a Stripe event (nothing is recorded)",
    404: "`not-found`: the route is off (`LEDGER_STRIPE_WEBHOOK_SECRET` unset or empty)",
    413: "`payload-too-large`: the body is over 64 KiB",
    422: "`validation-error`: a paid session without a valid account id"
    " (`client_reference_id`, else `metadata.account_id`) or without `metadata.tokens`"
    " a whole number of tokens 1..10^15 (extra `errors`: `[{loc, msg}]`, `loc` under"
    " `[body, data, object]`; Stripe retries); or what a purchase answers:"
    " `idempotency-key-reused`, `balance-limit-exceeded`",
}

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Stripe event (https://docs.stripe.com/api/events/object)",
    "required": ["id", "type"],
    "properties": {
        "id": {"type": "string", "description": "`evt_…`"},
        "type": {"type": "string", "description": "e.g. `checkout.session.completed`"},
        "data": {
            "type": "object",
            "properties": {
                "object": {
                    "type": "object",
                    "description": "The checkout session"
                    " (https://docs.stripe.com/api/checkout/sessions/object)",
                }
            },
        },
    },
}


@router.post(
    "/v1/webhooks/stripe",
    response_model=StripeReceipt,
    responses=problems(400, 404, 413, 422, 503, notes=NOTES),
    summary="Receive a Stripe event: paid checkout sessions become purchases (signed)",
    description=DESCRIPTION,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EVENT_SCHEMA}},
        }
    },
)
async def receive_stripe_event(
    request: Request,
    runtime: RuntimeDep,
    stripe_signature: Annotated[
        str | None,
        Header(
            alias="Stripe-Signature",
            description="`t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=…]`"
            " (https://docs.stripe.com/webhooks#verify-events); missing → 400",
        ),
    ] = None,
) -> FastJSONResponse:
    """Answers 200 ``{"received": true}`` once the event is recorded, replayed
    or ignored (see :func:`service.application.payments.receive`)."""
    secret = runtime.settings.stripe_webhook_secret
    key = secret.get_secret_value().strip() if secret is not None else ""
    if not key:  # unset, or set empty (as compose files do for optional values)
        raise NotFound("no such resource")
    payload = await request.body()
    receipt: StripeReceipt = await receive(runtime.ledger, payload, stripe_signature, key)
    return FastJSONResponse(receipt)
