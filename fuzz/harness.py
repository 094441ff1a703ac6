"""Schemathesis against the running ledger's ``/openapi.json``, shared by the CI
test (``tests/fuzz``) and the long run (``python -m fuzz.run``).

What runs is schemathesis' engine, the one behind ``st run``, with its four
phases: examples, coverage (boundary and invalid values of every parameter and
body field), fuzzing (random valid and invalid requests, steered by the ids and
values earlier responses carried) and stateful (chains of calls linked by those
ids: a purchase, then a refund of it, ...). Every response goes through every
check that applies (``not_a_server_error``, ``status_code_conformance``,
``content_type_conformance``, ``response_headers_conformance``,
``response_schema_conformance``, ``negative_data_rejection``,
``missing_required_header``, ``unsupported_method``,
``allow_header_conformance``, ``use_after_free``,
``ensure_resource_availability``, ``ignored_auth``) except those in
:data:`CHECKS_OFF`, which cannot hold for a ledger.

The app is the real one (``create_app``) under uvicorn, on a fresh PostgreSQL
database and Redis database; the fuzzer authenticates with an API key carrying
every scope (``Authorization: Bearer``), so cases reach the handlers.

Streams (``text/event-stream``) are fuzzed too, but each response is read only
up to its first event or for :data:`STREAM_READ_SECONDS`, whichever comes first
(a stream never ends by itself): enough to check its status, media type and
first frame, and to exercise every way of refusing it (401, 403, 422).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import schemathesis
from pydantic import SecretStr
from schemathesis.engine import events, from_schema

from service.config import Settings
from tests.helpers.servers import (
    ADMIN_KEY,
    fresh_postgres_database,
    fresh_redis_database,
    running_app,
)

PHASES = ("examples", "coverage", "fuzzing", "stateful")
"""Schemathesis' phases, in the order it runs them."""
SCOPES = ("consume", "purchase", "grant", "read", "audit", "admin")
"""Every scope: the fuzzer's key carries them all."""

CHECKS_OFF = {
    "positive_data_acceptance": (
        "a request valid by the schema may still be refused by the ledger's state or by"
        " rules JSON Schema cannot state: 402 insufficient-balance, 409 hold-not-active,"
        " 422 idempotency-key-reused or balance-limit-exceeded, an expires_at in the past,"
        " and 1.0 as an amount (a JSON Schema integer, refused by the contract)"
    ),
}
"""Checks left out, with the reason."""

STREAMS = r"/stream$"
"""Paths of the Server-Sent Events routes."""
STREAM_READ_SECONDS = 1.0
"""How long a stream's response is read at most (seconds); it ends earlier,
after its first event."""
REQUEST_TIMEOUT_SECONDS = 15.0
"""Any other request: a balance read may wait up to 10 s (``wait``)."""
ERROR_TEXT = 3000
"""Longest engine error text kept (characters): tracebacks can be huge."""
SSE_PING_SECONDS = 0.5
"""The app's ping interval: a stream the fuzzer left is noticed that soon."""


@dataclass(frozen=True)
class Target:
    """A running ledger: its base URL, and the name and secret of the fuzzer's
    API key (every scope)."""

    base_url: str
    key_name: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@contextlib.contextmanager
def running_ledger() -> Iterator[Target]:
    """Starts the app (PostgreSQL and Redis databases of its own, the bootstrap
    admin key), creates the fuzzer's key with every scope, yields the target;
    stops the app and drops the databases afterwards."""
    with fresh_postgres_database("ledger_fuzz") as db_url, fresh_redis_database() as redis_url:
        settings = Settings(
            database_url=db_url,
            redis_url=redis_url,
            admin_api_key=SecretStr(ADMIN_KEY),
            sse_ping_seconds=SSE_PING_SECONDS,
        )
        with running_app(settings) as base_url:
            name = f"fuzzer-{uuid.uuid4().hex[:12]}"
            answer = httpx.post(
                f"{base_url}/v1/api-keys",
                json={"name": name, "scopes": list(SCOPES)},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=30,
            )
            answer.raise_for_status()
            yield Target(base_url, name, answer.json()["key"])


