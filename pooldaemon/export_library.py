"""The library as the exports list it: state-database rows turned into tracks and playlists,
and what the last export listed, for the next one to write only what was added since.

docs/interface.md §9 says what is listed; docs/architecture.md (exports) how an export after
files were only added copies the rest from the files written last.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from pooldaemon.exports import Delta, ExportTrack, Playlist, PlaylistKind, Written
from pooldaemon.exports.body import section_name
from pooldaemon.store import exports as store_exports
from pooldaemon.store.exports import LibraryMark

#: "New this week": files added to the library in the last 7 days.
RECENT_S = 7 * 24 * 3600.0
RECENT_NAME = "New this week"
#: Files of an extracted set (a Harvest album) that DJ software plays.
_MEDIA_SUFFIXES = frozenset(
    {".mp3", ".m4a", ".mp4", ".aac", ".wav", ".aif", ".aiff", ".flac", ".mov", ".m4v"}
)


@dataclass(frozen=True, slots=True)
class LibraryView:
    """The library as the exports list it."""

    tracks: list[ExportTrack]
    playlists: list[Playlist]


(
    _ID,
    _POOL,
    _KIND,
    _ITEM_ID,
    _PATH,
    _SIZE,
    _CREATED,
    _ORIGIN,
    _REF,
    _ARCHIVE,
    _ARCHIVE_NAME,
    _ARTIST,
    _TITLE,
    _ALBUM,
    _GENRE,
    _BPM,
    _KEY,
    _YEAR,
    _LABEL,
    _MIX,
    _COMMENT,
    _LENGTH_S,
) = range(len(store_exports.LIBRARY_COLUMNS))


class LibraryBuilder:
    """Library rows (`store_exports.library_page`, in the order they joined the library) →
    tracks and the playlists over them."""

    def __init__(self, *, now: float) -> None:
        self.recent_since = now - RECENT_S
        self._shared = _Shared(datetime.fromtimestamp(now, UTC).astimezone().tzinfo)
        self.tracks: list[ExportTrack] = []
        self._seen: set[str] = set()
        self._by_pool: dict[str, list[Path]] = {}
        self._by_rule: dict[str, list[Path]] = {}
        self._recent: list[Path] = []
        self._recent_created: list[float] = []
        # Entries that came as archives, for the next export to look at again (`SetRow`).
        self.sets: dict[int, SetRow] = {}

    def add(self, rows: Iterable[Any]) -> None:
        for row in rows:
            origin = row[_ORIGIN] or ""
            rule = origin[5:] if origin.startswith("rule:") else None
            recent = row[_CREATED] >= self.recent_since
            for track in _row_tracks(row, self._shared, self.sets):
                key = str(track.path)
                if key in self._seen:
                    continue
                self._seen.add(key)
                self.tracks.append(track)
                self._by_pool.setdefault(track.pool, []).append(track.path)
                if rule:
                    self._by_rule.setdefault(rule, []).append(track.path)
                if recent:
                    self._recent.append(track.path)
                    self._recent_created.append(row[_CREATED])

    def view(self, kinds: set[str]) -> LibraryView:
        """The tracks (oldest first) and the playlists `kinds` asks for (each newest first)."""
        playlists: list[Playlist] = []
        if "pool" in kinds:
            playlists += _family(self._by_pool, PlaylistKind.POOL)
        if "rule" in kinds:
            playlists += _family(self._by_rule, PlaylistKind.RULE)
        if "recent" in kinds:
            # Always there, even empty: the DJ's "New this week" must empty out, not go stale.
            recent = tuple(reversed(self._recent))
            created = tuple(reversed(self._recent_created))
            playlists.append(Playlist(RECENT_NAME, PlaylistKind.RECENT, recent, created))
        return LibraryView(self.tracks, playlists)

    @property
    def tz(self) -> tzinfo | None:
        """The local time zone the tracks' dates are in."""
        return self._shared.tz

    def path_hashes(self) -> array[int]:
        """`hash` of each listed file's path text, sorted: ~8 bytes a file, where the texts
        would take ~100."""
        return array("q", sorted(map(hash, self._seen)))

    def seen(self, path: str, hashes: array[int]) -> bool:
        """Whether `path` may be among `path_hashes` (a collision only costs a full export)."""
        at = bisect.bisect_left(hashes, hash(path))
        return at < len(hashes) and hashes[at] == hash(path)


