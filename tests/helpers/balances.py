"""Balance fields the tests compare between aggregate, reference model and view."""

from __future__ import annotations

COUNTERS = (
    "available",
    "held",
    "credit_limit",
    "purchased",
    "granted",
    "consumed",
    "refunded",
    "deducted",
    "expired",
)
"""The contract Balance's token counters (``credit_limit`` included)."""

FIELDS = (*COUNTERS, "version")
"""Counters plus the account version."""
