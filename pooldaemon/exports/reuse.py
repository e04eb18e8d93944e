"""An export file written again from the one written last: unchanged parts copied, not rendered.

A 100,000-file collection is mostly the same tracks as last time: rendering each entry again
costs seconds, copying the old file's bytes milliseconds. Each written file remembers its
`Layout`: where its sections (the collection's entries, each playlist's members) are, and for a
collection a key per entry of everything the entry is made of. The next export copies what is
unchanged: runs of entries whose key is the same (`Reuse.entries`), or whole sections with new
members put in front and members gone taken out (`Reuse.splice`). Only a file whose bytes are
still exactly what was written (the caller checked, docs/reliability.md E1) is read from.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pooldaemon.exports.model import ExportTrack

_BLOCK = 1 << 20  # bytes copied or encoded at a time


@dataclass(frozen=True, slots=True)
class Fragments:
    """Where each track's entry is in a collection file: ~16 bytes a track."""

    start: int  # offset of the first entry in the file
    keys: array[int]  # `_key` of each track, in order
    ends: array[int]  # where each entry ends, counted from `start`


@dataclass(frozen=True, slots=True)
class Section:
    """A run of items in a written file (a playlist's members), and what each item is for.

    `tails` and `created` are kept for playlists whose members leave by age ("New this week"):
    per item, the bytes from its start to the section's end (unchanged when items are put in
    front) and when its file joined the library.
    """

    start: int  # offset in the file
    size: int  # bytes
    count: int  # items
    tails: array[int] | None = None
    created: array[float] | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the parts of a written file are, for the next export to copy from."""

    sections: Mapping[str, Section] = field(default_factory=dict)
    fragments: Fragments | None = None  # a collection's track entries


@dataclass(slots=True)
class _Copy:
    """Bytes [begin, end) of the old file."""

    begin: int
    end: int


class _Mark:
    """A place in the output: set to the output's byte count when the encoder reaches it."""

    pos = 0


Part = str | bytes | _Copy | _Mark
Render = Callable[[int, ExportTrack], str]
#: An item of a section: its bytes and when its file joined the library.
Item = tuple[bytes, float]


# Every field but the path, which is hashed as text: hashing a Path keeps its hash on it, a few
# megabytes for 100,000 tracks.
_FIELDS = operator.attrgetter(
    *(field.name for field in dataclasses.fields(ExportTrack) if field.name != "path")
)


def _join(block: list[Any]) -> Part:
    return b"".join(block) if isinstance(block[0], bytes) else "".join(block)


def _key(salt: str, position: int, track: ExportTrack) -> int:
    # Everything an entry is made of: its position (rekordbox's TrackID), the track's fields
    # and what the format adds from outside (Traktor's system volume name). In memory only,
    # for the daemon's lifetime, so Python's per-process hash is fine; 64 bits make a
    # collision between two different tracks at the same position out of reach.
    return hash((salt, position, str(track.path), _FIELDS(track)))


@dataclass(slots=True)
class _Pending:
    """A section being written: its marks are set once the encoder has passed them."""

    begin: _Mark
    end: _Mark
    count: int
    starts: array[int] | None  # item starts from `begin`, when tails are kept
    created: array[float] | None
    # Splice: tails of the old items kept, already relative to the section's end.
    old_tails: array[int] | None = None


