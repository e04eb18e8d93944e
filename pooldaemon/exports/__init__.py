"""Playlists and collections for DJ software: M3U8, rekordbox XML, Traktor NML, Serato crates.

The daemon reads the library from the store into `ExportTrack`s and `Playlist`s, keeps the
digest of each file it wrote (`Written.digest`, keyed by `Written.target`) and hands both to
`export_all`; nothing here reads the store or the config (docs/interface.md §9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pooldaemon.exports.m3u8 import m3u8_bytes, playlist_file_name
from pooldaemon.exports.model import ExportTrack, Playlist, PlaylistKind, file_kind
from pooldaemon.exports.names import unique_name
from pooldaemon.exports.rekordbox import rekordbox_bytes
from pooldaemon.exports.reuse import Fragments, Reuse
from pooldaemon.exports.serato import SUBCRATES_DIR, crate_chunks, crate_file_name
from pooldaemon.exports.traktor import traktor_bytes
from pooldaemon.exports.volumes import SYSTEM_VOLUME_NAME, split_volume_str
from pooldaemon.exports.writefile import Written, write_export

__all__ = [
    "ExportTargets",
    "ExportTrack",
    "Fragments",
    "Playlist",
    "PlaylistKind",
    "Written",
    "export_all",
    "file_kind",
]


@dataclass(frozen=True, slots=True)
class ExportTargets:
    """Where each format goes; None switches a format off (docs/interface.md §2 `[exports]`)."""

    m3u8_dir: Path | None = None
    # M3U8 paths are relative when both the playlist and the file are under this directory
    # (the download directory), absolute otherwise.
    m3u8_root: Path | None = None
    rekordbox_xml: Path | None = None
    traktor_nml: Path | None = None
    serato_dir: Path | None = None  # the `_Serato_` folder; crates go to its `Subcrates`
    system_volume: str = SYSTEM_VOLUME_NAME  # Traktor's name for the volume mounted at /
    # SHA-256 of what pooldaemon last wrote to each target path; absent means never.
    last_digests: Mapping[Path, str] = field(default_factory=dict)
    # Where the tracks' entries are in each collection as last written (`Written.fragments`),
    # for unchanged entries to be copied rather than rendered again.
    fragments: Mapping[Path, Fragments] = field(default_factory=dict)


def export_all(
    tracks: Sequence[ExportTrack], playlists: Sequence[Playlist], targets: ExportTargets
) -> list[Written]:
    """Write every enabled format; one `Written` per file, for the caller to log and remember.

    `tracks` is the whole library; playlist members that are not in it are left out.
    Blocking file I/O: the daemon runs this in a worker thread.
    """
    written: list[Written] = []

    def write(fmt: str, target: Path, chunks: Iterable[bytes]) -> None:
        written.append(write_export(fmt, target, chunks, targets.last_digests.get(target)))

    if targets.m3u8_dir is not None:
        # Keyed by the path's text: hashing a Path caches a list of its parts on it, which
        # for 100,000 paths costs more memory than the whole export.
        by_path = {str(track.path): track for track in tracks}
        used: set[str] = set()
        for playlist in playlists:
            target = targets.m3u8_dir / unique_name(playlist_file_name(playlist), used)
            chunks = m3u8_bytes(playlist, by_path, targets.m3u8_dir, targets.m3u8_root)
            write("m3u8", target, chunks)
    if targets.rekordbox_xml is not None:
        target = targets.rekordbox_xml
        written.append(
            _collection(
                "rekordbox", target, lambda r: rekordbox_bytes(tracks, playlists, r), "", targets
            )
        )
    if targets.traktor_nml is not None:
        volume = targets.system_volume
        written.append(
            _collection(
                "traktor",
                targets.traktor_nml,
                lambda r: traktor_bytes(tracks, playlists, volume, r),
                volume,
                targets,
            )
        )
    if targets.serato_dir is not None:
        written.extend(_serato(tracks, playlists, targets))
    return written


def _collection(
    fmt: str,
    target: Path,
    render: Callable[[Reuse], Iterable[bytes]],
    salt: str,
    targets: ExportTargets,
) -> Written:
    """Write a collection, copying the entries that did not change from the file written last."""
    reuses: list[Reuse] = []

    def chunks(old: BinaryIO | None) -> Iterable[bytes]:
        reuse = Reuse(salt, targets.fragments.get(target), old)
        reuses.append(reuse)
        return render(reuse)

    written = write_export(fmt, target, chunks, targets.last_digests.get(target))
    return dataclasses.replace(written, fragments=reuses[0].result)


def _serato(
    tracks: Sequence[ExportTrack], playlists: Sequence[Playlist], targets: ExportTargets
) -> list[Written]:
    """One crate per playlist; files on another volume than the `_Serato_` folder are left out.

    Serato keeps a `_Serato_` folder per volume and stores paths relative to that volume's root,
    so a crate can only list files on its own volume.
    """
    assert targets.serato_dir is not None
    _, volume_root, _ = split_volume_str(str(targets.serato_dir))
    prefix = volume_root.rstrip("/") + "/"
    library = {str(track.path) for track in tracks}
    result = []
    used: set[str] = set()
    for playlist in playlists:
        paths = (
            text[len(prefix) :]
            for path in playlist.tracks
            if (text := str(path)) in library and text.startswith(prefix)
        )
        name = unique_name(crate_file_name(playlist.name, parents=playlist.parents), used)
        target = targets.serato_dir / SUBCRATES_DIR / name
        chunks = crate_chunks(paths)  # small pieces: the writer buffers them
        result.append(write_export("serato", target, chunks, targets.last_digests.get(target)))
    return result
