"""The balance alert state machine of contract v1.1 ("Webhooks")."""

from __future__ import annotations

import pytest

from service.domain.alerts import AlertState, AlertType, cross, level


def _alerts(path: list[int], threshold: int | None) -> list[AlertType]:
    state: AlertState | None = None
    sent: list[AlertType] = []
    for available in path:
        state, alert = cross(state, available, threshold)
        if alert is not None:
            sent.append(alert)
    return sent


@pytest.mark.parametrize(
    ("available", "threshold", "expected"),
    [
        (100, 100, "ok"),
        (99, 100, "low"),
        (1, 100, "low"),
        (0, 100, "depleted"),
        (-5, 100, "depleted"),
        (1, None, "ok"),
        (0, None, "depleted"),
    ],
)
def test_available_tokens_are_ok_low_or_depleted(
    available: int, threshold: int | None, expected: AlertState
) -> None:
    assert level(available, threshold) == expected


def test_the_first_entry_sets_the_state_without_an_alert() -> None:
    assert cross(None, 5, 100) == ("low", None)
    assert cross(None, 0, 100) == ("depleted", None)


def test_a_scripted_balance_path_sends_each_crossing_once() -> None:
    path = [500, 300, 90, 80, 120, 50, 0, -10, 40, 30, 200, 0, 500]
    assert _alerts(path, 100) == [
        "balance.low",  # 300 → 90
        "balance.recovered",  # 80 → 120
        "balance.low",  # 120 → 50
        "balance.depleted",  # 50 → 0
        "balance.recovered",  # 30 → 200 (depleted → low stayed depleted)
        "balance.depleted",  # 200 → 0
        "balance.recovered",  # 0 → 500
    ]


def test_a_fall_straight_to_zero_sends_only_depleted() -> None:
    assert _alerts([500, 0], 100) == ["balance.depleted"]


def test_depleted_to_low_sends_nothing_and_stays_depleted() -> None:
    assert cross("depleted", 50, 100) == ("depleted", None)


def test_without_a_threshold_there_is_no_low_level() -> None:
    assert _alerts([10, 1, 0, 3], None) == ["balance.depleted", "balance.recovered"]
