"""Collections written again copy their unchanged entries from the last file, byte-exact."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from pooldaemon.exports import ExportTargets, ExportTrack, Playlist, Written, export_all
from pooldaemon.exports.writefile import beside_path
from tests.exports.library import make_library


def _targets(base: Path, **changes: object) -> ExportTargets:
    collections = ExportTargets(
        rekordbox_xml=base / "rekordbox.xml",
        traktor_nml=base / "collection.nml",
        system_volume="Studio SSD",
    )
    return replace(collections, **changes)  # type: ignore[arg-type]


def _remembered(written: list[Written]) -> dict[str, object]:
    return {
        "last_digests": {w.target: w.digest for w in written},
        "layouts": {w.target: w.layout for w in written if w.layout is not None},
    }


def _fresh(base: Path, tracks: list[ExportTrack], playlists: list[Playlist]) -> dict[str, bytes]:
    """The files a first export of this library writes, by format."""
    written = export_all(tracks, playlists, _targets(base))
    return {w.format: w.path.read_bytes() for w in written}


def _grow(tracks: list[ExportTrack], count: int) -> list[ExportTrack]:
    return [
        replace(t, path=t.path.with_name(f"{n} {t.path.name}"), title=f"{t.title} {n}")
        for n in range(count)
        for t in tracks
    ]


def test_changed_added_and_removed_tracks_give_what_a_first_export_gives(tmp_path: Path) -> None:
    library = make_library(tmp_path / "lib")
    tracks = _grow(library.tracks, 30)
    first = export_all(tracks, library.playlists, _targets(tmp_path / "out"))
    cases = {
        "appended": [*tracks, *_grow(library.tracks[:3], 1)],
        "one changed in the middle": [
            *tracks[:50],
            replace(tracks[50], bpm=99.5, title="new & <title>"),
            *tracks[51:],
        ],
        "one removed in the middle": tracks[:70] + tracks[71:],
        "first and last changed": [
            replace(tracks[0], genre="Other"),
            *tracks[1:-1],
            replace(tracks[-1], key="3A"),
        ],
        "none": tracks,
    }
    for name, changed in cases.items():
        out = tmp_path / "out"
        again = export_all(changed, library.playlists, _targets(out, **_remembered(first)))
        expected = _fresh(tmp_path / name, changed, library.playlists)
        assert {w.format: w.path.read_bytes() for w in again} == expected, name
        assert all(w.path.parent == out for w in again)
        assert all(w.replaced == (name != "none") for w in again), name
        # Back to the first library for the next case, the way a daemon's next export would.
        first = export_all(tracks, library.playlists, _targets(out, **_remembered(again)))


def test_unchanged_entries_are_copied_from_the_file_written_last(tmp_path: Path) -> None:
    library = make_library(tmp_path / "lib")
    tracks = _grow(library.tracks, 4)
    first = export_all(tracks, library.playlists, _targets(tmp_path))
    # Stand-in for "rendering again would take seconds": one letter of a title changed in the
    # files, as if we had written it so (their digests recorded): a copied entry keeps it.
    remembered = _remembered(first)
    digests = {}
    for w in first:
        data = w.path.read_bytes().replace(b"Away 3", b"AWAY 3")
        w.path.write_bytes(data)
        digests[w.target] = hashlib.sha256(data).hexdigest()
    remembered["last_digests"] = digests
    added = _grow(library.tracks[:1], 1)
    again = export_all([*tracks, *added], library.playlists, _targets(tmp_path, **remembered))
    for w in again:
        assert w.path == w.target
        assert b"AWAY 3" in w.path.read_bytes() and b"Away 3" not in w.path.read_bytes()
        assert hashlib.sha256(w.path.read_bytes()).hexdigest() == w.digest


def test_a_file_the_user_edited_is_not_copied_from(tmp_path: Path) -> None:
    library = make_library(tmp_path / "lib")
    tracks = _grow(library.tracks, 4)
    first = export_all(tracks, library.playlists, _targets(tmp_path))
    for w in first:  # the user's edit, same length: offsets alone would not tell
        w.path.write_bytes(w.path.read_bytes().replace(b"Away 3", b"AWAY 3"))
    again = export_all(tracks, library.playlists, _targets(tmp_path, **_remembered(first)))
    expected = _fresh(tmp_path / "fresh", tracks, library.playlists)
    for w in again:
        assert w.path == beside_path(w.target)
        assert w.path.read_bytes() == expected[w.format]
        assert b"AWAY 3" in w.target.read_bytes()  # the user's file, as they left it
