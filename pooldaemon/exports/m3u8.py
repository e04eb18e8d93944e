"""M3U8 playlists: UTF-8, `#EXTM3U`, one `#EXTINF` line and one path per track.

docs/formats.md (M3U8): paths are relative to the playlist when the file is under the same
root (so a copied or re-mounted music folder keeps working), absolute otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from pooldaemon.exports.model import ExportTrack, Playlist
from pooldaemon.exports.names import safe_file_name


def playlist_file_name(playlist: Playlist) -> str:
    """`<Folder> - <name>.m3u8`, so the three families sort apart in one directory;
    `<name>.m3u8` when the folder has the playlist's name (`New this week.m3u8`)."""
    return safe_file_name(" - ".join((*playlist.parents, playlist.name))) + ".m3u8"


def _line_text(text: str) -> str:
    # A line break inside a name would start a new line that players read as a path.
    return " ".join(text.splitlines())


def m3u8_lines(
    playlist: Playlist,
    tracks: Mapping[str, ExportTrack],
    playlist_dir: Path,
    root: Path | None,
) -> Iterator[str]:
    """The lines of one playlist file; `tracks` maps path text to track, and playlist members
    not in it (not in the library) are left out."""
    yield "#EXTM3U\n"
    # Pure string work per line (no pathlib): 100,000 lines must take well under a second.
    # The paths are normalised and absolute, so a prefix test is "is under".
    root_prefix = None
    if root is not None and playlist_dir.is_relative_to(root):
        root_prefix = str(root).rstrip("/") + "/"
        up = os.path.relpath(root, playlist_dir)  # "..", or "../.." for a deeper folder
    for path in playlist.tracks:
        text = str(path)
        track = tracks.get(text)
        if track is None:
            continue
        seconds = round(track.duration_s) if track.duration_s is not None else -1
        yield f"#EXTINF:{seconds},{_line_text(track.artist)} - {_line_text(track.title)}\n"
        if root_prefix is not None and text.startswith(root_prefix):
            yield f"{up}/{text[len(root_prefix) :]}\n"
        else:
            yield f"{text}\n"


def m3u8_bytes(
    playlist: Playlist,
    tracks: Mapping[str, ExportTrack],
    playlist_dir: Path,
    root: Path | None,
) -> Iterator[bytes]:
    """`m3u8_lines` encoded as UTF-8 (undecodable file-name bytes written back as they were)."""
    for line in m3u8_lines(playlist, tracks, playlist_dir, root):
        yield line.encode("utf-8", errors="surrogateescape")
