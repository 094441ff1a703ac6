"""Webhook signing secrets encrypted at rest (``LEDGER_WEBHOOK_SECRETS_KEY``).

An endpoint's secret must be read back to sign each delivery, so unlike API
keys it cannot be stored hashed. With keys configured it is stored as
``fernet:`` + a Fernet token (AES-128-CBC with HMAC-SHA256, the
``cryptography`` library), so a copy of the database does not give away what
signs the messages customers trust. Keys are comma-separated: the first
encrypts, every one decrypts, so a key is rotated by putting the new one
first, then ``ledger reseal-webhook-secrets`` seals every secret with it.
Each key (32+ random bytes, e.g. ``openssl rand -base64 32``) gives its Fernet
key through SHA-256 under a label of its own. A secret stored before keys
were configured stays readable as it is until that command seals it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"


def _fernet(key: str) -> Fernet:
    digest = hashlib.sha256(b"tokenledger webhook secrets\0" + key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class SecretBox:
    """Seals secrets for storage and opens them again; without keys, both
    return the secret as it is."""

    def __init__(self, keys: list[str] | None = None) -> None:
        self._box = MultiFernet([_fernet(k) for k in keys]) if keys else None

    def seal(self, secret: str) -> str:
        """What to store for ``secret``."""
        if self._box is None:
            return secret
        return PREFIX + self._box.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str | None:
        """The secret ``stored`` holds; ``None`` when it is sealed and no
        configured key opens it (a key removed too early, or none set)."""
        if not stored.startswith(PREFIX):
            return stored
        if self._box is None:
            return None
        try:
            return self._box.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            return None
