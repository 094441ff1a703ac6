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
    bits in metadata) falls back to the library's encoder. Decoding reads with
    orjson and revives ``{"_type_", "_data_"}`` objects bottom-up, as the
    library's object hook does; a document holding a float (which may be an
    integer beyond 64 bits orjson read inexactly) is decoded by the library.
    """

    OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self._encode_obj, option=self.OPTIONS)
        except TypeError:
            return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            return self._revive(orjson.loads(data))
        except _Inexact:
            return super().decode(data)

    def _revive(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            for key, item in value.items():
                item_kind = type(item)
                if item_kind is dict or item_kind is list:
                    value[key] = self._revive(item)
                elif item_kind is float:
                    raise _Inexact
            return self._decode_obj(value) if len(value) == 2 else value
        if kind is list:
            for index, item in enumerate(value):
                item_kind = type(item)
                if item_kind is dict or item_kind is list:
                    value[index] = self._revive(item)
                elif item_kind is float:
                    raise _Inexact
            return value
        if kind is float:
            raise _Inexact
        return value


class _Inexact(Exception):
    """A float in the document: decode it with the library (exact integers)."""
