"""What a hold does when its ``with`` block ends, shared by :class:`Hold` and
:class:`AsyncHold`."""

from __future__ import annotations

from dataclasses import dataclass

from tokenledger_client._core import derived_key
from tokenledger_client.types import Entry, WriteResult


@dataclass(frozen=True)
class Settlement:
    """How a hold is settled: ``release`` it, or ``capture`` ``amount`` tokens
    (``None``: all), then consume ``overage`` tokens beyond it (0: none)."""

    action: str
    amount: int | None = None
    overage: int = 0


class HoldBase:
    """A hold's state: the write that created it and what the caller used.

    Attributes:
        account_id: the account holding the tokens.
        result: the hold's :class:`WriteResult` (its ``entry`` is of type
            ``hold``; its ``balance`` shows the tokens ``held``).
        idempotency_key: the hold's key; its capture, release and overage
            consumption use keys derived from it (``<key>:capture``, …), so
            settling again after a failure never records twice.
        settlement: the capture's or release's result once settled, else ``None``.
        overage: the result of the consumption of the tokens used beyond the
            hold, when there were any.
    """

    def __init__(self, account_id: str, result: WriteResult, idempotency_key: str) -> None:
        self.account_id = account_id
        self.result = result
        self.idempotency_key = idempotency_key
        self.settlement: WriteResult | None = None
        self.overage: WriteResult | None = None
        self._used: int | None = None

    @property
    def entry(self) -> Entry:
        """The ``hold`` entry."""
        return self.result["entry"]

    @property
    def hold_id(self) -> str:
        """The hold's id (a UUID), named by its capture or release."""
        hold_id = self.entry["hold_id"]
        assert hold_id is not None, "a hold entry names its hold"
        return hold_id

    @property
    def amount(self) -> int:
        """Tokens held."""
        return self.entry["amount"]

    @property
    def used(self) -> int | None:
        """Tokens used so far, as told by :meth:`use` or set here; ``None``
        (nothing told) captures the whole hold at the end of the block.

        Raises:
            ValueError: set below 0 or not to an ``int``.
        """
        return self._used

    @used.setter
    def used(self, tokens: int | None) -> None:
        if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool)):
            msg = f"used must be an int number of tokens, got {tokens!r}"
            raise ValueError(msg)
        if tokens is not None and tokens < 0:
            msg = f"used must be >= 0 tokens, got {tokens}"
            raise ValueError(msg)
        self._used = tokens

    def use(self, tokens: int) -> None:
        """Adds ``tokens`` (≥ 0) to what was used (e.g. per streamed chunk).

        Raises:
            ValueError: ``tokens`` below 0 or not an ``int``.
        """
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            msg = f"tokens must be an int >= 0, got {tokens!r}"
            raise ValueError(msg)
        self.used = (self._used or 0) + tokens

    @property
    def settled(self) -> bool:
        """Whether the hold was captured or released through this object."""
        return self.settlement is not None

    def _plan(self) -> Settlement:
        used = self._used
        if used is None:
            return Settlement("capture")
        if used == 0:
            return Settlement("release")
        if used <= self.amount:
            return Settlement("capture", used)
        return Settlement("capture", self.amount, used - self.amount)

    def _key(self, suffix: str) -> str:
        return derived_key(self.idempotency_key, suffix)

    def __repr__(self) -> str:
        state = "settled" if self.settled else "open"
        return (
            f"<{type(self).__name__} {self.hold_id} of {self.account_id}: "
            f"{self.amount} tokens, used {self._used}, {state}>"
        )
