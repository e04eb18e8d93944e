"""A page of tracks as flat rows: how a decoded page crosses a process boundary to the store.

A 1,000-record page as `Track` objects with their `raw` dicts is ~25,000 Python objects; as
rows it is one list of scalars and strings, which pickles back from the page decoder's worker
process (`offload.py`) in a few milliseconds and binds to SQLite as it is. Each row holds
`ROW_FIELDS`: a `Track`'s fields between `pool` and `raw`, in their order, then `raw` as
compact JSON text, the form the mirror keeps it in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import chain
from operator import attrgetter
from typing import Any, overload

import orjson

from pooldaemon.models import Track

#: A row's fields: `id` … `downloaded` as `Track` has them, then `raw` as JSON text.
ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Track))[1:]
WIDTH = len(ROW_FIELDS)
_SCALARS = attrgetter(*ROW_FIELDS[:-1])

_JSON_TEXT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def raw_text(raw: dict[str, Any]) -> str:
    """Compact JSON text of a record's `raw`, the same for the same record on every sync (the
    stored text is how a page tells changed records from unchanged ones).

    orjson writes it ~6x faster than `json` (a 174,420-record sync spent ~1.1 s here); `json`
    writes only what orjson refuses, and that depends on the record alone: integers past 64
    bits, lone surrogates.
    """
    try:
        return orjson.dumps(raw).decode()
    except orjson.JSONEncodeError:
        return _JSON_TEXT(raw)


@dataclass(frozen=True, slots=True, eq=False)
class TrackRows(Sequence[Track]):
    """One pool's tracks, `WIDTH` values per track in `values`; indexing rebuilds a `Track`."""

    pool: str
    values: list[Any]

    @classmethod
    def of(cls, pool: str, tracks: Iterable[Track]) -> TrackRows:
        """Rows of `tracks` (as they are when they already are rows)."""
        if isinstance(tracks, TrackRows):
            return tracks
        return cls(pool, list(chain.from_iterable((*_SCALARS(t), raw_text(t.raw)) for t in tracks)))

    def __len__(self) -> int:
        return len(self.values) // WIDTH

    @overload
    def __getitem__(self, index: int) -> Track: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Track]: ...
    def __getitem__(self, index: int | slice) -> Track | Sequence[Track]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("track row out of range")
        row = self.values[index * WIDTH : (index + 1) * WIDTH]
        named = dict(zip(ROW_FIELDS[:-1], row, strict=False))
        return Track(pool=self.pool, **named, raw=json.loads(row[-1]))

    def __iter__(self) -> Iterator[Track]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    def ids(self) -> list[str]:
        return self.values[0::WIDTH]

    def raws(self) -> list[str]:
        return self.values[WIDTH - 1 :: WIDTH]
