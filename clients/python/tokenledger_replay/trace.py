"""Reading LLM usage traces into :class:`TraceRow` records.

Accepted inputs (detected by the CSV header):

* the normalized trace ``llm_usage_replay_normalized.csv``
  (``source,seq,t_offset_s,session_id,model,input_tokens,output_tokens,total_tokens``);
* the raw Azure 2023 traces (``TIMESTAMP,ContextTokens,GeneratedTokens``);
* the Mooncake FAST'25 CSV (``timestamp_ms,input_tokens,output_tokens,...``);
* the BurstGPT slice (``Timestamp,Session ID,...,Total tokens,Log Type``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Literal

TokenColumn = Literal["total_tokens", "input_tokens", "output_tokens"]
TOKEN_COLUMNS: tuple[TokenColumn, ...] = ("total_tokens", "input_tokens", "output_tokens")


class TraceFormatError(ValueError):
    """The file is not one of the known trace formats, or a row is malformed."""


@dataclass(frozen=True)
class TraceRow:
    """One AI call of a trace.

    ``t_offset_s`` is seconds since the first request of the row's ``source``;
    ``seq`` is the 1-based row number within the source; token counts are ints ≥ 0.
    """

    source: str
    seq: int
    t_offset_s: float
    session_id: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    total_tokens: int

    def tokens(self, column: TokenColumn = "total_tokens") -> int:
        """The row's amount in tokens taken from ``column``."""
        value: int = getattr(self, column)
        return value


def _opt(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _int(value: str | None) -> int:
    return int(float(value)) if value and value.strip() else 0


def _normalized(rows: Iterable[dict[str, str]]) -> Iterator[TraceRow]:
    for row in rows:
        yield TraceRow(
            source=row["source"],
            seq=int(row["seq"]),
            t_offset_s=float(row["t_offset_s"]),
            session_id=_opt(row.get("session_id")),
            model=_opt(row.get("model")),
            input_tokens=_int(row["input_tokens"]),
            output_tokens=_int(row["output_tokens"]),
            total_tokens=_int(row["total_tokens"]),
        )


def _azure(rows: Iterable[dict[str, str]], source: str) -> Iterator[TraceRow]:
    start: datetime | None = None
    for seq, row in enumerate(rows, start=1):
        stamp = row["TIMESTAMP"].strip()
        # Seven fractional digits: keep microseconds only.
        if "." in stamp:
            head, frac = stamp.split(".", 1)
            stamp = f"{head}.{frac[:6].ljust(6, '0')}"
        at = datetime.fromisoformat(stamp)
        start = start or at
        inp, out = _int(row["ContextTokens"]), _int(row["GeneratedTokens"])
        yield TraceRow(source, seq, (at - start).total_seconds(), None, None, inp, out, inp + out)


def _mooncake(rows: Iterable[dict[str, str]]) -> Iterator[TraceRow]:
    start: float | None = None
    for seq, row in enumerate(rows, start=1):
        at = float(row["timestamp_ms"]) / 1000.0
        start = at if start is None else start
        inp, out = _int(row["input_tokens"]), _int(row["output_tokens"])
        yield TraceRow("mooncake_fast25_conv", seq, at - start, None, None, inp, out, inp + out)


def _burstgpt(rows: Iterable[dict[str, str]]) -> Iterator[TraceRow]:
    start: float | None = None
    for seq, row in enumerate(rows, start=1):
        at = float(row["Timestamp"])
        start = at if start is None else start
        inp, out = _int(row["Request tokens"]), _int(row["Response tokens"])
        total = _int(row.get("Total tokens")) or inp + out
        yield TraceRow(
            "burstgpt3_first400",
            seq,
            at - start,
            _opt(row.get("Session ID")),
            _opt(row.get("Model")),
            inp,
            out,
            total,
        )


def iter_trace(path: Path | str) -> Iterator[TraceRow]:
    """Yields the rows of the trace at ``path`` in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        TraceFormatError: unknown header or a malformed row.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or ())
        try:
            if {"source", "seq", "t_offset_s", "total_tokens"} <= header:
                yield from _normalized(reader)
            elif {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= header:
                source = "azure2023_code" if "code" in path.name.lower() else "azure2023_conv"
                yield from _azure(reader, source)
            elif {"timestamp_ms", "input_tokens", "output_tokens"} <= header:
                yield from _mooncake(reader)
            elif {"Timestamp", "Request tokens", "Response tokens"} <= header:
                yield from _burstgpt(reader)
            else:
                msg = f"{path}: unknown trace format (header {sorted(header)})"
                raise TraceFormatError(msg)
        except (KeyError, ValueError) as exc:
            if isinstance(exc, TraceFormatError):
                raise
            msg = f"{path}:{reader.line_num}: malformed row: {exc}"
            raise TraceFormatError(msg) from exc


def read_trace(path: Path | str, limit: int | None = None) -> list[TraceRow]:
    """The first ``limit`` rows (all when ``None``) of the trace at ``path``, in file order.

    Raises:
        FileNotFoundError, TraceFormatError: as :func:`iter_trace`.
    """
    return list(islice(iter_trace(path), limit))
