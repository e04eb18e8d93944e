"""rekordbox's published XML collection format (`DJ_PLAYLISTS` version 1.0.0), written as a stream.

docs/formats.md (rekordbox XML) lists each element and attribute and where it is defined.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path

from pooldaemon import __version__
from pooldaemon.exports.body import Body, FullBody
from pooldaemon.exports.model import ExportTrack, Playlist, playlist_tree
from pooldaemon.exports.reuse import Part, Reuse
from pooldaemon.exports.xmltext import attr, attrs, opt, shared_attr

LOCATION_PREFIX = "file://localhost"
# Characters that stay literal in a `Location` path: RFC 3986's unreserved set plus the
# sub-delimiters a path segment may hold, as rekordbox's own exports leave `&` and parentheses;
# `%`, `#`, `?`, spaces, quotes, `<`, `>` and every non-ASCII byte are percent-encoded.
_PATH_SAFE = "/!$&'()*+,;=:@~"
# ASCII characters `quote` changes, other than the space. A path of ASCII characters without
# them (most file names) needs only its spaces encoded: quoting is per character, so this gives
# the same text as `quote`, several times faster (a 100,000-file collection calls it for each).
_ASCII_QUOTED = "".join(
    char
    for char in map(chr, range(128))
    if char != " " and urllib.parse.quote(char, safe=_PATH_SAFE) != char
)
_ASCII_OTHER = re.compile(f"[{re.escape(_ASCII_QUOTED)}]")


def location(path: Path) -> str:
    """`file://localhost/` plus the percent-encoded absolute path, as rekordbox writes it.

    The path's bytes are encoded as they are on disk, so a name that is not valid UTF-8
    still round-trips.
    """
    # `str(path)` holds undecodable bytes as surrogate escapes; surrogateescape turns them back.
    text = str(path)
    if text.isascii() and _ASCII_OTHER.search(text) is None:
        return LOCATION_PREFIX + text.replace(" ", "%20")
    return LOCATION_PREFIX + urllib.parse.quote(text, safe=_PATH_SAFE, errors="surrogateescape")


def _track(track_id: int, track: ExportTrack) -> str:
    # One f-string per track rather than a list of pairs: this runs 100,000 times an export.
    duration, year, bpm = track.duration_s, track.year, track.bpm
    total_time = "" if duration is None else f' TotalTime="{round(duration)}"'
    year_attr = "" if year is None else f' Year="{year}"'
    bpm_attr = "" if bpm is None else f' AverageBpm="{bpm:.2f}"'
    return (
        f'<TRACK TrackID="{track_id}" Name="{attr(track.title)}"'
        f' Artist="{shared_attr(track.artist)}"'
        f' Album="{shared_attr(track.album)}" Genre="{shared_attr(track.genre)}"'
        f' Kind="{shared_attr(track.kind_label)}" Size="{track.size_bytes}"{total_time}{year_attr}'
        f'{bpm_attr} DateAdded="{track.added.date().isoformat()}"{opt("Tonality", track.key)}'
        f' Label="{shared_attr(track.label)}" Mix="{shared_attr(track.mix)}"'
        f' Comments="{attr(track.comment)}" Location="{attr(location(track.path))}"/>\n'
    )


def rekordbox_parts(body: Body, reuse: Reuse) -> Iterator[Part]:
    """The document as a stream of pieces; TrackIDs number the collection from 1 in order."""
    yield '<?xml version="1.0" encoding="UTF-8"?>\n<DJ_PLAYLISTS Version="1.0.0">\n'
    product = (("Name", "pooldaemon"), ("Version", __version__), ("Company", "pooldaemon"))
    yield f"<PRODUCT{attrs(product)}/>\n"
    yield f'<COLLECTION Entries="{body.count}">\n'
    yield from body.entries(reuse, _track)
    yield "</COLLECTION>\n<PLAYLISTS>\n"
    top = playlist_tree(body.playlists)
    yield f'<NODE Type="0" Name="ROOT" Count="{len(top)}">\n'

    def playlist_node(playlist: Playlist) -> Iterator[Part]:
        count, parts = body.members(reuse, playlist, _member)
        yield f'<NODE{attrs([("Name", playlist.name)])} Type="1" KeyType="0" Entries="{count}">\n'
        yield from parts
        yield "</NODE>\n"

    for node in top:
        if isinstance(node, Playlist):
            yield from playlist_node(node)
            continue
        folder, members = node
        yield f'<NODE Type="0"{attrs([("Name", folder)])} Count="{len(members)}">\n'
        for playlist in members:
            yield from playlist_node(playlist)
        yield "</NODE>\n"
    yield "</NODE>\n</PLAYLISTS>\n</DJ_PLAYLISTS>\n"


def _member(track_id: int, _: ExportTrack) -> str:
    return f'<TRACK Key="{track_id}"/>\n'


def rekordbox_bytes(
    tracks: Sequence[ExportTrack], playlists: Sequence[Playlist], reuse: Reuse | None = None
) -> Iterator[bytes]:
    """The whole collection as UTF-8 chunks for `write_export`; with `reuse`, unchanged track
    entries are copied from the file written last time."""
    reuse = Reuse() if reuse is None else reuse
    return reuse.encode(rekordbox_parts(FullBody(tracks, playlists), reuse))
