"""Every ledger error code has its HTTP status in the one table of ``service.api.errors``."""

from __future__ import annotations

import importlib
import pkgutil

import service
from service.api.errors import STATUS, problem, problem_headers, status_of
from service.domain.errors import (
    InsufficientBalance,
    LedgerError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)


def _every_error_class() -> set[type[LedgerError]]:
    for module in pkgutil.walk_packages(service.__path__, "service."):
        importlib.import_module(module.name)
    found: set[type[LedgerError]] = set()
    pending: list[type[LedgerError]] = [LedgerError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_code_has_a_status_in_the_table() -> None:
    codes = {cls.code for cls in _every_error_class()}
    assert codes - set(STATUS) == set()
    assert {"insufficient-balance", "unavailable", "api-key-exists"} <= codes


def test_the_domain_errors_know_no_http() -> None:
    for cls in _every_error_class():
        assert not hasattr(cls, "status"), cls
        assert not hasattr(cls, "headers"), cls


def test_a_problem_carries_the_status_and_the_errors_context() -> None:
    body = problem(InsufficientBalance(available=5, requested=9, credit_limit=0))
    assert body == {
        "type": "/problems/insufficient-balance",
        "title": "Insufficient balance",
        "status": 402,
        "detail": "9 tokens requested, 5 available with a credit limit of 0",
        "code": "insufficient-balance",
        "available": 5,
        "requested": 9,
    }
    assert status_of(ValidationFailed.at(["body", "amount"], "too small")) == 422


def test_401_asks_for_a_bearer_token_and_503_says_when_to_retry() -> None:
    assert problem_headers(Unauthorized()) == {"WWW-Authenticate": "Bearer"}
    assert problem_headers(Unavailable("down", retry_after=5)) == {"Retry-After": "5"}
    assert problem_headers(ValidationFailed([])) == {}
