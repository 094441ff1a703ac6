"""Metadata that could not be stored and read back exactly is refused (422):
nesting deeper than 32 levels, and objects shaped like the event store's
typed values ``{"_type_", "_data_"}``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.api.schemas import ConsumptionCreate


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels - 1):
        value = [value]
    return value


def test_metadata_nested_32_levels_deep_is_accepted_and_33_refused() -> None:
    ConsumptionCreate.model_validate({"amount": 1, "metadata": {"n": nested(31)}})
    with pytest.raises(ValidationError, match="levels of nesting"):
        ConsumptionCreate.model_validate({"amount": 1, "metadata": {"n": nested(33)}})


def test_metadata_shaped_like_a_stored_typed_value_is_refused() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        ConsumptionCreate.model_validate(
            {"amount": 1, "metadata": {"x": {"_type_": "datetime_iso", "_data_": "2026"}}}
        )
    ConsumptionCreate.model_validate({"amount": 1, "metadata": {"x": {"_type_": "a", "b": 1}}})
