"""rekordbox's published XML collection format (`DJ_PLAYLISTS` version 1.0.0), written as a stream.

docs/formats.md (rekordbox XML) lists each element and attribute and where it is defined.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path

from pooldaemon import __version__
from pooldaemon.exports.model import FOLDER_NAMES, ExportTrack, Playlist
from pooldaemon.exports.xmltext import attrs, batched_utf8, number

LOCATION_PREFIX = "file://localhost"
# Characters that stay literal in a `Location` path: RFC 3986's unreserved set plus the
# sub-delimiters a path segment may hold, as rekordbox's own exports leave `&` and parentheses;
# `%`, `#`, `?`, spaces, quotes, `<`, `>` and every non-ASCII byte are percent-encoded.
_PATH_SAFE = "/!$&'()*+,;=:@~"


def location(path: Path) -> str:
    """`file://localhost/` plus the percent-encoded absolute path, as rekordbox writes it.

    The path's bytes are encoded as they are on disk, so a name that is not valid UTF-8
    still round-trips.
    """
    return LOCATION_PREFIX + urllib.parse.quote(os.fsencode(path), safe=_PATH_SAFE)


def _track(track_id: int, track: ExportTrack) -> str:
    pairs: list[tuple[str, str | None]] = [
        ("TrackID", str(track_id)),
        ("Name", track.title),
        ("Artist", track.artist),
        ("Album", track.album),
        ("Genre", track.genre),
        ("Kind", track.kind_label),
        ("Size", str(track.size_bytes)),
        ("TotalTime", None if track.duration_s is None else str(round(track.duration_s))),
        ("Year", None if track.year is None else str(track.year)),
        ("AverageBpm", None if track.bpm is None else number(track.bpm, 2)),
        ("DateAdded", track.added.date().isoformat()),
        ("Tonality", track.key),
        ("Label", track.label),
        ("Mix", track.mix),
        ("Comments", track.comment),
        ("Location", location(track.path)),
    ]
    return f"<TRACK{attrs(pairs)}/>\n"


def rekordbox_parts(tracks: Sequence[ExportTrack], playlists: Sequence[Playlist]) -> Iterator[str]:
    """The document as a stream of text pieces; TrackIDs number `tracks` from 1 in order."""
    yield '<?xml version="1.0" encoding="UTF-8"?>\n<DJ_PLAYLISTS Version="1.0.0">\n'
    product = (("Name", "pooldaemon"), ("Version", __version__), ("Company", "pooldaemon"))
    yield f"<PRODUCT{attrs(product)}/>\n"
    yield f'<COLLECTION Entries="{len(tracks)}">\n'
    ids: dict[Path, int] = {}
    for track_id, track in enumerate(tracks, start=1):
        ids[track.path] = track_id
        yield _track(track_id, track)
    yield "</COLLECTION>\n<PLAYLISTS>\n"
    folders = [kind for kind in FOLDER_NAMES if any(p.kind == kind for p in playlists)]
    yield f'<NODE Type="0" Name="ROOT" Count="{len(folders)}">\n'
    for kind in folders:
        members = [p for p in playlists if p.kind == kind]
        yield f'<NODE Type="0"{attrs([("Name", FOLDER_NAMES[kind])])} Count="{len(members)}">\n'
        for playlist in members:
            keys = [ids[path] for path in playlist.tracks if path in ids]
            head = attrs([("Name", playlist.name)])
            yield f'<NODE{head} Type="1" KeyType="0" Entries="{len(keys)}">\n'
            for key in keys:
                yield f'<TRACK Key="{key}"/>\n'
            yield "</NODE>\n"
        yield "</NODE>\n"
    yield "</NODE>\n</PLAYLISTS>\n</DJ_PLAYLISTS>\n"


def rekordbox_bytes(
    tracks: Sequence[ExportTrack], playlists: Sequence[Playlist]
) -> Iterator[bytes]:
    """`rekordbox_parts` as UTF-8 chunks for `write_export`."""
    return batched_utf8(rekordbox_parts(tracks, playlists))
