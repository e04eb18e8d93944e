"""The simulated Harvest library: tracks, albums, playlists, formats and the files a download holds.

Deterministic from a seed, so tests can predict every record and every archive entry.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pooldaemon.sim.media import aiff_bytes, mp3_bytes, wav_bytes

__all__ = [
    "ARCHIVE_KINDS",
    "EXTENSIONS",
    "WORDS",
    "Package",
    "SimAlbum",
    "SimPlaylist",
    "SimTrack",
    "hex_id",
    "make_album",
    "make_formats",
    "package_entries",
]

#: `next_archive_kind` values: how the next package's parts are spoiled (docs/reliability.md Z1–Z3).
ARCHIVE_KINDS = (
    "normal",
    "slip",  # an entry named ../../escaped.txt
    "absolute",  # an entry named /tmp/escaped.txt
    "symlink",  # a symlink entry, then a file written through it
    "bomb",  # a 4 MiB entry of zeros deflated to a few KB (ratio ≫ 100)
    "corrupt",  # one byte of an entry's data flipped: the CRC no longer matches
    "truncated",  # part 1 cut short
    "duplicate",  # the same entry name in parts 1 and 2
)
EXTENSIONS = {"mp3": "mp3", "wav": "wav", "aiff": "aif"}
_ARTISTS = ("Nordic Echo", "Velvet Static", "Kai Marlowe", "Solenne", "The Tideline", "Amara Vox")
WORDS = (
    "Golden",
    "Hour",
    "Neon",
    "Drift",
    "Skyline",
    "Pulse",
    "Rise",
    "Midnight",
    "Signal",
    "Bloom",
    "Horizon",
    "Ember",
    "Wild",
    "Motion",
)
_GENRES = ("Pop / Rock", "Electronica", "Hip Hop", "Cinematic", "Corporate", "Acoustic")
_VERSIONS = ("Main", "Instrumental", "30 sec", "Underscore")
_LIBRARIES = ("Harvest Originals", "Northbound Music", "Circuit Library")


def hex_id(*parts: object, length: int = 16) -> str:
    """A stable id from `parts` (the same seed gives the same ids)."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class SimTrack:
    """One track of the simulated library."""

    id: str
    album_id: str
    number: int
    title: str
    artist: str
    genre: str
    bpm: int
    length_s: int
    version: str
    release_date: str
    library: str
    album_title: str

    def record(self) -> dict[str, Any]:
        """The track as the JSON API lists it (PascalCase)."""
        minutes, seconds = divmod(self.length_s, 60)
        return {
            "ID": self.id,
            "TrackNumber": self.number,
            "Name": self.title,
            "DisplayTitle": self.title,
            "Artist": self.artist,
            "AlbumID": self.album_id,
            "AlbumName": self.album_title,
            "LibraryName": self.library,
            "Genre": self.genre,
            "Bpm": self.bpm,
            "Duration": self.length_s,
            "Time": f"{minutes:02d}:{seconds:02d}",
            "Version": self.version,
            "ReleaseDate": f"{self.release_date}T00:00:00",
        }


@dataclass(frozen=True)
class SimAlbum:
    """One album: the unit of getlatestalbums."""

    id: str
    title: str
    artist: str
    library: str
    genre: str
    release_date: str
    tracks: tuple[SimTrack, ...]

    def record(self, *, with_tracks: bool = True) -> dict[str, Any]:
        """The album as the JSON API lists it (PascalCase), with its tracks."""
        record: dict[str, Any] = {
            "ID": self.id,
            "Name": self.title,
            "DisplayTitle": self.title,
            "Artist": self.artist,
            "LibraryName": self.library,
            "Genre": self.genre,
            "ReleaseDate": f"{self.release_date}T00:00:00",
            "TrackCount": len(self.tracks),
        }
        if with_tracks:
            record["Tracks"] = [track.record() for track in self.tracks]
        return record


@dataclass
class SimPlaylist:
    """A member playlist."""

    id: str
    name: str
    track_ids: list[str]
    created: str


@dataclass
class Package:
    """The truth about one requested download: the files it holds and the parts served."""

    key: str
    download_type: str
    identifier: str
    format_ext: str
    name: str
    kind: str
    #: The files a correct extraction yields (name in the archive → bytes).
    entries: dict[str, bytes]
    #: Each part's ZIP bytes, part 1 first.
    parts: list[bytes]
    #: Entries planted by a spoiled `kind` (zip-slip names, links, bombs).
    bad_entries: list[str] = field(default_factory=list)

    @property
    def media_keys(self) -> list[str]:
        """The download host's media keys of the parts, part 1 first."""
        return [f"{self.key}/{n}" for n in range(1, len(self.parts) + 1)]


def make_formats(seed: str) -> list[dict[str, Any]]:
    """The FileFormats getserviceinfo lists: MP3 320 and 128, WAV and AIFF."""
    table = (("mp3", 320), ("mp3", 128), ("wav", 1411), ("aif", 1411))
    return [
        {
            "ID": hex_id(seed, "format", ext, rate),
            "FileExtension": ext,
            "Bitrate": rate,
            "Name": f"{ext.upper()} {rate}kbps",
        }
        for ext, rate in table
    ]


def make_album(seed: str, index: int, count: int, *, after: SimAlbum | None = None) -> SimAlbum:
    """Album number `index` with `count` tracks, released a week after `after` when given."""
    rng = random.Random(f"{seed}:album:{index}")
    album_id = hex_id(seed, "album", index)
    if after is not None:
        released = date.fromisoformat(after.release_date) + timedelta(days=7)
    else:
        released = date(2024, 6, 1) - timedelta(days=7 * index)
    title = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
    artist = rng.choice(_ARTISTS)
    library = rng.choice(_LIBRARIES)
    genre = rng.choice(_GENRES)
    tracks = tuple(
        SimTrack(
            id=hex_id(seed, "track", index, n),
            album_id=album_id,
            number=n,
            title=f"{rng.choice(WORDS)} {rng.choice(WORDS)} {n}",
            artist=artist,
            genre=genre,
            bpm=rng.randint(70, 170),
            length_s=rng.randint(60, 300),
            version=rng.choice(_VERSIONS),
            release_date=released.isoformat(),
            library=library,
            album_title=title,
        )
        for n in range(1, count + 1)
    )
    return SimAlbum(album_id, title, artist, library, genre, released.isoformat(), tracks)


def package_entries(
    download_type: str, tracks: list[SimTrack], ext: str, *, mp3_size: int, wav_size: int
) -> dict[str, bytes]:
    """The files a download of `tracks` in format `ext` holds (name in the archive → bytes)."""
    entries: dict[str, bytes] = {}
    suffix = EXTENSIONS[ext]
    for track in tracks:
        stem = f"{track.artist} - {track.title}"
        if download_type == "album":
            stem = f"{track.number:02d} {stem}"
        name = f"{stem}.{suffix}"
        if name in entries:
            name = f"{stem} ({track.id[:6]}).{suffix}"
        if ext == "mp3":
            entries[name] = mp3_bytes(f"{track.id}:mp3", mp3_size)
        elif ext == "wav":
            entries[name] = wav_bytes(f"{track.id}:wav", wav_size)
        else:
            entries[name] = aiff_bytes(f"{track.id}:aiff", wav_size)
    return entries
