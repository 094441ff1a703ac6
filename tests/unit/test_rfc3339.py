"""``service.api.schemas.parse_rfc3339``: RFC 3339 timestamps (``expires_at``,
``as_of``) as UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.api.schemas import parse_rfc3339


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05.123456789012Z",  # RFC 3339: 1*DIGIT, any number of digits
        "2026-01-02T03:04:05.1234567890+00:00",
        "2026-01-02t03:04:05.123456z",
        "2026-01-02 05:04:05.123456 02:00",  # a query's "+" read as a space
    ],
)
def test_a_fraction_of_any_length_is_read_to_the_microsecond(text: str) -> None:
    assert parse_rfc3339(text) == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["2026-01-02T03:04:05", "2026-01-02T03:04:05.Z", "2026-01-02", "yesterday", ""],
)
def test_a_timestamp_without_offset_or_not_rfc_3339_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339(text)


def test_a_time_outside_years_1_to_9999_in_utc_is_refused() -> None:
    with pytest.raises(ValueError, match="years 0001 to 9999"):
        parse_rfc3339("0001-01-01T00:00:00+01:00")
