"""M3U8 playlists: UTF-8, `#EXTM3U`, one `#EXTINF` line and one path per track.

docs/formats.md (M3U8): paths are relative to the playlist when the file is under the same
root (so a copied or re-mounted music folder keeps working), absolute otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pooldaemon.exports.body import Body
from pooldaemon.exports.model import ExportTrack, Playlist
from pooldaemon.exports.names import safe_file_name
from pooldaemon.exports.reuse import Part, Reuse

HEADER = "#EXTM3U\n"


def playlist_file_name(playlist: Playlist) -> str:
    """`<Folder> - <name>.m3u8`, so the three families sort apart in one directory;
    `<name>.m3u8` for a playlist listed on its own (`New this week.m3u8`, `Playlist.parents`)."""
    return safe_file_name(" - ".join((*playlist.parents, playlist.name))) + ".m3u8"


def _line_text(text: str) -> str:
    # A line break inside a name would start a new line that players read as a path.
    return " ".join(text.splitlines())


def m3u8_member(playlist_dir: Path, root: Path | None) -> Callable[[int, ExportTrack], str]:
    """The `#EXTINF` line and the path line of a member, for a playlist in `playlist_dir`."""
    # Pure string work per line (no pathlib): 100,000 lines must take well under a second.
    # The paths are normalised and absolute, so a prefix test is "is under".
    root_prefix = None
    up = ""
    if root is not None and playlist_dir.is_relative_to(root):
        root_prefix = str(root).rstrip("/") + "/"
        up = os.path.relpath(root, playlist_dir)  # "..", or "../.." for a deeper folder

    def member(_: int, track: ExportTrack) -> str:
        text = str(track.path)
        seconds = round(track.duration_s) if track.duration_s is not None else -1
        info = f"#EXTINF:{seconds},{_line_text(track.artist)} - {_line_text(track.title)}\n"
        if root_prefix is not None and text.startswith(root_prefix):
            return f"{info}{up}/{text[len(root_prefix) :]}\n"
        return f"{info}{text}\n"

    return member


def m3u8_parts(
    body: Body, reuse: Reuse, playlist: Playlist, playlist_dir: Path, root: Path | None
) -> Iterator[Part]:
    """One playlist file as a stream of pieces."""
    yield HEADER
    _, members = body.members(reuse, playlist, m3u8_member(playlist_dir, root), counted=False)
    yield from members


def m3u8_lines(
    playlist: Playlist,
    tracks: Mapping[str, ExportTrack],
    playlist_dir: Path,
    root: Path | None,
) -> Iterator[str]:
    """The lines of one playlist file; `tracks` maps path text to track, and playlist members
    not in it (not in the library) are left out."""
    yield HEADER
    member = m3u8_member(playlist_dir, root)
    for path in playlist.tracks:
        track = tracks.get(str(path))
        if track is not None:
            info, newline, line = member(0, track).partition("\n")
            yield info + newline
            yield line


def m3u8_bytes(
    playlist: Playlist,
    tracks: Mapping[str, ExportTrack],
    playlist_dir: Path,
    root: Path | None,
) -> Iterator[bytes]:
    """`m3u8_lines` encoded as UTF-8 (undecodable file-name bytes written back as they were)."""
    for line in m3u8_lines(playlist, tracks, playlist_dir, root):
        yield line.encode("utf-8", errors="surrogateescape")
