"""The dispatcher's memory of what to deliver: per endpoint, one lane per
account, each holding that account's pending messages in position order.

The dispatcher reads new outbox rows in key order and :meth:`Lanes.admit`\\ s
them. A lane sends one message at a time (its head), so a receiver sees an
account's messages in order; a head waiting for its retry holds its lane back
and nothing else. Memory stays bounded: a lane keeps at most
:data:`LANE_MESSAGES`, an endpoint at most :data:`ENDPOINT_MESSAGES`; a lane
past its bound, or whose head waits for a retry, is *truncated* (it keeps
its head and forgets the rest, which stay pending in the outbox) and reads
its own next messages back from the outbox when it has sent what it holds
(:meth:`Lane.reloaded`). The reader stops taking messages while
:attr:`EndpointLanes.full` and goes on from there once there is room.
Pure data: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from service.adapters.webhook_records import Key, PendingMessage

LANE_MESSAGES = 100
"""Most messages one (endpoint, account) lane holds in memory."""
ENDPOINT_MESSAGES = 5_000
"""Most messages one endpoint's lanes hold in memory together."""


@dataclass(eq=False)
class Lane:
    """One endpoint and account: its messages in position order.

    ``scheduled``: the lane is in its endpoint's ready queue, with a worker,
    or waiting for its head's retry; ``truncated``: more of its messages are
    pending in the outbox than it holds; ``last``: the key of the last message
    it took, so none is taken twice."""

    endpoint_id: str
    account_id: str
    messages: deque[PendingMessage] = field(default_factory=deque)
    scheduled: bool = False
    truncated: bool = False
    reloading: bool = False
    missed: bool = False
    """A message was skipped while the lane was reading back (read again)."""
    last: Key = (-1, "", -1)

    def take(self, message: PendingMessage) -> None:
        self.messages.append(message)
        self.last = message.key

    def reloaded(self, messages: list[PendingMessage], limit: int) -> None:
        """Takes the messages read back from the outbox (``limit`` asked)."""
        for message in messages:
            if message.key > self.last:
                self.take(message)
        self.truncated = len(messages) >= limit or self.missed
        self.reloading = self.missed = False


@dataclass(eq=False)
class EndpointLanes:
    """The lanes of one endpoint, and how many messages they hold."""

    endpoint_id: str
    lanes: dict[str, Lane] = field(default_factory=dict)
    held: int = 0

    @property
    def full(self) -> bool:
        """Whether the lanes hold all they may: read no more for now."""
        return self.held >= ENDPOINT_MESSAGES

    def admit(self, message: PendingMessage) -> Lane | None:
        """Takes a message read from the outbox; returns its lane when the
        lane must now be scheduled (it was idle)."""
        lane = self.lanes.get(message.account_id)
        if lane is None:
            lane = self.lanes[message.account_id] = Lane(self.endpoint_id, message.account_id)
        if message.key <= lane.last:
            return None
        if lane.truncated or lane.reloading:
            lane.missed = lane.missed or lane.reloading
            return None
        if len(lane.messages) >= LANE_MESSAGES:
            lane.truncated = True
            return None
        lane.take(message)
        self.held += 1
        if lane.scheduled:
            return None
        lane.scheduled = True
        return lane

    def done(self, lane: Lane) -> bool:
        """The lane's head is delivered or failed: drops it. Returns whether
        the lane has more to do (else it is forgotten)."""
        lane.messages.popleft()
        self.held -= 1
        if lane.messages or lane.truncated:
            return True
        lane.scheduled = False
        self.lanes.pop(lane.account_id, None)
        return False

    def hold_back(self, lane: Lane, head: PendingMessage) -> None:
        """The head waits for a retry (``head``: its new state): the lane
        keeps it alone and reads the rest back once it is through."""
        dropped = len(lane.messages) - 1
        lane.truncated = True  # takes nothing more while it waits
        lane.last = head.key
        lane.messages.clear()
        lane.messages.append(head)
        self.held -= dropped
