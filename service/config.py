"""Typed settings from the environment (``LEDGER_*``), via pydantic-settings."""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32
"""Shortest ``LEDGER_SECRET_KEY`` accepted (HS256 wants a 256-bit key)."""
PLACEHOLDERS = frozenset(
    {"dev-admin-key-change-me", "dev-secret-change-me", "changeme", "change-me", "secret"}
)
"""Secrets that documentation or samples ever showed: refused at start."""

APPLICATION_NAME = "Ledger"
"""The eventsourcing application name; PostgreSQL tables are ``ledger_*``."""


class Settings(BaseSettings):
    """Service settings. Every field is read from ``LEDGER_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="LEDGER_",
        extra="ignore",
        hide_input_in_errors=True,  # a refused secret is never printed
    )

    database_url: str = "sqlite:///./ledger.db"
    """``sqlite:///path`` (embedded default) or ``postgresql://user@host:port/db``."""
    database_schema: str = ""
    """PostgreSQL schema for every table (default ``public``)."""
    database_pool_size: int = Field(default=10, ge=1)
    """Most connections of each pool (one stays open; the rest open on demand)."""
    redis_url: str | None = None
    """``redis://host:port/db``; unset → the in-process broker."""
    admin_api_key: SecretStr | None = None
    """Bootstrap key with scope ``admin``."""
    secret_key: SecretStr | None = None
    """Signs stream tokens (HMAC); random per process when unset."""
    stripe_webhook_secret: SecretStr | None = None
    """The signing secret (``whsec_…``) of the Stripe webhook endpoint that
    calls ``POST /v1/webhooks/stripe``; unset → that route is off (404)."""
    webhook_retry_seconds: str = Field(
        default="5,300,1800,7200,18000,36000,36000", pattern=r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$"
    )
    """Seconds to wait before each retry of a webhook delivery, comma-separated;
    when they are used up the delivery is ``failed`` (default: about 27 hours)."""
    webhook_secrets_key: SecretStr | None = None
    """Encrypts webhook endpoints' signing secrets at rest (Fernet); several,
    comma-separated, to rotate: the first encrypts, every one decrypts. Each
    at least 32 bytes. Unset: secrets are stored as they are (the embedded
    default); set it in production."""
    webhook_retention_seconds: float = Field(default=30 * 86_400.0, ge=0)
    """Delivered and failed webhook messages older than this many seconds are
    deleted (an endpoint's deliveries list shows what remains; the metrics'
    totals keep counting them); 0 keeps them forever. Default: 30 days."""
    webhook_allow_insecure: bool = False
    """Accept ``http://`` and non-public webhook URLs (development and tests only)."""
    webhook_niceness: int = Field(default=10, ge=0, le=19)
    """Niceness added to the webhook dispatcher (Linux; 0: none): to the whole
    ``ledger deliver`` process, or to its thread where it runs in another
    process (SQLite, a standing-by HTTP worker). Under a full CPU, deliveries
    yield to the write path and catch up after."""
    webhook_idle_priority: bool = True
    """``ledger deliver`` runs under Linux's ``SCHED_IDLE`` policy, in a
    session whose autogroup is 19 nicer: it gets only CPU time the write path
    leaves, so deliveries barely slow it on a shared machine; under a CPU kept
    full they wait, and catch up once it frees up. Set false when the
    dispatcher has CPU of its own."""
    run_delivery: bool = True
    """``ledger project`` on PostgreSQL starts the webhook dispatcher in a
    process of its own (``ledger deliver``); set false to run ``ledger
    deliver`` apart (another machine, its own CPU)."""
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    max_streams: int = Field(default=20_000, ge=1)
    """Open SSE streams per process; beyond it a new stream is answered 503."""
    sweep_seconds: float = Field(default=1.0, gt=0)
    """How often the expiry sweeper looks for due holds and credits (seconds)."""
    poll_seconds: float = Field(default=0.05, gt=0)
    """Poll interval of the projection on SQLite, which has no subscriptions."""
    aggregate_cache_size: int = Field(default=10_000, ge=0)
    """Accounts kept in the aggregate cache per process (0 disables it)."""
    snapshot_interval: int = Field(default=200, ge=1)
    run_projection: bool = True
    projection_standby_seconds: float = Field(default=0.0, ge=0)
    """How long a process waits before competing to lead (run the projection
    and the sweeper): ``ledger serve`` gives its dedicated projection process
    a head start over its HTTP workers, which stand by to take over."""
    """``ledger serve`` runs the projection in-process (set false to run
    ``ledger project`` apart)."""
    log_level: str = "info"
    cors_origins: str = ""
    """Origins (comma-separated, or ``*``) whose pages may call every route
    from a browser; the browser client's read routes answer any origin anyway
    (``service.api.ui``). Empty: no other route answers CORS."""

    @property
    def webhook_retry_delays(self) -> list[float]:
        """``webhook_retry_seconds`` as a list of seconds."""
        return [float(part) for part in self.webhook_retry_seconds.split(",")]

    @field_validator("webhook_secrets_key", mode="before")
    @classmethod
    def _strong_keys(cls, value: object) -> object:
        """Empty is unset; otherwise refuses an empty key in the list, a key
        under 32 bytes, or a placeholder (never echoing the value)."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if not isinstance(raw, str):
            return value
        for key in _split_keys(raw):
            if not key:
                raise ValueError("has an empty key in its comma-separated list")
            _refuse_weak(key, MIN_SECRET_BYTES)
        return value

    @property
    def webhook_secret_keys(self) -> list[str]:
        """``webhook_secrets_key`` as a list, first the one that seals (empty: unset)."""
        if self.webhook_secrets_key is None:
            return []
        return _split_keys(self.webhook_secrets_key.get_secret_value())

    @field_validator("secret_key", "admin_api_key")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Refuses a known placeholder, and a ``secret_key`` under 32 bytes
        (anyone knowing it could forge stream tokens)."""
        if value is None:
            return None
        shortest = MIN_SECRET_BYTES if info.field_name == "secret_key" else 0
        _refuse_weak(value.get_secret_value(), shortest)
        return value

    @cached_property
    def backend(self) -> Literal["postgres", "sqlite"]:
        scheme = urlsplit(self.database_url).scheme.split("+")[0]
        if scheme in ("postgres", "postgresql"):
            return "postgres"
        if scheme == "sqlite":
            return "sqlite"
        msg = f"unsupported LEDGER_DATABASE_URL scheme {scheme!r}"
        raise ValueError(msg)

    @cached_property
    def sqlite_path(self) -> str:
        """The SQLite file path of ``sqlite:///path`` (``:memory:`` allowed)."""
        url = self.database_url
        return url.split("sqlite:///", 1)[1] if "sqlite:///" in url else ":memory:"

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment the ``eventsourcing`` library reads for this database.

        The library creates no table (``CREATE_TABLE=n``): the migrations do
        (``service.adapters.migrate``), so run them first. The ledger still
        creates its group-commit function at start (``CREATE_GROUP_FUNCTION``)."""
        env = {
            "IS_SNAPSHOTTING_ENABLED": "y",
            "SNAPSHOT_INTERVAL": str(self.snapshot_interval),
            "CREATE_TABLE": "n",
            "CREATE_GROUP_FUNCTION": "y",
        }
        # The committer keeps the accounts it writes (service.application.committer);
        # the library's own cache (a deep copy per load) stays off.
        env["ACCOUNT_CACHE"] = str(self.aggregate_cache_size)
        if self.backend == "sqlite":
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                SQLITE_DBNAME=self.sqlite_path,
                SQLITE_LOCK_TIMEOUT="30",
                APPLICATION_RECORDER_TOPIC="service.adapters.recorders:SQLiteLedgerRecorder",
            )
            return env
        parts = urlsplit(self.database_url)
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=unquote(parts.path.lstrip("/")) or "postgres",
            POSTGRES_HOST=parts.hostname or "127.0.0.1",
            POSTGRES_PORT=str(parts.port or 5432),
            POSTGRES_USER=unquote(parts.username or "postgres"),
            POSTGRES_PASSWORD=unquote(parts.password or ""),
            POSTGRES_POOL_SIZE="1",
            POSTGRES_MAX_OVERFLOW=str(max(self.database_pool_size - 1, 0)),
            POSTGRES_CONN_MAX_AGE="600",
            POSTGRES_LOCK_TIMEOUT="10",
            POSTGRES_CONNECT_TIMEOUT="2",  # seconds to wait for a pooled connection
            APPLICATION_RECORDER_TOPIC="service.adapters.recorders:PostgresLedgerRecorder",
        )
        if self.database_schema:
            env["POSTGRES_SCHEMA"] = self.database_schema
        return env

    @cached_property
    def deployment_namespace(self) -> str:
        """Prefix of this deployment's bridge channels: a digest of its
        database (host, port, name, schema), so deployments sharing a Redis
        server never hear each other."""
        parts = urlsplit(self.database_url)
        identity = f"{parts.hostname}:{parts.port}/{parts.path}#{self.database_schema}"
        return hashlib.sha256(identity.encode()).hexdigest()[:12] + ":"

    def postgres_conninfo(self) -> str:
        """A libpq URL for psycopg (``postgresql://…``)."""
        url = self.database_url
        scheme, rest = url.split("://", 1)
        return "postgresql://" + rest if scheme != "postgresql" else url


PLAN_OPTION = "-c plan_cache_mode=force_custom_plan"


def plan_each_statement() -> None:
    """Makes every PostgreSQL session of this process plan each statement for
    its arguments (libpq's ``PGOPTIONS``). Generic plans cached while the
    tables were nearly empty (sequential scans) otherwise stay for a pooled
    session's life: measured, one made a 0.5 ms group commit take 10 ms."""
    current = os.environ.get("PGOPTIONS", "")
    if "plan_cache_mode" not in current:
        os.environ["PGOPTIONS"] = f"{current} {PLAN_OPTION}".strip()


CONNECT_TIMEOUT_SECONDS = "2"


def bound_connection_attempts() -> None:
    """Makes every PostgreSQL connection attempt of this process give up after
    2 seconds (libpq's ``PGCONNECT_TIMEOUT``; unset, libpq waits forever on a
    peer that accepts and never answers)."""
    os.environ.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECONDS)


def _split_keys(raw: str) -> list[str]:
    """A comma-separated key list, each key stripped (spaces around commas)."""
    return [key.strip() for key in raw.split(",")]


def _refuse_weak(secret: str, shortest: int) -> None:
    """Raises ``ValueError`` for a known placeholder or a secret under
    ``shortest`` bytes (the message never quotes it)."""
    if secret.strip().lower() in PLACEHOLDERS or "change-me" in secret.lower():
        msg = "is a placeholder: set a random secret"
        raise ValueError(msg)
    if len(secret.encode()) < shortest:
        msg = f"must be at least {shortest} bytes"
        raise ValueError(msg)