@dataclass(frozen=True)
class CheckFailure:
    """One failed check on one case: the check, the operation (``METHOD
    /path``), schemathesis' title and message, and how to reproduce it."""

    check: str
    operation: str
    title: str
    message: str
    reproduce: str

    def __str__(self) -> str:
        return (
            f"[{self.check}] {self.operation}: {self.title}\n{self.message}\n"
            f"Reproduce with:\n{self.reproduce}"
        )


@dataclass
class Report:
    """What a run did: ``cases`` generated and sent, answers by status, every
    failed check, engine errors (e.g. a request that got no answer), ``rounds``
    of the engine and the time taken (seconds)."""

    cases: int = 0
    rounds: int = 0
    seconds: float = 0.0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    operations: collections.Counter[str] = field(default_factory=collections.Counter)
    """Cases by operation (``METHOD /path``)."""
    failures: list[CheckFailure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    """Exceptions that ended a thread of the app, and ERROR log records."""

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def failures_by_check(self) -> collections.Counter[str]:
        return collections.Counter(f.check for f in self.failures)

    @property
    def ok(self) -> bool:
        return (
            not self.failures and not self.errors and not self.crashes and self.server_errors == 0
        )

    def unique_failures(self) -> list[CheckFailure]:
        """One failure per check, operation and title (the first seen)."""
        seen: dict[tuple[str, str, str], CheckFailure] = {}
        for failure in self.failures:
            seen.setdefault((failure.check, failure.operation, failure.title), failure)
        return list(seen.values())

    def summary(self) -> str:
        """A few lines: cases, rounds and time, answers by status, 5xx count,
        failures by check, engine errors."""
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        by_check = ", ".join(f"{check}: {n}" for check, n in sorted(self.failures_by_check.items()))
        lines = [
            f"cases: {self.cases} in {self.rounds} round(s), {self.seconds:.1f} s",
            f"responses by status: {statuses or 'none'}",
            f"5xx responses: {self.server_errors}",
            f"failed checks: {len(self.failures)} ({by_check or 'none'})",
            f"engine errors: {len(self.errors)}",
            f"app crashes and error logs: {len(self.crashes)}",
            f"checks left out: {', '.join(CHECKS_OFF)}",
        ]
        return "\n".join(lines)

    def by_operation(self) -> str:
        """Cases by operation, one line each, most first."""
        return "\n".join(f"{n:6d}  {label}" for label, n in self.operations.most_common())

    def details(self, limit: int = 20) -> str:
        """The first ``limit`` distinct failures and errors, for a failing test."""
        parts = [str(f) for f in self.unique_failures()[:limit]]
        parts += self.errors[:limit]
        parts += self.crashes[:limit]
        return "\n\n".join(parts)


def config(target: Target, *, seed: int, examples: int, phases: list[str]) -> schemathesis.Config:
    """The run's schemathesis configuration (the ``schemathesis.toml`` keys):
    ``examples`` per operation and phase, the fuzzer's credentials, no state
    kept between runs (no hypothesis database, no cache), streams read briefly."""
    return schemathesis.Config.from_dict(
        {
            "seed": seed,
            # Hypothesis' health checks judge generation speed and filtering,
            # which vary with the machine: not the app's defects.
            "suppress-health-check": ["all"],
            "cache": {"enabled": False},
            "headers": target.headers,
            # One worker: schemathesis' threads share hypothesis' (not thread-safe)
            # source inspection, which then fails now and then.
            "workers": 1,
            "continue-on-failure": True,
            "request-timeout": REQUEST_TIMEOUT_SECONDS,
            "generation": {"max-examples": examples, "database": "none"},
            "phases": {name: {"enabled": name in phases} for name in PHASES},
            "checks": {name: {"enabled": False} for name in CHECKS_OFF},
            "operations": [
                {
                    "include-path-regex": STREAMS,
                    "request-timeout": STREAM_READ_SECONDS,
                    "max-stream-events": 1,
                    "generation": {"max-examples": max(1, examples // 5)},
                },
                {
                    # The fuzzer's own key must outlive the run: no call chain
                    # or value seen in a response names it for revocation.
                    "include-path": "/v1/api-keys/{name}",
                    "include-method": "DELETE",
                    "phases": {
                        "stateful": {"enabled": False},
                        "fuzzing": {"extra-data-sources": {"responses": False}},
                        "coverage": {"extra-data-sources": {"responses": False}},
                    },
                },
            ],
        }
    )


def run_engine(
    target: Target, *, seed: int, examples: int, phases: list[str], report: Report
) -> None:
    """One engine run against ``target``, its cases and failures added to ``report``."""
    schema = schemathesis.openapi.from_url(
        f"{target.base_url}/openapi.json",
        config=config(target, seed=seed, examples=examples, phases=phases),
    )
    report.rounds += 1
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            _record(event, report)
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"{event.label}: {event.info.format()[:ERROR_TEXT]}")
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception!r}")


def _record(event: events.ScenarioFinished, report: Report) -> None:
    recorder = event.recorder
    report.cases += len(recorder.cases)
    for case in recorder.cases.values():
        report.operations[case.value.operation.label] += 1
    for interaction in recorder.interactions.values():
        if interaction.response is not None:
            report.statuses[interaction.response.status_code] += 1
    for case_id, checks in recorder.checks.items():
        node = recorder.cases.get(case_id)
        operation = node.value.operation.label if node is not None else recorder.label
        for check in checks:
            info = check.failure_info
            if info is None:
                continue
            report.failures.append(
                CheckFailure(
                    check=check.name,
                    operation=operation,
                    title=info.failure.title,
                    message=info.failure.message,
                    reproduce=info.code_sample,
                )
            )


@contextlib.contextmanager
def watching_the_app(report: Report) -> Iterator[None]:
    """Adds to ``report.crashes`` every exception that ends a thread while
    inside (``threading.excepthook``) and every log record at ERROR or above
    (the app runs in this process: a failure its answers do not show, such as
    a background thread dying, is still a defect)."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        thread = args.thread.name if args.thread is not None else "?"
        report.crashes.append(f"thread {thread} died: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    class Errors(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            report.crashes.append(f"logged by {record.name}: {record.getMessage()}"[:ERROR_TEXT])

    handler = Errors(logging.ERROR)
    root = logging.getLogger()
    threading.excepthook = hook
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        threading.excepthook = previous


def fuzz(target: Target, *, cases: int, seed: int = 0, examples: int = 25) -> Report:
    """Fuzzes ``target`` until at least ``cases`` cases were sent: a first round
    with every phase and ``examples`` cases per operation and phase, then rounds
    of fuzzing and stateful testing with the next seeds, sized for what is
    left. Raises RuntimeError when the fuzzer's key stopped working."""
    report = Report()
    start = time.monotonic()
    with watching_the_app(report):
        run_engine(target, seed=seed, examples=examples, phases=list(PHASES), report=report)
        per_round = max(report.cases, 1)
        while report.cases < cases:
            before = report.cases
            more = max(examples, math.ceil(examples * (cases - before) / per_round))
            run_engine(
                target,
                seed=seed + report.rounds,
                examples=more,
                phases=["fuzzing", "stateful"],
                report=report,
            )
            if report.cases == before:
                report.errors.append(f"round {report.rounds} sent no case")
                break
    report.seconds = time.monotonic() - start
    check_key(target)
    return report


def check_key(target: Target) -> None:
    """Raises RuntimeError unless the fuzzer's key still authenticates (were
    it revoked by a case, every later case would have been a mere 401)."""
    answer = httpx.get(f"{target.base_url}/v1/api-keys", headers=target.headers, timeout=30)
    if answer.status_code != 200:
        msg = f"the fuzzer's key {target.key_name} stopped working: {answer.status_code}"
        raise RuntimeError(msg)
