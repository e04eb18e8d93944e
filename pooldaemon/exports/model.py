"""What an export sees of the library: tracks and playlists, free of the store and the config."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


class PlaylistKind(enum.StrEnum):
    """The three families of playlists (docs/interface.md §9: `playlists = [...]`)."""

    POOL = "pool"
    RULE = "rule"
    RECENT = "recent"


#: Serato's folder of crates inside a volume's `_Serato_` folder (docs/formats.md).
SUBCRATES_DIR = "Subcrates"

# The folder each family is shown under in rekordbox, Traktor and Serato.
FOLDER_NAMES: Mapping[PlaylistKind, str] = {
    PlaylistKind.POOL: "Pools",
    PlaylistKind.RULE: "Rules",
    PlaylistKind.RECENT: "New this week",
}
#: The families that are one fixed playlist named like their folder: that playlist is listed on
#: its own at the top (`New this week.m3u8`; ROOT › New this week in rekordbox and Traktor),
#: not in a folder holding only itself (docs/interface.md §9).
SINGLE_KINDS = frozenset({PlaylistKind.RECENT})

# rekordbox's `Kind` values, as its own exports spell them (docs/formats.md, rekordbox XML).
_KINDS = {
    ".mp3": "MP3 File",
    ".m4a": "M4A File",
    ".mp4": "MP4 File",
    ".aac": "AAC File",
    ".wav": "WAV File",
    ".aif": "AIFF File",
    ".aiff": "AIFF File",
    ".flac": "FLAC File",
}


def file_kind(path: Path) -> str:
    """The file-type label DJ software shows for `path` ("MP3 File"), from its suffix."""
    suffix = path.suffix.lower()
    return _KINDS.get(suffix, f"{suffix[1:].upper()} File" if suffix else "File")


@dataclass(frozen=True, slots=True)
class ExportTrack:
    """One library file (state `downloaded` or `adopted`) as every export format needs it."""

    path: Path  # absolute
    artist: str
    title: str
    size_bytes: int
    added: datetime
    album: str = ""
    genre: str = ""
    bpm: float | None = None
    key: str | None = None  # musical key as the pool gives it: "8A", "Am", "F#m"
    year: int | None = None
    label: str = ""
    mix: str = ""
    comment: str = ""
    duration_s: float | None = None
    kind: str = ""  # "MP3 File"; empty means "from the suffix" (see `file_kind`)
    pool: str = ""
    ref: str = ""

    def __post_init__(self) -> None:
        if not self.path.is_absolute():
            raise ValueError(f"an exported track needs an absolute path, got {self.path}")

    @property
    def kind_label(self) -> str:
        """`kind`, or the label derived from the file's suffix when the caller left it empty."""
        return self.kind or file_kind(self.path)


@dataclass(frozen=True, slots=True)
class Playlist:
    """A named list of library files, shown in the folder of its kind."""

    name: str
    kind: PlaylistKind
    tracks: tuple[Path, ...] = field(default_factory=tuple)  # absolute paths, in play order
    # When each member's file joined the library (Unix time), for "New this week", whose
    # members leave by age; empty for the other kinds.
    created: tuple[float, ...] = field(default_factory=tuple)

    @property
    def folder(self) -> str:
        """The folder name this playlist is listed under ("Pools", "Rules", "New this week")."""
        return FOLDER_NAMES[self.kind]

    @property
    def parents(self) -> tuple[str, ...]:
        """The folders the playlist is listed in: its family's ("Pools"), or none for the one
        playlist of a family named like it ("New this week"), which would read twice."""
        folder = self.folder
        return () if self.kind in SINGLE_KINDS and folder == self.name else (folder,)


#: A node at the top of the playlist tree: a playlist, or a folder's name and its playlists.
TopNode = Playlist | tuple[str, Sequence[Playlist]]


def playlist_tree(playlists: Sequence[Playlist]) -> list[TopNode]:
    """The top of the tree rekordbox and Traktor show, family by family in `FOLDER_NAMES`
    order: the playlists listed on their own (no `parents`), then the family's folder."""
    top: list[TopNode] = []
    for kind, folder in FOLDER_NAMES.items():
        members = [p for p in playlists if p.kind == kind]
        top += [p for p in members if not p.parents]
        nested = [p for p in members if p.parents]
        if nested:
            top.append((folder, nested))
    return top
