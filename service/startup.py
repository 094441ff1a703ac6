"""What ``ledger serve`` does once, in the parent process, before its workers
start: migrate the database, create the first admin key, share one secret."""

from __future__ import annotations

import os
import secrets

from service.adapters.keys import bootstrap_admin, open_key_store
from service.adapters.migrate import migrate
from service.config import Settings


def prepare_deployment(settings: Settings) -> str | None:
    """Migrates, creates the first admin API key when none exists and
    ``LEDGER_ADMIN_API_KEY`` is unset (returns its plaintext, to print once),
    and, when ``LEDGER_SECRET_KEY`` is unset, sets a random one in this
    process's environment so every worker signs stream tokens alike.

    Raises:
        sqlalchemy.exc.OperationalError, psycopg.OperationalError: the database
            is unreachable.
    """
    migrate(settings)
    keys = open_key_store(settings)
    try:
        created = bootstrap_admin(keys, settings)
    finally:
        keys.close()
    if settings.secret_key is None:
        os.environ["LEDGER_SECRET_KEY"] = secrets.token_urlsafe(32)
    return created
