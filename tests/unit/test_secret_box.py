"""Webhook signing secrets sealed at rest: stored unreadable, opened by any
configured key (rotation), left as they are without keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.adapters.secret_box import PREFIX, SecretBox
from service.config import Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD, NEW = "o" * 32 + "-old-key", "n" * 32 + "-new-key"


def test_a_sealed_secret_is_unreadable_at_rest_and_opens_again() -> None:
    box = SecretBox([NEW])
    stored = box.seal(SECRET)
    assert stored.startswith(PREFIX) and SECRET not in stored and "MfKQ9r8G" not in stored
    assert stored != box.seal(SECRET)  # a fresh token each time
    assert box.open(stored) == SECRET


def test_a_secret_sealed_with_the_old_key_opens_after_a_new_key_is_put_first() -> None:
    stored = SecretBox([OLD]).seal(SECRET)
    rotated = SecretBox([NEW, OLD])
    assert rotated.open(stored) == SECRET
    assert SecretBox([OLD]).open(rotated.seal(SECRET)) is None  # new ones use the new key


def test_without_the_right_key_a_sealed_secret_does_not_open() -> None:
    stored = SecretBox([OLD]).seal(SECRET)
    assert SecretBox().open(stored) is None
    assert SecretBox([NEW]).open(stored) is None


def test_without_keys_secrets_are_stored_as_they_are_and_old_ones_stay_readable() -> None:
    assert SecretBox().seal(SECRET) == SECRET
    assert SecretBox([NEW]).open(SECRET) == SECRET  # stored before keys were set


@pytest.mark.parametrize("keys", ["too-short", f"{NEW},short", f"{NEW},", "change-me" * 5])
def test_a_weak_secrets_key_is_refused_at_start_without_printing_it(keys: str) -> None:
    with pytest.raises(ValidationError, match="webhook_secrets_key") as refused:
        Settings(webhook_secrets_key=keys)
    assert NEW not in str(refused.value) and "too-short" not in str(refused.value)


def test_several_keys_are_read_in_order_and_stripped() -> None:
    assert Settings(webhook_secrets_key=f"{NEW}, {OLD} ").webhook_secret_keys == [NEW, OLD]


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_an_empty_secrets_key_is_unset(unset: str | None) -> None:
    assert Settings(webhook_secrets_key=unset).webhook_secret_keys == []
