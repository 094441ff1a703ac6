"""JSON transcodings for the domain's value objects (events and snapshots)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, Transcoding

from service.domain.values import Bucket, Draw, Hold


class DataclassAsDict(Transcoding):
    """Encodes a dataclass instance as a dict of its fields (nested values are
    transcoded by the transcoder itself)."""

    def __init__(self, cls: type[Any], name: str) -> None:
        self.type = cls
        self.name = name

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


def register_domain_transcodings(transcoder: JSONTranscoder) -> None:
    """Registers :class:`Draw`, :class:`Bucket` and :class:`Hold`."""
    transcoder.register(DataclassAsDict(Draw, "draw"))
    transcoder.register(DataclassAsDict(Bucket, "bucket"))
    transcoder.register(DataclassAsDict(Hold, "hold"))


class FastJSONTranscoder(JSONTranscoder):
    """The library's JSON format, encoded by orjson (several times faster).

    Datetimes and dataclasses are passed to the registered transcodings as the
    library does (``{"_type_", "_data_"}``), so stored events read back the
    same with either encoder; what orjson cannot encode (integers beyond 64
    bits in metadata) falls back to the library's encoder. Decoding is the
    library's.
    """

    OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self._encode_obj, option=self.OPTIONS)
        except TypeError:
            return super().encode(obj)
