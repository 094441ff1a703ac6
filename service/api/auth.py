"""Credentials: API keys with scopes, and stream tokens for one account.

An API key comes as ``Authorization: Bearer <key>``. A stream token (a JWT,
HS256, signed with ``LEDGER_SECRET_KEY`` or a random per-process secret, then
tokens do not survive a restart) comes as a Bearer token or as
``?access_token=``; API keys are never read from the URL (it ends up in logs).
A stream token names its account (``sub``), its expiry (``exp``), ``typ`` =
``stream`` and the key that issued it (``act``); it stops working when that key
is revoked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import jwt

from service.adapters.keys import ApiKeyRecord
from service.api.schemas import StreamTokenPublic
from service.domain.errors import Forbidden, Unauthorized
from service.domain.hashing import rfc3339

STREAM_TOKEN_TYPE = "stream"  # noqa: S105 - a claim value, not a secret
ALGORITHM = "HS256"
ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's ``name`` (the ``actor`` of its writes) and its
    ``scopes``; for a stream token, the one account it may read."""

    name: str
    scopes: frozenset[str]
    stream_account: str | None = None
    expires: float | None = None
    """A stream token's expiry (Unix seconds); ``None`` for an API key."""

    @property
    def is_stream_token(self) -> bool:
        return self.stream_account is not None

    def has(self, scope: str) -> bool:
        """True for an API key with ``scope`` or ``admin`` (never a stream token)."""
        return not self.is_stream_token and (scope in self.scopes or ADMIN in self.scopes)

    def require(self, scope: str) -> Principal:
        """Raises :class:`Forbidden` unless :meth:`has` ``scope``."""
        if self.is_stream_token:
            raise Forbidden("a stream token only reads its account's balance, entries and streams")
        if not self.has(scope):
            raise Forbidden(f"this API key lacks the {scope!r} scope")
        return self

    def require_account_reader(self, account_id: str) -> Principal:
        """Scope ``read``, or a stream token of ``account_id``."""
        if self.stream_account is not None:
            if self.stream_account != account_id:
                raise Forbidden("this stream token is for another account")
            return self
        return self.require("read")


@dataclass(frozen=True)
class StreamToken:
    token: str
    account_id: str
    expires_at: str

    def as_public(self) -> StreamTokenPublic:
        return {"token": self.token, "account_id": self.account_id, "expires_at": self.expires_at}


class StreamTokens:
    """Issues and verifies stream tokens."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def issue(self, account_id: str, issuer: str, ttl_seconds: int) -> StreamToken:
        now = int(time.time())
        expires = now + ttl_seconds
        claims = {
            "sub": account_id,
            "iat": now,
            "exp": expires,
            "typ": STREAM_TOKEN_TYPE,
            "act": issuer,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return StreamToken(token, account_id, rfc3339(datetime.fromtimestamp(expires, UTC)) or "")

    def verify(self, token: str) -> tuple[str, str, float] | None:
        """``(account_id, issuer, expiry in Unix seconds)`` of a valid,
        unexpired token, else ``None``."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub", "typ", "act"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != STREAM_TOKEN_TYPE:
            return None
        account, issuer, expiry = claims.get("sub"), claims.get("act"), claims.get("exp")
        if not isinstance(account, str) or not isinstance(issuer, str):
            return None
        if not isinstance(expiry, int | float):
            return None
        return account, issuer, float(expiry)


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header, or ``None``."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class KeyLookup(Protocol):
    """Where keys are looked up: ``KeyCache`` (may block) or ``KeyCache.cached``
    (never blocks; raises ``CacheMiss``)."""

    def authenticate(self, key: str) -> ApiKeyRecord | None: ...

    def get(self, name: str) -> ApiKeyRecord | None: ...


def authenticate(
    keys: KeyLookup, tokens: StreamTokens, authorization: str | None, access_token: str | None
) -> Principal:
    """The caller of a request.

    Raises:
        Unauthorized: no credentials, an unknown key, an invalid or expired
            stream token (401, with ``WWW-Authenticate: Bearer``).
    """
    header_token = bearer_token(authorization)
    if header_token is not None:
        record = keys.authenticate(header_token)
        if record is not None:
            return Principal(record.name, frozenset(record.scopes))
        if _looks_like_jwt(header_token):
            return _stream_principal(keys, tokens, header_token)
        raise Unauthorized("unknown API key")
    if access_token:
        return _stream_principal(keys, tokens, access_token)
    if authorization:
        raise Unauthorized("use Authorization: Bearer <api key>")
    raise Unauthorized()


def _stream_principal(keys: KeyLookup, tokens: StreamTokens, token: str) -> Principal:
    verified = tokens.verify(token)
    if verified is None:
        raise Unauthorized("invalid or expired stream token")
    account_id, issuer, expiry = verified
    if keys.get(issuer) is None:
        raise Unauthorized("the API key that issued this stream token was revoked")
    return Principal(issuer, frozenset(), stream_account=account_id, expires=expiry)
