"""Each timed delivery attempt adds to exactly one latency bucket: the first
whose bound (inclusive, as Prometheus's ``le``) it does not exceed."""

from __future__ import annotations

import pytest

from service.adapters.webhook_records import BUCKET_NAMES, LATENCY_BUCKETS, bucket_name


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, "latency_in_0.01"),
        (0.01, "latency_in_0.01"),
        (0.010001, "latency_in_0.025"),
        (9.99, "latency_in_10.0"),
        (10.0, "latency_in_10.0"),
        (10.5, "latency_in_+Inf"),
    ],
)
def test_an_attempt_counts_in_the_first_bucket_whose_bound_it_does_not_exceed(
    seconds: float, bucket: str
) -> None:
    assert bucket_name(seconds) == bucket


def test_there_is_a_bucket_per_bound_and_one_past_the_last() -> None:
    assert len(BUCKET_NAMES) == len(LATENCY_BUCKETS) + 1
    assert BUCKET_NAMES[-1] == "latency_in_+Inf"
