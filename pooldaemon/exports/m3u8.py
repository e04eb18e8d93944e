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
    """`<Folder> - <name>.m3u8`, so the three families sort apart in one directory."""
    return safe_file_name(f"{playlist.folder} - {playlist.name}") + ".m3u8"


def _line_text(text: str) -> str:
    # A line break inside a name would start a new line that players read as a path.
    return " ".join(text.splitlines())


def m3u8_lines(
    playlist: Playlist,
    tracks: Mapping[Path, ExportTrack],
    playlist_dir: Path,
    root: Path | None,
) -> Iterator[str]:
    """The lines of one playlist file; tracks not in `tracks` (not in the library) are left out."""
    yield "#EXTM3U\n"
    under_root = root is not None and playlist_dir.is_relative_to(root)
    for path in playlist.tracks:
        track = tracks.get(path)
        if track is None:
            continue
        seconds = round(track.duration_s) if track.duration_s is not None else -1
        yield f"#EXTINF:{seconds},{_line_text(track.artist)} - {_line_text(track.title)}\n"
        if under_root and root is not None and path.is_relative_to(root):
            yield os.path.relpath(path, playlist_dir) + "\n"
        else:
            yield f"{path}\n"


def m3u8_bytes(
    playlist: Playlist,
    tracks: Mapping[Path, ExportTrack],
    playlist_dir: Path,
    root: Path | None,
) -> Iterator[bytes]:
    """`m3u8_lines` encoded as UTF-8 (undecodable file-name bytes written back as they were)."""
    for line in m3u8_lines(playlist, tracks, playlist_dir, root):
        yield line.encode("utf-8", errors="surrogateescape")
