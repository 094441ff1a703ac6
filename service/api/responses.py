"""JSON responses serialized once, with orjson (RFC 8259 JSON, UTF-8)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response


class FastJSONResponse(Response):
    """``application/json`` rendered by orjson (about 5x the standard library)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # integers beyond 64 bits (metadata may hold them)
            return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
