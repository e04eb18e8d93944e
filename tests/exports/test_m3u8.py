"""M3U8 playlists: every line resolves to an existing library file (docs/formats.md, M3U8)."""

from __future__ import annotations

from pathlib import Path

from pooldaemon.exports import Playlist, PlaylistKind, export_all
from tests.exports.library import all_targets, make_library


def test_lines_resolve_to_existing_files(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    targets = all_targets(tmp_path, library, rekordbox_xml=None, traktor_nml=None, serato_dir=None)
    written = export_all(library.tracks, library.playlists, targets)
    assert [w.format for w in written] == ["m3u8"] * len(library.playlists)
    by_path = {t.path: t for t in library.tracks}

    for playlist, result in zip(library.playlists, written, strict=True):
        assert result.path.parent == library.root / "Playlists"
        assert result.path.suffix == ".m3u8"
        lines = result.path.read_bytes().decode("utf-8").split("\n")
        assert lines[0] == "#EXTM3U" and lines[-1] == ""
        body = lines[1:-1]
        pairs = list(zip(body[0::2], body[1::2], strict=True))
        members = [p for p in playlist.tracks if p != library.missing]
        assert len(pairs) == len(members)
        for (info, line), expected in zip(pairs, members, strict=True):
            track = by_path[expected]
            seconds = -1 if track.duration_s is None else round(track.duration_s)
            assert info == f"#EXTINF:{seconds},{track.artist} - {track.title}"
            resolved = result.path.parent / line
            assert resolved.exists() and resolved.resolve() == expected.resolve()
            # Relative under the download directory, absolute outside it.
            assert Path(line).is_absolute() == (not expected.is_relative_to(library.root))


def test_absolute_everywhere_without_a_root(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    targets = all_targets(
        tmp_path, library, rekordbox_xml=None, traktor_nml=None, serato_dir=None, m3u8_root=None
    )
    for result in export_all(library.tracks, library.playlists, targets):
        paths = [ln for ln in result.path.read_text("utf-8").splitlines() if ln[:1] != "#"]
        assert paths and all(Path(p).is_absolute() and Path(p).exists() for p in paths)


def test_names_that_clean_up_alike_get_files_of_their_own(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    paths = tuple(t.path for t in library.tracks[:2])
    playlists = [
        Playlist("House/Tech", PlaylistKind.RULE, paths[:1]),
        Playlist("House:Tech", PlaylistKind.RULE, paths[1:]),
        Playlist("house-tech", PlaylistKind.RULE, paths),
    ]
    targets = all_targets(tmp_path, library, rekordbox_xml=None, traktor_nml=None)
    written = export_all(library.tracks, playlists, targets)
    assert not any(w.beside for w in written)
    names = [w.path.name for w in written]
    assert names == [
        "Rules - House-Tech.m3u8",
        "Rules - House-Tech (2).m3u8",
        "Rules - house-tech (3).m3u8",
        "Rules%%House-Tech.crate",
        "Rules%%House-Tech (2).crate",
        "Rules%%house-tech (3).crate",
    ]
    assert len({w.path for w in written}) == 6


def test_only_new_this_week_goes_without_its_folders_name(tmp_path: Path) -> None:
    """A rule the user called "Rules" or "New this week" is named with its folder like any
    other rule; only the "New this week" playlist is named once (docs/interface.md §9)."""
    library = make_library(tmp_path)
    paths = tuple(t.path for t in library.tracks[:2])
    playlists = [
        Playlist("Rules", PlaylistKind.RULE, paths),
        Playlist("New this week", PlaylistKind.RULE, paths),
        Playlist("New this week", PlaylistKind.RECENT, paths),
    ]
    targets = all_targets(tmp_path, library, rekordbox_xml=None, traktor_nml=None)
    names = [w.path.name for w in export_all(library.tracks, playlists, targets)]
    assert names == [
        "Rules - Rules.m3u8",
        "Rules - New this week.m3u8",
        "New this week.m3u8",
        "Rules%%Rules.crate",
        "Rules%%New this week.crate",
        "New this week.crate",
    ]
