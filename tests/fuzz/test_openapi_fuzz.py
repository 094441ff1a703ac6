"""Fuzzing the real app from its ``/openapi.json`` (schemathesis, ``fuzz.harness``).

One run per module, on PostgreSQL and Redis, with a fixed seed: at least
:data:`CASES` generated requests across every route (streams included, read
up to their first event), authenticated with a key carrying every scope. The
longer run is ``python -m fuzz.run --cases 5000``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fuzz.harness import Report, fuzz, running_ledger

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

CASES = 500
"""Fewest generated requests the CI run sends (it sends about twice as many)."""
SEED = 20261122
EXAMPLES = 10
"""Cases per operation and phase (streams: a fifth of it)."""


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    with running_ledger() as target:
        report = fuzz(target, cases=CASES, seed=SEED, examples=EXAMPLES)
        print(f"\n{report.summary()}")  # shown with -s, or on failure
        yield report


def test_the_fuzzer_sends_at_least_500_generated_requests(report: Report) -> None:
    assert report.cases >= CASES, report.summary()


def test_the_fuzzer_reaches_the_handlers_with_its_key(report: Report) -> None:
    assert report.statuses[201] > 0 and report.statuses[200] > 0, report.summary()
    assert report.statuses[401] < report.cases / 4, report.summary()


def test_no_generated_request_is_answered_with_a_5xx(report: Report) -> None:
    assert report.server_errors == 0, report.details()


def test_every_answer_has_a_documented_status_media_type_headers_and_shape(
    report: Report,
) -> None:
    assert not report.failures, f"{report.summary()}\n\n{report.details()}"


def test_the_fuzzer_ran_without_engine_errors(report: Report) -> None:
    assert not report.errors, report.details()


def test_no_thread_of_the_app_dies_and_nothing_is_logged_as_an_error(report: Report) -> None:
    assert not report.crashes, report.details()
