"""No working default secret: placeholders and short secret keys are refused
at start (issue 7, item 4)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("secret_key", "dev-secret-change-me"),
        ("secret_key", "short-but-random-31-bytes-xxxxx"),
        ("admin_api_key", "dev-admin-key-change-me"),
        ("admin_api_key", "changeme"),
    ],
)
def test_a_placeholder_or_short_secret_refuses_to_start(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value})


def test_a_random_secret_of_32_bytes_is_accepted() -> None:
    settings = Settings(secret_key="x" * 32, admin_api_key="any-admin-key")
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "x" * 32
