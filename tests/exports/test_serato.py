"""Serato crates, checked against the published layout by a small reader in this test.

An independent reader, written by someone else from the public notes, lives beside the
daemon's own tests; this one only checks the structure (docs/formats.md, Serato crate).
"""

from __future__ import annotations

import struct
from pathlib import Path

from pooldaemon.exports import export_all
from pooldaemon.exports.serato import crate_bytes, crate_file_name
from tests.exports.library import all_targets, make_library


def _fields(data: bytes) -> list[tuple[str, bytes]]:
    """Split tag/length/value fields; the lengths must add up to the whole buffer."""
    out = []
    offset = 0
    while offset < len(data):
        tag = data[offset : offset + 4].decode("ascii")
        (length,) = struct.unpack(">I", data[offset + 4 : offset + 8])
        value = data[offset + 8 : offset + 8 + length]
        assert len(value) == length, tag
        out.append((tag, value))
        offset += 8 + length
    assert offset == len(data)
    return out


def _paths(data: bytes) -> list[str]:
    fields = _fields(data)
    assert fields[0] == ("vrsn", "1.0/Serato ScratchLive Crate".encode("utf-16-be"))
    tags = [tag for tag, _ in fields]
    assert tags[1] == "osrt" and "ovct" in tags
    columns = []
    for tag, value in fields:
        if tag == "ovct":
            inner = dict(_fields(value))
            columns.append(inner["tvcn"].decode("utf-16-be"))
            assert "tvcw" in inner
    assert {"song", "artist", "bpm", "key"} <= set(columns)
    paths = []
    for tag, value in fields:
        if tag == "otrk":
            [(inner_tag, inner)] = _fields(value)
            assert inner_tag == "ptrk"
            paths.append(inner.decode("utf-16-be"))
    return paths


def test_crate_bytes_layout_and_paths() -> None:
    paths = ["Users/dj/Music/R&B <1> 100% #2.mp3", "Volumes/x/日本語/🔥.wav"]
    assert _paths(crate_bytes(paths)) == paths
    assert _paths(crate_bytes([])) == []
    # An emoji takes a surrogate pair in UTF-16: four bytes, not two.
    [(_, otrk)] = [f for f in _fields(crate_bytes(["🔥"])) if f[0] == "otrk"]
    assert otrk == b"ptrk" + struct.pack(">I", 4) + "🔥".encode("utf-16-be")


def test_crate_file_names_are_safe_and_nest_only_where_asked() -> None:
    assert crate_file_name("House") == "House.crate"
    assert crate_file_name("Tech House", parents=("Rules",)) == "Rules%%Tech House.crate"
    name = crate_file_name('a/b:c*?"<>|%%d%')
    assert name == "a-b-c------%d-.crate"
    assert "/" not in crate_file_name("../../etc") and not crate_file_name("..").startswith(".")


def test_export_writes_a_crate_per_playlist(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    targets = all_targets(tmp_path, library, m3u8_dir=None, rekordbox_xml=None, traktor_nml=None)
    written = export_all(library.tracks, library.playlists, targets)
    assert len(written) == len(library.playlists)
    for playlist, result in zip(library.playlists, written, strict=True):
        assert result.path.parent == tmp_path / "_Serato_" / "Subcrates"
        assert result.path.name == crate_file_name(playlist.name, parents=playlist.parents)
        # The tests' tmp directory is on the system volume: paths are relative to "/".
        expected = [str(p)[1:] for p in playlist.tracks if p != library.missing]
        assert _paths(result.path.read_bytes()) == expected
        assert all((Path("/") / p).exists() for p in expected)
