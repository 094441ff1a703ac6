"""Draw-down of credit buckets: which tokens a debit takes, where a credit returns.

Pure functions over :class:`~service.domain.values.Bucket` and
:class:`~service.domain.values.Draw`; the aggregate records their results in
its events so history never depends on these rules being unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.domain.values import Bucket, Draw


def plan_draws(buckets: Iterable[Bucket], amount: int) -> list[Draw]:
    """Takes ``amount`` tokens from ``buckets`` in draw-down order (expiring
    soonest first, non-expiring last, FIFO among equals); what they cannot
    cover is one draw on the credit line (``bucket=None``)."""
    draws: list[Draw] = []
    left = amount
    for bucket in sorted(buckets, key=Bucket.draw_order):
        if left == 0:
            break
        take = min(bucket.remaining, left)
        if take > 0:
            draws.append(
                Draw(
                    bucket=bucket.entry_id,
                    amount=take,
                    expires_at=bucket.expires_at,
                    type=bucket.type,
                    bucket_amount=bucket.amount,
                    seq=bucket.seq,
                )
            )
            left -= take
    if left > 0:
        draws.append(Draw(bucket=None, amount=left))
    return draws


def split_draws(draws: list[Draw], first: int) -> tuple[list[Draw], list[Draw]]:
    """Splits ``draws`` into the first ``first`` tokens and the rest, keeping
    order; a draw straddling the cut is split in two."""
    head: list[Draw] = []
    tail: list[Draw] = []
    left = first
    for draw in draws:
        if left >= draw.amount:
            head.append(draw)
            left -= draw.amount
        elif left > 0:
            head.append(_with_amount(draw, left))
            tail.append(_with_amount(draw, draw.amount - left))
            left = 0
        else:
            tail.append(draw)
    return head, tail


def refund_restores(draws: list[Draw], already_refunded: int, amount: int) -> list[Draw]:
    """Where ``amount`` refunded tokens of a debit go back: its draws taken
    from the last one backwards (the longest-lived credit first), skipping the
    ``already_refunded`` tokens that earlier refunds put back."""
    reversed_draws = list(reversed(draws))
    _, rest = split_draws(reversed_draws, already_refunded)
    restores, _ = split_draws(rest, amount)
    return restores


def _with_amount(draw: Draw, amount: int) -> Draw:
    return Draw(
        bucket=draw.bucket,
        amount=amount,
        expires_at=draw.expires_at,
        type=draw.type,
        bucket_amount=draw.bucket_amount,
        seq=draw.seq,
    )
