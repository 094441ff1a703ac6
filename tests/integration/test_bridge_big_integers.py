"""A defect fuzzing found outside ``service/api``: a metadata integer beyond 64
bits (valid JSON, accepted and answered exactly by the API) kills the bridge's
publisher thread, after which no process's stream hears of any change.

Fixed in ``projections/publisher.py``: what orjson cannot write is encoded
with ``json`` (and decoded exactly), and no failure ends the thread.
"""

from __future__ import annotations

import queue
import uuid

import httpx
import pytest

from service.config import Settings
from tests.helpers.servers import (
    ADMIN_KEY,
    fresh_postgres_database,
    fresh_redis_database,
    running_app,
)
from tests.helpers.sse import StreamReader

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_a_metadata_integer_beyond_64_bits_does_not_stop_the_streams() -> None:
    with fresh_postgres_database() as db_url, fresh_redis_database() as redis_url:
        settings = Settings(
            database_url=db_url, redis_url=redis_url, admin_api_key=ADMIN_KEY, sse_ping_seconds=1
        )
        with running_app(settings) as url, httpx.Client(base_url=url, headers=AUTH) as http:
            big, watched = f"big-{uuid.uuid4().hex[:8]}", f"watched-{uuid.uuid4().hex[:8]}"
            r = http.post(
                f"/v1/accounts/{big}/purchases", json={"amount": 1, "metadata": {"n": 2**64}}
            )
            assert r.status_code == 201, r.text
            assert r.json()["entry"]["metadata"] == {"n": 2**64}
            stream = StreamReader(f"{url}/v1/accounts/{watched}/balance/stream", AUTH)
            try:
                assert stream.next_data().json()["version"] == 0
                r = http.post(f"/v1/accounts/{watched}/purchases", json={"amount": 7})
                assert r.status_code == 201, r.text
                try:
                    frame = stream.next_data(timeout=5)
                except queue.Empty:
                    pytest.fail("the stream heard nothing of the purchase within 5 s")
                assert frame.json()["purchased"] == 7
            finally:
                stream.close()
