"""What the formats write between their headers: the whole library, or what changed since.

Every format walks the same outline (the collection's entries, then each playlist's members)
through a body. `FullBody` renders every track and member. `SpliceBody` serves an export after
files were only added (and members left "New this week" by age): the old file's entries and
members are copied, the new ones rendered and put in place, so the bytes are those a full
export of the same library would write (tests/test_exporter_changes.py checks it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pooldaemon.exports.model import ExportTrack, Playlist, PlaylistKind
from pooldaemon.exports.reuse import Item, Part, Render, Reuse, Section

#: A playlist member's bytes (track id, track), or None to leave it out (Serato: another volume).
MemberRender = Callable[[int, ExportTrack], str | bytes | None]


def section_name(playlist: Playlist) -> str:
    """The key of a playlist's members in a file's `Layout`."""
    return f"{playlist.kind}:{playlist.name}"


def _aging(playlist: Playlist) -> bool:
    return playlist.kind is PlaylistKind.RECENT


def _encode(data: str | bytes) -> bytes:
    return data.encode("utf-8", errors="surrogateescape") if isinstance(data, str) else data


class Body(Protocol):
    """The library as one file sees it; see the module docstring."""

    @property
    def count(self) -> int:
        """Tracks in the collection."""

    @property
    def playlists(self) -> Sequence[Playlist]:
        """Every playlist, in the order the files list them."""

    def entries(self, reuse: Reuse, render: Render) -> Iterator[Part]:
        """The collection's entries, TrackIDs from 1."""

    def members(
        self, reuse: Reuse, playlist: Playlist, render: MemberRender, *, counted: bool = True
    ) -> tuple[int, Iterator[Part]]:
        """How many members of `playlist` are in the collection (0 unless `counted`: a
        format that writes no count need not pay for it), and their parts."""


class FullBody:
    """Every track and member rendered (entries unchanged since the last file copied)."""

    def __init__(self, tracks: Sequence[ExportTrack], playlists: Sequence[Playlist]) -> None:
        self.tracks = tracks
        self.playlists = playlists
        self._ids: dict[str, int] | None = None

    @property
    def count(self) -> int:
        return len(self.tracks)

    def entries(self, reuse: Reuse, render: Render) -> Iterator[Part]:
        return reuse.entries(self.tracks, render)

    def members(
        self, reuse: Reuse, playlist: Playlist, render: MemberRender, *, counted: bool = True
    ) -> tuple[int, Iterator[Part]]:
        if self._ids is None:
            # Keyed by the path's text: hashing a Path caches a list of its parts on it, which
            # for 100,000 paths costs more memory than the whole export.
            self._ids = {str(t.path): i for i, t in enumerate(self.tracks, start=1)}
        ids, tracks = self._ids, self.tracks
        # Counted first and spelled while writing: a list of every member's bytes would hold a
        # few megabytes per big playlist for no gain.
        count = sum(map(ids.__contains__, map(str, playlist.tracks))) if counted else 0
        get = ids.get
        members = playlist.tracks

        def items() -> Iterator[str | bytes]:
            for path in members:
                i = get(str(path))
                if i is not None and (data := render(i, tracks[i - 1])) is not None:
                    yield data

        def aged() -> Iterator[Item]:
            # A caller that does not say when members joined: they count as old.
            created = playlist.created or itertools.repeat(0.0)
            for path, added in zip(members, created, strict=False):
                i = get(str(path))
                if i is not None and (data := render(i, tracks[i - 1])) is not None:
                    yield _encode(data), added

        if _aging(playlist):
            return count, reuse.aging_section(section_name(playlist), aged())
        return count, reuse.section(section_name(playlist), items())


@dataclass(frozen=True, slots=True)
class Delta:
    """What changed since the last export, when files were only added.

    `playlists` is every playlist now, each holding only its new members (newest first, their
    `created` filled in); `first_id` is the TrackID of the first new track.
    """

    new_tracks: Sequence[ExportTrack]
    playlists: Sequence[Playlist]
    first_id: int
    recent_since: float  # "New this week" members added before this leave it
    new_playlists: frozenset[str] = frozenset()  # `section_name`s of playlists new since

    def changes(self, playlist: Playlist, before: Section) -> bool:
        """Whether `playlist`'s file may differ from when it held `before`: new members, or
        members of "New this week" that have aged out."""
        if playlist.tracks:
            return True
        return (
            before.created is not None
            and before.count > 0
            and (min(before.created) < self.recent_since)
        )


class SpliceBody:
    """The old file's entries and members copied, the new ones rendered (see `Delta`)."""

    def __init__(self, delta: Delta) -> None:
        self.delta = delta
        self.playlists = delta.playlists
        first = delta.first_id
        self._by_path = {str(t.path): (first + i, t) for i, t in enumerate(delta.new_tracks)}

    @property
    def count(self) -> int:
        return self.delta.first_id - 1 + len(self.delta.new_tracks)

    def entries(self, reuse: Reuse, render: Render) -> Iterator[Part]:
        return reuse.append_entries(self.delta.new_tracks, render, self.delta.first_id)

    def members(
        self, reuse: Reuse, playlist: Playlist, render: MemberRender, *, counted: bool = True
    ) -> tuple[int, Iterator[Part]]:
        new: list[Item] = []
        created = playlist.created or (0.0,) * len(playlist.tracks)
        for path, added in zip(playlist.tracks, created, strict=True):
            hit = self._by_path.get(str(path))
            if hit is not None and (data := render(*hit)) is not None:
                new.append((_encode(data), added))
        return reuse.splice(
            section_name(playlist),
            new,
            aging=_aging(playlist),
            since=self.delta.recent_since,
        )