def _family(members: dict[str, list[Path]], kind: PlaylistKind) -> list[Playlist]:
    return [
        Playlist(name, kind, tuple(reversed(members[name])))
        for name in sorted(members, key=lambda n: (n.casefold(), n))
    ]


class _Shared:
    """One object for each value many tracks have in common, for the length of one export.

    A 100,000-file library read row by row gets its own copy of every artist, genre, label and
    directory; shared, they cost ~50 MB less (docs/interface.md §12: exports under 200 MB).
    """

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz  # one time zone object for every `added`
        self._texts: dict[str, str] = {}
        self._dirs: dict[str, Path] = {}

    def text(self, value: Any) -> str:
        text = _text(value)
        return self._texts.setdefault(text, text)

    def path(self, text: str) -> Path:
        """`Path(text)`, built on a shared parent: the directory's parts are held once."""
        head, _, name = text.rpartition("/")
        if not head:
            return Path(text)
        parent = self._dirs.get(head)
        if parent is None:
            parent = self._dirs[head] = Path(head)
        return parent / name


def _row_tracks(row: Any, shared: _Shared, sets: dict[int, SetRow]) -> list[ExportTrack]:
    """The library entry's file, or the playable files of an extracted set (a folder); an
    archive's entry goes in `sets` too."""
    path = shared.path(row[_PATH])
    if not path.is_absolute():
        return []
    pool = row[_POOL]
    common: dict[str, Any] = {
        "artist": shared.text(row[_ARTIST]),
        "genre": shared.text(row[_GENRE]),
        "bpm": _number(row[_BPM]),
        "key": shared.text(row[_KEY]) or None,
        "year": _whole(row[_YEAR]),
        "label": shared.text(row[_LABEL]),
        "mix": shared.text(row[_MIX]),
        # The tag writer's default comment, so the DJ app shows the same text either way.
        "comment": shared.text(row[_COMMENT]) or shared.text(f"{pool} via pooldaemon"),
        "pool": pool,
        "ref": row[_REF] or f"{pool}:{row[_ITEM_ID]}",
        "added": datetime.fromtimestamp(row[_CREATED], shared.tz),  # local time
    }
    files = [(path, int(row[_SIZE] or 0))]
    if row[_ARCHIVE]:
        # A ZIP download is a folder, unless it was one track placed as a file (Harvest).
        found = set_row(row[_PATH])
        sets[row[_ID]] = found
        folder = found.folder
        if folder:
            files = [(Path(file), size) for file, size in found.files]
    else:
        folder = False
    if not folder or (row[_KIND] == "track" and len(files) == 1):
        # One track (a Harvest track comes as a folder holding its one file): the pool's words.
        title = (row[_TITLE] or files[0][0].stem) if files else ""
        duration = _number(row[_LENGTH_S])
        album = shared.text(row[_ALBUM])
        return [
            ExportTrack(
                path=file, title=title, album=album, size_bytes=size, duration_s=duration, **common
            )
            for file, size in files
        ]
    # A set extracted into a folder: each playable file is a track of the album.
    album = _text(row[_ALBUM]) or _text(row[_ARCHIVE_NAME]) or _text(row[_TITLE]) or path.name
    return [
        ExportTrack(path=file, title=file.stem, album=album, size_bytes=size, **common)
        for file, size in files
    ]


@dataclass(frozen=True, slots=True)
class SetRow:
    """An archive's library entry as the disk has it: a folder and its playable files (or a
    file: one track placed as a file). The user may change a folder without the library
    knowing, so every export looks again."""

    path: str
    folder: bool
    files: tuple[tuple[str, int], ...] = ()