class Reuse:
    """One export file's parts: copied from `old` where unchanged, rendered otherwise.

    `previous` is the layout of the file when last written; `old` that file, open, when its
    bytes are still exactly those (the caller checked its digest), else None. After the export,
    `result` describes the new file.
    """

    def __init__(
        self, salt: str = "", previous: Layout | None = None, old: BinaryIO | None = None
    ) -> None:
        self.salt = salt
        self.previous = previous if old is not None else None
        self.old = old
        self.copied = 0  # entries copied rather than rendered, for tests and logs
        self._fragments: Fragments | None = None
        self._entries_mark: _Mark | None = None
        self._sections: dict[str, _Pending] = {}

    @property
    def result(self) -> Layout:
        """The layout of the file written (valid once `encode` has run to the end)."""
        fragments = self._fragments
        if fragments is not None and self._entries_mark is not None:
            fragments = dataclasses.replace(fragments, start=self._entries_mark.pos)
        sections = {}
        for name, p in self._sections.items():
            size = p.end.pos - p.begin.pos
            tails = p.old_tails
            if p.starts is not None:
                new = array("q", (size - start for start in p.starts))
                tails = new + tails if tails is not None else new
            sections[name] = Section(p.begin.pos, size, p.count, tails, p.created)
        return Layout(sections, fragments)

    # -- a collection's entries ----------------------------------------------------------------

    def entries(
        self, tracks: Sequence[ExportTrack], render: Render, first_id: int = 1
    ) -> Iterator[Part]:
        """The entries of `tracks` (numbered from `first_id`), as text, bytes and copies."""
        mark = self._entries_mark = _Mark()
        yield mark
        keys: array[int] = array("q")
        ends: array[int] = array("q")
        previous = self.previous.fragments if self.previous is not None else None
        base = previous.start if previous is not None else 0
        old_keys = previous.keys if previous is not None else array("q")
        old_ends = previous.ends if previous is not None else array("q")
        pos = 0
        run: _Copy | None = None
        for index, track in enumerate(tracks):
            key = _key(self.salt, index + first_id, track)
            keys.append(key)
            if index < len(old_keys) and old_keys[index] == key:
                begin = base + (old_ends[index - 1] if index else 0)
                end = base + old_ends[index]
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
        self._fragments = Fragments(start=0, keys=keys, ends=ends)

    def append_entries(
        self, tracks: Sequence[ExportTrack], render: Render, first_id: int
    ) -> Iterator[Part]:
        """Every entry of the old file as it is, then those of `tracks`, numbered from
        `first_id` (the old file's entries are tracks 1 to `first_id - 1`)."""
        assert self.previous is not None and self.previous.fragments is not None
        previous = self.previous.fragments
        mark = self._entries_mark = _Mark()
        yield mark
        size = previous.ends[-1] if previous.ends else 0
        if size:
            yield _Copy(previous.start, previous.start + size)
        keys, ends = array("q"), array("q")
        pos = size
        for index, track in enumerate(tracks):
            keys.append(_key(self.salt, index + first_id, track))
            data = render(index + first_id, track).encode("utf-8")
            pos += len(data)
            ends.append(pos)
            yield data
        self._fragments = Fragments(0, previous.keys + keys, previous.ends + ends)

    # -- playlists -----------------------------------------------------------------------------

    def section(self, name: str, items: Iterable[str | bytes]) -> Iterator[Part]:
        """A playlist's members, written whole: joined a few thousand at a time (one part per
        item would cost the encoder as much again as rendering them)."""
        begin, end = _Mark(), _Mark()
        pending = self._sections[name] = _Pending(begin, end, 0, None, None)
        yield begin
        count = 0
        block: list[Any] = []
        for data in items:
            block.append(data)
            if len(block) == 4096:
                count += len(block)
                yield _join(block)
                block.clear()
        count += len(block)
        if block:
            yield _join(block)
        pending.count = count
        yield end

    def aging_section(self, name: str, items: Iterable[Item]) -> Iterator[Part]:
        """`section` for members that leave by age: each item's place and age is kept, for
        `splice` to take members out later."""
        begin, end = _Mark(), _Mark()
        starts: array[int] = array("q")
        created: array[float] = array("d")
        pending = self._sections[name] = _Pending(begin, end, 0, starts, created)
        yield begin
        pos = 0
        for data, added in items:
            starts.append(pos)
            created.append(added)
            pos += len(data)
            yield data
        pending.count = len(starts)
        yield end

    def splice(
        self, name: str, new: Sequence[Item], *, aging: bool, since: float
    ) -> tuple[int, Iterator[Part]]:
        """A playlist's members: `new` in front of the old file's, less those (with `aging`)
        whose file joined the library before `since`. Returns the count and the parts."""
        old = self.previous.sections.get(name) if self.previous is not None else None
        runs: list[_Copy] = []
        count = len(new)
        old_tails: array[int] | None = array("q") if aging else None
        old_created: array[float] | None = array("d") if aging else None
        if old is not None and old.count:
            end = old.start + old.size
            if not aging:
                runs.append(_Copy(old.start, end))
                count += old.count
            else:
                assert old.tails is not None and old.created is not None
                assert old_tails is not None and old_created is not None
                if min(old.created) >= since:  # nobody leaves: the common case, in C
                    runs.append(_Copy(old.start, end))
                    old_tails, old_created = old.tails, old.created
                    count += old.count
                else:
                    kept = [i for i, added in enumerate(old.created) if added >= since]
                    for i in kept:
                        tail = old.tails[i]
                        after = old.tails[i + 1] if i + 1 < old.count else 0
                        begin = end - tail
                        if runs and runs[-1].end == begin:
                            runs[-1].end = end - after
                        else:
                            runs.append(_Copy(begin, end - after))
                    # Tails count to the section's end: a kept item's is the size of the kept
                    # items from it on.
                    tails = array("q", bytes(8 * len(kept)))
                    acc = 0
                    for j in range(len(kept) - 1, -1, -1):
                        i = kept[j]
                        acc += old.tails[i] - (old.tails[i + 1] if i + 1 < old.count else 0)
                        tails[j] = acc
                    old_tails = tails
                    old_created = array("d", (old.created[i] for i in kept))
                    count += len(kept)
        first, last = _Mark(), _Mark()
        starts: array[int] | None = array("q") if aging else None
        created: array[float] | None = None
        if aging:
            assert starts is not None and old_created is not None
            created = array("d", (added for _, added in new)) + old_created
        self._sections[name] = _Pending(first, last, count, starts, created, old_tails)

        def parts() -> Iterator[Part]:
            yield first
            pos = 0
            for data, _ in new:
                if starts is not None:
                    starts.append(pos)
                pos += len(data)
                yield data
            yield from runs
            yield last

        return count, parts()

    # -- bytes ---------------------------------------------------------------------------------

    def encode(self, parts: Iterable[Part]) -> Iterator[bytes]:
        """`parts` as UTF-8 chunks of about a megabyte, the copies read from the old file.

        Text is encoded with `surrogateescape`: a file name's undecodable bytes go back as
        they were (M3U8); the XML formats hold no surrogates (`xmltext.attr` replaces them).
        """
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
            data = part.encode("utf-8", errors="surrogateescape") if isinstance(part, str) else part
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
        assert self.old is not None
        fd = self.old.fileno()
        offset = copy.begin
        left = copy.end - copy.begin
        while left > 0:
            data = os.pread(fd, min(left, _BLOCK), offset)
            if not data:
                # The file was checked a moment ago; shorter now means someone is changing it.
                raise OSError(f"{self.old.name} changed while it was read for the export")
            offset += len(data)
            left -= len(data)
            yield data
