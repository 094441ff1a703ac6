"""Balance alerts: the state of an account's ``available`` tokens for one
webhook endpoint, and the message each crossing sends (contract v1.1,
"Webhooks").

``available`` is ``ok`` (at least the endpoint's ``low_balance_threshold``, or
above 0 without one), ``low`` (above 0 and below the threshold) or
``depleted`` (0 or less). An account's first entry sets its state without a
message. Afterwards ``ok → low`` sends ``balance.low``; ``ok → depleted`` and
``low → depleted`` send ``balance.depleted``; ``low → ok`` and
``depleted → ok`` send ``balance.recovered``; ``depleted → low`` sends nothing
and the state stays ``depleted`` until it recovers.

Pure functions of the ordered log: every process, and every replay, decides
the same crossings.
"""

from __future__ import annotations

from typing import Literal

AlertState = Literal["ok", "low", "depleted"]
AlertType = Literal["balance.low", "balance.depleted", "balance.recovered"]

ALERT_TYPES: tuple[AlertType, ...] = ("balance.low", "balance.depleted", "balance.recovered")
ENTRY_CREATED = "entry.created"
EVENT_TYPES: tuple[str, ...] = (ENTRY_CREATED, *ALERT_TYPES)
"""Every event type an endpoint may subscribe to."""


def level(available: int, threshold: int | None) -> AlertState:
    """Where ``available`` tokens stand against ``threshold`` (tokens, ≥ 1, or
    ``None``: no low level)."""
    if available <= 0:
        return "depleted"
    if threshold is not None and available < threshold:
        return "low"
    return "ok"


def cross(
    state: AlertState | None, available: int, threshold: int | None
) -> tuple[AlertState, AlertType | None]:
    """The state after an entry left ``available`` tokens, and the alert that
    crossing sends (``None``: none). ``state`` ``None``: the account's first
    entry (it sets the state, silently)."""
    now = level(available, threshold)
    if state is None or now == state:
        return now, None
    if now == "depleted":
        return now, "balance.depleted"
    if now == "ok":
        return now, "balance.recovered"
    if state == "depleted":  # depleted → low: stays depleted until it recovers
        return "depleted", None
    return now, "balance.low"
