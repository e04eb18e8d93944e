"""Playlists and collections for DJ software: M3U8, rekordbox XML, Traktor NML, Serato crates.

The daemon reads the library from the store into `ExportTrack`s and `Playlist`s, keeps the
digest of each file it wrote (`Written.digest`, keyed by `Written.target`) and hands both to
`export_all`, or, after files were only added, what they add to `export_changes`, which
splices each file from the one written last; nothing here reads the store or the config
(docs/interface.md §9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pooldaemon.exports.body import Body, Delta, FullBody, SpliceBody, section_name
from pooldaemon.exports.model import (
    SUBCRATES_DIR,
    ExportTrack,
    Playlist,
    PlaylistKind,
    file_kind,
)
from pooldaemon.exports.names import unique_name
from pooldaemon.exports.reuse import Layout, Part, Reuse
from pooldaemon.exports.volumes import SYSTEM_VOLUME_NAME, split_volume_str
from pooldaemon.exports.writefile import Written, splice_export, write_export

__all__ = [
    "Delta",
    "ExportTargets",
    "ExportTrack",
    "Layout",
    "Playlist",
    "PlaylistKind",
    "Written",
    "export_all",
    "export_changes",
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
    # Where the parts of each file are as last written (`Written.layout`), for unchanged
    # collection entries to be copied rather than rendered again.
    layouts: Mapping[Path, Layout] = field(default_factory=dict)


#: The parts of one file, given the body, the file's `Reuse` and where the file goes.
_Parts = Callable[[Body, Reuse], Iterator[Part]]


def _files(
    targets: ExportTargets, playlists: Sequence[Playlist]
) -> Iterator[tuple[str, Path, str, _Parts, Playlist | None]]:
    """Every file the enabled formats write: (format, target, salt, parts, its playlist).

    Each format's writer is imported when it is enabled and an export runs: an idle daemon does
    not carry them (issue 13)."""
    if targets.m3u8_dir is not None:
        from pooldaemon.exports.m3u8 import m3u8_parts, playlist_file_name

        folder, root = targets.m3u8_dir, targets.m3u8_root
        used: set[str] = set()
        for playlist in playlists:
            target = folder / unique_name(playlist_file_name(playlist), used)

            def m3u8(body: Body, reuse: Reuse, p: Playlist = playlist) -> Iterator[Part]:
                return m3u8_parts(body, reuse, p, folder, root)

            yield "m3u8", target, "", m3u8, playlist
    if targets.rekordbox_xml is not None:
        from pooldaemon.exports.rekordbox import rekordbox_parts

        yield "rekordbox", targets.rekordbox_xml, "", rekordbox_parts, None
    if targets.traktor_nml is not None:
        from pooldaemon.exports.traktor import traktor_parts

        volume = targets.system_volume

        def traktor(body: Body, reuse: Reuse) -> Iterator[Part]:
            return traktor_parts(body, reuse, volume)

        yield "traktor", targets.traktor_nml, volume, traktor, None
    if targets.serato_dir is not None:
        from pooldaemon.exports.serato import crate_file_name, crate_parts

        # Serato keeps a `_Serato_` folder per volume and stores paths relative to that
        # volume's root, so a crate can only list files on its own volume.
        _, volume_root, _ = split_volume_str(str(targets.serato_dir))
        crates = targets.serato_dir / SUBCRATES_DIR
        used = set()
        for playlist in playlists:
            name = unique_name(crate_file_name(playlist.name, parents=playlist.parents), used)

            def crate(body: Body, reuse: Reuse, p: Playlist = playlist) -> Iterator[Part]:
                return crate_parts(body, reuse, p, volume_root)

            yield "serato", crates / name, "", crate, playlist


def export_all(
    tracks: Sequence[ExportTrack], playlists: Sequence[Playlist], targets: ExportTargets
) -> list[Written]:
    """Write every enabled format; one `Written` per file, for the caller to log and remember.

    `tracks` is the whole library; playlist members that are not in it are left out.
    Blocking file I/O: the daemon runs this in a worker thread.
    """
    body = FullBody(tracks, playlists)
    return [
        _write(fmt, target, salt, parts, body, targets)
        for fmt, target, salt, parts, _ in _files(targets, playlists)
    ]


def _write(
    fmt: str, target: Path, salt: str, parts: _Parts, body: Body, targets: ExportTargets
) -> Written:
    """Write one file, copying what did not change from the file written last."""
    reuses: list[Reuse] = []

    def chunks(old: BinaryIO | None) -> Iterable[bytes]:
        reuse = Reuse(salt, targets.layouts.get(target), old)
        reuses.append(reuse)
        return reuse.encode(parts(body, reuse))

    written = write_export(fmt, target, chunks, targets.last_digests.get(target))
    return dataclasses.replace(written, layout=reuses[0].result)


def export_changes(
    delta: Delta, targets: ExportTargets, before: Mapping[Path, Written]
) -> tuple[list[Written], bool]:
    """Write every enabled format after files were only added (`Delta`), from the files
    written last (`before`, by target): the same bytes `export_all` would write, in a fraction
    of the time. A file whose content stays the same is left alone (`Written.replaced` False).

    Returns what was written and whether that is all: False when a file is not as it was
    written last (or never was), and only `export_all` can say what it should hold. That is
    found before anything is written, unless someone changes a file meanwhile.
    """
    body = SpliceBody(delta)
    plan: list[tuple[str, Path, str, _Parts, Written | None, bool]] = []
    for fmt, target, salt, parts, playlist in _files(targets, delta.playlists):
        last = before.get(target)
        layout = last.layout if last is not None else None
        if last is not None and (last.beside or layout is None):
            return [], False
        if playlist is None:  # a collection
            if layout is None or layout.fragments is None:
                return [], False
            plan.append((fmt, target, salt, parts, last, True))
            continue
        name = section_name(playlist)
        if name in delta.new_playlists:
            if last is not None:
                return [], False  # the file of another playlist (names cleaned up alike)
            plan.append((fmt, target, salt, parts, None, True))
            continue
        if layout is None or name not in layout.sections:
            return [], False  # not written last time, or another playlist's file
        changed = delta.changes(playlist, layout.sections[name])
        plan.append((fmt, target, salt, parts, last, changed))
    written: list[Written] = []
    for fmt, target, salt, parts, last, changed in plan:
        if not changed:
            assert last is not None
            written.append(dataclasses.replace(last, replaced=False))
            continue
        try:
            result = _splice(fmt, target, salt, parts, body, last, targets)
        except OSError:
            # What was written is returned to be recorded (else the next export would take
            # those files for the user's); the full export that follows reports the error.
            return written, False
        if result is None:
            return written, False
        written.append(result)
    return written, True


def _splice(
    fmt: str,
    target: Path,
    salt: str,
    parts: _Parts,
    body: Body,
    last: Written | None,
    targets: ExportTargets,
) -> Written | None:
    if last is None:  # a new playlist: no file of ours to copy from
        return _write(fmt, target, salt, parts, body, targets)
    reuses: list[Reuse] = []

    def chunks(old: BinaryIO) -> Iterable[bytes]:
        reuse = Reuse(salt, last.layout, old)
        reuses.append(reuse)
        return reuse.encode(parts(body, reuse))

    written = splice_export(fmt, target, last, chunks)
    if written is None:
        return None
    return dataclasses.replace(written, layout=reuses[0].result)
