"""The per-process stream hub on the in-process broker and a real SQLite view:
fan-out, shared frames, coalescing, positions, and no queries while idle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from projections.balances import BalanceView
from projections.broker import InProcessBroker
from projections.channels import POSITIONS, account_channel
from projections.hub import StreamHub
from projections.watches import Change, Watch
from service.adapters.migrate import migrate
from service.application.projector import open_balance_view
from service.config import APPLICATION_NAME, Settings
from tests.helpers.balances import FIELDS


@pytest.fixture
def view(tmp_path: Path) -> BalanceView:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/hub.db")
    migrate(settings)
    return open_balance_view(settings)


def balance(account_id: str, position: int, version: int = 1, available: int = 0) -> dict[str, Any]:
    fields = dict.fromkeys(FIELDS, 0)
    return {
        **fields,
        "account_id": account_id,
        "available": available,
        "version": version,
        "position": position,
        "updated_at": "2026-03-01T12:00:00Z",
    }


def entry(account_id: str, position: int, version: int) -> dict[str, Any]:
    return {"account_id": account_id, "type": "purchase", "version": version, "position": position}


def batch(*changes: tuple[str, int, int]) -> list[tuple[str, dict[str, Any]]]:
    """Bridge messages of one projected batch: ``(account, position, version)``."""
    messages: list[tuple[str, dict[str, Any]]] = [
        (
            account_channel(account),
            {
                "balance": balance(account, position, version, available=position),
                "entries": [entry(account, position, version)],
            },
        )
        for account, position, version in changes
    ]
    return [*messages, (POSITIONS, {"position": max(p for _, p, _ in changes)})]


def run_with_hub(
    view: BalanceView, test: Callable[[StreamHub, InProcessBroker], Awaitable[None]]
) -> None:
    async def main() -> None:
        broker = InProcessBroker()
        hub = StreamHub(broker, view, ledger=None)
        await broker.start()
        await hub.start()
        try:
            await asyncio.wait_for(test(hub, broker), 20)
        finally:
            await hub.close()
            await broker.close()

    asyncio.run(main())


async def next_changes(watch: Any) -> list[Change]:
    assert await watch.wait(5.0), "no change within 5 s"
    taken: list[Change] = watch.take()
    return taken


def test_a_bridge_message_reaches_every_stream_of_its_account_with_one_shared_frame(
    view: BalanceView,
) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        with (
            hub.watch("a") as first,
            hub.watch("a") as second,
            hub.watch("b") as other,
            hub.watch_all() as every,
        ):
            broker.publish_many(batch(("a", 7, 1)))
            [one] = await next_changes(first)
            [two] = await next_changes(second)
            [audited] = await next_changes(every)
            assert one is two is audited
            assert one.balance_frame() is two.balance_frame()
            assert one.balance_frame().startswith(b"id: 7\nevent: balance\ndata: {")
            assert one.entry_frames()[0][0] == 1
            assert not other.pending
            assert hub.position == 7

    run_with_hub(view, test)


def test_a_message_with_several_entries_of_one_account_keeps_them_in_version_order(
    view: BalanceView,
) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        with hub.watch("a") as watch:
            entries = [entry("a", position, version) for version, position in ((1, 3), (2, 4))]
            broker.publish_many(
                [(account_channel("a"), {"balance": balance("a", 4, 2), "entries": entries})]
            )
            [change] = await next_changes(watch)
            assert [version for version, _ in change.entry_frames()] == [1, 2]
            assert change.version == 2

    run_with_hub(view, test)


def test_a_newer_balance_replaces_the_pending_one_of_its_account_for_a_slow_reader(
    view: BalanceView,
) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        with hub.watch_all() as every:
            for position in range(1, 301):
                broker.publish_many(batch((f"acct-{position % 3}", position, position)))
            await hub.wait_for_position(300, 5)
            latest = every.take()
            assert [(c.account_id, c.position) for c in latest] == [
                ("acct-1", 298),
                ("acct-2", 299),
                ("acct-0", 300),
            ]

    run_with_hub(view, test)


def test_an_older_state_never_replaces_a_pending_newer_one(view: BalanceView) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        with hub.watch_all() as every:
            hub.dispatch(Change(balance("a", 9, 3), None))
            hub.dispatch(Change(balance("a", 5, 2), None))
            assert [c.position for c in every.take()] == [9]

    run_with_hub(view, test)


def test_a_per_account_watch_past_its_limit_drops_the_oldest_and_keeps_the_latest(
    view: BalanceView,
) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        with hub.watch("a") as watch:
            for position in range(1, Watch.LIMIT + 11):
                hub.dispatch(Change(balance("a", position, position), None))
            taken = watch.take()
            assert len(taken) == Watch.LIMIT
            assert taken[-1].position == Watch.LIMIT + 10
            assert [c.position for c in taken] == sorted(c.position for c in taken)

    run_with_hub(view, test)


def test_a_position_message_releases_readers_once_the_table_has_applied_it(
    view: BalanceView,
) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        waiting = asyncio.ensure_future(hub.wait_for_position(12, 10))
        await asyncio.sleep(0)  # let it start waiting
        assert not await hub.wait_for_position(12, 0)
        await asyncio.to_thread(view.insert_tracking, Tracking(APPLICATION_NAME, 12))
        broker.publish_many([(POSITIONS, {"position": 12})])
        assert await waiting
        assert hub.position == 12

    run_with_hub(view, test)


def test_a_position_announced_on_the_bridge_is_trusted_without_a_query(
    view: BalanceView, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        broker.publish_many([(POSITIONS, {"position": 50})])
        for _ in range(100):  # delivered on the loop
            if hub.position == 50:
                break
            await asyncio.sleep(0)

        def unreachable() -> int:
            raise ConnectionError("the table must not be asked")

        monkeypatch.setattr(view, "position", unreachable)
        assert await hub.wait_for_position(13, 0)
        assert await hub.wait_for_position(50, 0)
        with pytest.raises(ConnectionError):
            await hub.wait_for_position(51, 0)

    run_with_hub(view, test)


def test_idle_watches_cost_no_store_queries_and_leave_nothing_behind(view: BalanceView) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        with contextlib.ExitStack() as stack:
            watches = [stack.enter_context(hub.watch(f"acct-{n}")) for n in range(1000)]
            before = hub.queries
            woken = await asyncio.gather(*(watch.wait(1.0) for watch in watches))
            assert not any(woken)
            assert hub.queries == before
        hub.dispatch(Change(balance("acct-1", 1), None))  # nobody watches any more
        assert not any(watch.pending for watch in watches)

    run_with_hub(view, test)


def test_a_batch_message_gives_a_balance_frame_per_entry_in_position_order(
    view: BalanceView,
) -> None:
    async def test(hub: StreamHub, broker: InProcessBroker) -> None:
        with hub.watch("a") as watch:
            states = [balance("a", position, version) for version, position in ((1, 3), (2, 4))]
            entries = [entry("a", state["position"], state["version"]) for state in states]
            message = {"balance": states[-1], "balances": states, "entries": entries}
            broker.publish_many([(account_channel("a"), message)])
            [change] = await next_changes(watch)
            assert [position for position, _ in change.balance_frames()] == [3, 4]
            assert change.balance_frames()[-1][1] is change.balance_frame()

    run_with_hub(view, test)
