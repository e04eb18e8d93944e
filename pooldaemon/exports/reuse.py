"""A collection's track entries copied from the file written last time instead of rendered again.

A 100,000-file collection is mostly the same tracks as last time: rendering each entry again
costs seconds, copying the old file's bytes milliseconds. Each written collection remembers,
per track, a key of everything its entry is made of and where the entry ends in the file; the
next export copies the runs of entries whose key is unchanged. Only a file whose SHA-256 is
still what was written (so its bytes are ours, docs/reliability.md E1) is read from.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from pooldaemon.exports.model import ExportTrack

_BLOCK = 1 << 20  # bytes copied or encoded at a time


@dataclass(frozen=True, slots=True)
class Fragments:
    """Where each track's entry is in a collection file: ~16 bytes a track."""

    start: int  # offset of the first entry in the file
    keys: array[int]  # `_key` of each track, in order
    ends: array[int]  # where each entry ends, counted from `start`


@dataclass(slots=True)
class _Copy:
    """Bytes [begin, end) of the old file, counted from its first entry."""

    begin: int
    end: int


class _Mark:
    """Where the entries begin: set to the output's byte count when the encoder reaches it."""

    pos = 0


Part = str | bytes | _Copy | _Mark
Render = Callable[[int, ExportTrack], str]


# Every field but the path, which is hashed as text: hashing a Path keeps its hash on it, a few
# megabytes for 100,000 tracks.
_FIELDS = operator.attrgetter(
    *(field.name for field in dataclasses.fields(ExportTrack) if field.name != "path")
)


def _key(salt: str, position: int, track: ExportTrack) -> int:
    # Everything an entry is made of: its position (rekordbox's TrackID), the track's fields
    # and what the format adds from outside (Traktor's system volume name). In memory only,
    # for the daemon's lifetime, so Python's per-process hash is fine; 64 bits make a
    # collision between two different tracks at the same position out of reach.
    return hash((salt, position, str(track.path), _FIELDS(track)))


class Reuse:
    """One collection file's entries: copied from `old` where unchanged, rendered otherwise.

    `previous` is what the file held when last written; `old` that file, open, when its bytes
    are still exactly those (the caller checked its digest), else None. After the export,
    `result` describes the new file.
    """

    def __init__(
        self, salt: str = "", previous: Fragments | None = None, old: BinaryIO | None = None
    ) -> None:
        self.salt = salt
        self.previous = previous if old is not None else None
        self.old = old
        self.result: Fragments | None = None
        self.copied = 0  # entries copied rather than rendered, for tests and logs

    def entries(
        self, tracks: Sequence[ExportTrack], render: Render, first_id: int = 1
    ) -> Iterator[Part]:
        """The entries of `tracks` (numbered from `first_id`), as text, bytes and copies."""
        mark = _Mark()
        yield mark
        keys: array[int] = array("q")
        ends: array[int] = array("q")
        previous = self.previous
        old_keys = previous.keys if previous is not None else array("q")
        old_ends = previous.ends if previous is not None else array("q")
        pos = 0
        run: _Copy | None = None
        for index, track in enumerate(tracks):
            key = _key(self.salt, index + first_id, track)
            keys.append(key)
            if index < len(old_keys) and old_keys[index] == key:
                begin = old_ends[index - 1] if index else 0
                end = old_ends[index]
                if run is not None and run.end == begin:
                    run.end = end
                else:
                    if run is not None:
                        yield run
                    run = _Copy(begin, end)
                pos += end - begin
                self.copied += 1
            else:
                if run is not None:
                    yield run
                    run = None
                data = render(index + first_id, track).encode("utf-8")
                pos += len(data)
                yield data
            ends.append(pos)
        if run is not None:
            yield run
        self.result = Fragments(start=mark.pos, keys=keys, ends=ends)

    def encode(self, parts: Iterable[Part]) -> Iterator[bytes]:
        """`parts` as UTF-8 chunks of about a megabyte, the copies read from the old file."""
        pending: list[bytes] = []
        size = 0
        written = 0
        for part in parts:
            if isinstance(part, _Copy):
                # In order: what is pending goes out before the copied bytes.
                if pending:
                    yield b"".join(pending)
                    pending.clear()
                    size = 0
                yield from self._read(part)
                written += part.end - part.begin
                continue
            if isinstance(part, _Mark):
                part.pos = written
                continue
            data = part.encode("utf-8") if isinstance(part, str) else part
            pending.append(data)
            size += len(data)
            written += len(data)
            if size >= _BLOCK:
                yield b"".join(pending)
                pending.clear()
                size = 0
        if pending:
            yield b"".join(pending)

    def _read(self, copy: _Copy) -> Iterator[bytes]:
        assert self.old is not None and self.previous is not None
        fd = self.old.fileno()
        offset = self.previous.start + copy.begin
        left = copy.end - copy.begin
        while left > 0:
            data = os.pread(fd, min(left, _BLOCK), offset)
            if not data:
                # The file was checked a moment ago; shorter now means someone is changing it.
                raise OSError(f"{self.old.name} changed while it was read for the export")
            offset += len(data)
            left -= len(data)
            yield data
