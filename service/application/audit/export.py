"""``ledger export``: every entry in position order, as NDJSON or CSV.

Streams with constant memory whatever the log's length (a server-side cursor,
one entry at a time); entries carry ``position`` and ``hash`` as the API
renders them. Integers beyond 64 bits are written exactly.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from typing import IO, Any
from uuid import UUID

import orjson

from service.adapters.log_stream import stream_log
from service.application.audit.entries import api_entry

COLUMNS = ("position", "id", "account_id", "type", "amount", "delta_available", "version",
           "recorded_at", "idempotency_key", "actor", "operation", "model", "payment_reference",
           "reason", "hold_id", "refund_of", "expires_at", "metadata", "hash")  # fmt: skip
"""CSV columns; ``metadata`` is its JSON text, nulls are empty cells."""


def log_entries(
    recorder: Any, after_position: int = 0, account_uuid: UUID | None = None
) -> Iterator[dict[str, Any]]:
    """The API's entries after ``after_position`` (one account's when
    ``account_uuid`` is given), in position order."""
    for row in stream_log(recorder, after_position, account_uuid):
        entry = api_entry(row)
        if entry is not None:
            yield entry


def ndjson_line(entry: dict[str, Any]) -> bytes:
    """One entry as a line of JSON (UTF-8, ends with a line feed)."""
    try:
        return orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # an integer beyond 64 bits
        return (json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def write_export(
    entries: Iterator[dict[str, Any]],
    out: IO[bytes],
    fmt: str = "ndjson",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Writes ``entries`` to ``out`` as ``fmt`` (``ndjson`` or ``csv``);
    calls ``progress(position)`` every 10,000 entries; returns the count."""
    count = 0
    if fmt == "csv":
        text = _Utf8(out)
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        for entry in entries:
            writer.writerow([_cell(entry[c], c) for c in COLUMNS])
            count += 1
            if progress is not None and count % 10_000 == 0:
                progress(entry["position"])
        return count
    write = out.write
    for entry in entries:
        write(ndjson_line(entry))
        count += 1
        if progress is not None and count % 10_000 == 0:
            progress(entry["position"])
    return count


def _cell(value: Any, column: str) -> Any:
    if column == "metadata":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return "" if value is None else value


class _Utf8:
    """A text sink over a binary stream (csv writes str)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(text.encode())
