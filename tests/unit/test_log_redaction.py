"""Stream tokens never reach a log line (contract v1.1)."""

from __future__ import annotations

import logging

import pytest

from service.api import redaction


def test_an_access_log_line_with_a_stream_token_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redaction.install()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"
    logger = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logger.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            f"/v1/accounts/u1/balance/stream?access_token={token}&last_event_id=3",
            "1.1",
            200,
        )
    line = caplog.records[-1].getMessage()
    assert token not in line
    assert "access_token=***&last_event_id=3" in line