def set_row(path: str) -> SetRow:
    """`SetRow` of the archive entry at `path`, as it is now."""
    if not os.path.isdir(path):
        return SetRow(path, False)
    return SetRow(path, True, tuple((str(file), size) for file, size in _media_files(Path(path))))


def _media_files(folder: Path) -> list[tuple[Path, int]]:
    """Playable regular files under `folder`, in name order, with their sizes; links are not
    followed (an archive's entries are regular files)."""
    found: list[tuple[Path, int]] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() not in _MEDIA_SUFFIXES:
                    continue
                file = Path(top) / name
                with contextlib.suppress(OSError):
                    info = file.lstat()
                    if not os.path.islink(file):
                        found.append((file, info.st_size))
    return found


# -- what the last export listed ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listed:
    """What an export listed and wrote: enough for the next one to tell whether files were
    only added since, and to write just those (`exports.export_changes`). ~10 bytes a file."""

    mark: LibraryMark  # where the library stood when it was read
    tz: tzinfo | None  # the local time zone then: the files show local dates
    count: int  # tracks in the collections
    paths: array[int]  # `LibraryBuilder.path_hashes`
    sets: Mapping[int, SetRow]
    playlists: frozenset[tuple[PlaylistKind, str]]
    written: Mapping[Path, Written]  # by target


def listed(
    builder: LibraryBuilder, view: LibraryView, mark: LibraryMark, written: Iterable[Written]
) -> Listed:
    """`Listed` after a full export of `builder`'s library."""
    return Listed(
        mark,
        builder.tz,
        len(view.tracks),
        builder.path_hashes(),
        dict(builder.sets),
        frozenset((p.kind, p.name) for p in view.playlists),
        {w.target: w for w in written},
    )


def delta(before: Listed, added: LibraryBuilder, kinds: set[str]) -> Delta | None:
    """The export after `added` (a builder fed the entries added since `before`) as a `Delta`,
    or None when more than that changed: then only a full export can tell.

    Blocking (it looks at the archives' folders again): run in a worker thread.
    """
    if added.tz != before.tz:
        return None  # the UTC offset changed (summer time): every date may read differently
    if any(set_row(row.path) != row for row in before.sets.values()):
        return None
    if any(added.seen(str(track.path), before.paths) for track in added.tracks):
        return None  # a file listed already: the older entry keeps it, as a full export does
    new = added.view(kinds)
    by_name = {(p.kind, p.name): p for p in new.playlists}
    playlists = []
    for kind, family in ((PlaylistKind.POOL, "pool"), (PlaylistKind.RULE, "rule")):
        if family not in kinds:
            continue
        names = {name for k, name in before.playlists if k is kind}
        names |= {p.name for p in new.playlists if p.kind is kind}
        for name in sorted(names, key=lambda n: (n.casefold(), n)):
            playlists.append(by_name.get((kind, name)) or Playlist(name, kind))
    playlists += [p for p in new.playlists if p.kind is PlaylistKind.RECENT]
    return Delta(
        new_tracks=new.tracks,
        playlists=playlists,
        first_id=before.count + 1,
        recent_since=added.recent_since,
        new_playlists=frozenset(
            section_name(p) for p in playlists if (p.kind, p.name) not in before.playlists
        ),
    )


def listed_after(
    before: Listed,
    added: LibraryBuilder,
    change: Delta,
    mark: LibraryMark,
    written: Iterable[Written],
) -> Listed:
    """`before` with the files of `change` added, and what was written for them."""
    paths = before.paths
    new = added.path_hashes()
    if len(new) > 1000:
        paths = array("q", sorted([*paths, *new]))
    elif new:
        paths = array("q", paths)
        for value in new:
            bisect.insort(paths, value)
    return Listed(
        mark,
        before.tz,
        before.count + len(change.new_tracks),
        paths,
        {**before.sets, **added.sets},
        before.playlists | {(p.kind, p.name) for p in change.playlists},
        {w.target: w for w in written},
    )


# -- values ------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None  # 0, NaN: unknown


def _whole(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None
