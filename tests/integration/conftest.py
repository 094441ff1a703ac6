"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings
from tests.helpers.apps import migrated_settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """A migrated database of each kind (a module may define its own)."""
    with migrated_settings(request.param, tmp_path) as settings:
        yield settings
