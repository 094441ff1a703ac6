"""The dispatcher's lanes: an account's messages in order, one lane
scheduled once, and memory bounded without losing or repeating a message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from service.adapters.webhook_records import Attempt, PendingMessage
from service.application import delivery_lanes
from service.application.attempt_recorder import AttemptRecorder
from service.application.delivery_lanes import EndpointLanes


def message(position: int, account: str = "user-1", endpoint: str = "ep") -> PendingMessage:
    return PendingMessage(
        (position, endpoint, 0), f"msg_{position}", account, "entry.created", b"{}", 0, 0.0
    )


def test_an_accounts_messages_queue_in_order_and_its_lane_is_scheduled_once() -> None:
    lanes = EndpointLanes("ep")
    lane = lanes.admit(message(1))
    assert lane is not None and lane.scheduled
    assert lanes.admit(message(2)) is None
    assert lanes.admit(message(2)) is None  # read twice: taken once
    assert [m.key[0] for m in lane.messages] == [1, 2]
    assert lanes.held == 2
    assert lanes.admit(message(3, "user-2")) is not None  # another account, another lane
    assert lanes.done(lane) is True
    assert lanes.done(lane) is False  # nothing left: forgotten
    assert "user-1" not in lanes.lanes and not lane.scheduled
    assert lanes.held == 1


def test_a_lane_past_its_bound_reads_the_rest_back_after_what_it_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery_lanes, "LANE_MESSAGES", 2)
    lanes = EndpointLanes("ep")
    lane = lanes.admit(message(1))
    assert lane is not None
    for position in (2, 3, 4):
        lanes.admit(message(position))
    assert [m.key[0] for m in lane.messages] == [1, 2] and lane.truncated
    lanes.done(lane)
    assert lanes.done(lane) is True  # empty, but more are pending in the outbox
    lane.reloading = True
    lane.reloaded([message(2), message(3), message(4)], limit=2)  # 2 was taken before
    assert [m.key[0] for m in lane.messages] == [3, 4]
    assert lane.truncated  # as many as asked came back: maybe more


def test_a_message_skipped_while_a_lane_reads_back_is_read_back_later() -> None:
    lanes = EndpointLanes("ep")
    lane = lanes.admit(message(1))
    assert lane is not None
    lane.truncated = lane.reloading = True
    assert lanes.admit(message(5)) is None
    lane.reloaded([], limit=100)
    assert lane.truncated and not lane.reloading


def test_a_head_waiting_for_its_retry_holds_only_itself() -> None:
    lanes = EndpointLanes("ep")
    lane = lanes.admit(message(1))
    assert lane is not None
    lanes.admit(message(2))
    lanes.admit(message(3))
    retry = message(1)
    lanes.hold_back(lane, retry)
    assert list(lane.messages) == [retry] and lane.truncated and lanes.held == 1
    assert lanes.admit(message(4)) is None  # the rest stays in the outbox
    lanes.done(lane)
    lane.reloaded([message(2), message(3), message(4)], limit=100)
    assert [m.key[0] for m in lane.messages] == [2, 3, 4] and not lane.truncated


def test_an_endpoint_is_full_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_lanes, "ENDPOINT_MESSAGES", 2)
    lanes = EndpointLanes("ep")
    first = lanes.admit(message(1, "user-1"))
    assert not lanes.full and first is not None
    lanes.admit(message(2, "user-2"))
    assert lanes.full
    lanes.done(first)
    assert not lanes.full


async def _record_together(fail: bool) -> list[list[Attempt]]:
    written: list[list[Attempt]] = []

    def write(attempts: Sequence[Attempt]) -> None:
        written.append(list(attempts))
        if fail:
            raise OSError("database down")

    recorder = AttemptRecorder(write)
    running = asyncio.create_task(recorder.run())
    attempts = [Attempt((p, "ep", 0), "delivered", 204, None, None) for p in range(1, 6)]
    try:
        results = await asyncio.gather(
            *(recorder.record(a) for a in attempts), return_exceptions=True
        )
    finally:
        running.cancel()
    assert all(isinstance(r, OSError) for r in results) if fail else results == [None] * 5
    return written


def test_attempts_handed_over_together_are_committed_in_one_write() -> None:
    written = asyncio.run(_record_together(fail=False))
    assert [len(batch) for batch in written] == [5]


def test_a_failed_write_fails_every_attempt_it_carried() -> None:
    written = asyncio.run(_record_together(fail=True))
    assert [len(batch) for batch in written] == [5]


def test_a_lane_waiting_for_a_retry_takes_nothing_more_while_it_waits() -> None:
    lanes = EndpointLanes("ep")
    lane = lanes.admit(message(1))
    assert lane is not None
    lanes.hold_back(lane, message(1))
    assert lanes.admit(message(2)) is None and lanes.held == 1
    lanes.done(lane)
    lane.reloaded([message(2)], limit=100)
    assert [m.key[0] for m in lane.messages] == [2]
