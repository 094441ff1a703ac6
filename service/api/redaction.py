"""Keeps stream tokens out of the logs (contract v1.1: no log line, access log
included, contains an API key, a stream token or ``LEDGER_SECRET_KEY``).

API keys only travel in the ``Authorization`` header, which nothing logs;
stream tokens may travel as ``?access_token=``, which uvicorn's access log
writes with the path. :class:`RedactTokens` rewrites such values to ``***``.
"""

from __future__ import annotations

import logging
import re

TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s\"']+", re.IGNORECASE)
LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


class RedactTokens(logging.Filter):
    """Replaces ``access_token`` query values in a record's message and args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = TOKEN_IN_QUERY.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def install() -> None:
    """Adds the filter to uvicorn's loggers (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
