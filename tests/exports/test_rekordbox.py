"""rekordbox XML read back by pyrekordbox, a reader we did not write (docs/formats.md)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from pyrekordbox.rbxml import Node, RekordboxXml

from pooldaemon.exports import Playlist, PlaylistKind, export_all
from pooldaemon.exports.rekordbox import location
from tests.exports.library import Library, all_targets, make_library


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return make_library(tmp_path)


def _playlist_nodes(xml: RekordboxXml) -> dict[tuple[str, ...], list[int]]:
    """{path of names under ROOT: track ids}, walking the tree without name-based look-ups;
    every folder's Count is the number of nodes it holds."""
    found = {}

    def walk(node: Node, path: tuple[str, ...]) -> None:
        children = node.get_playlists()
        assert node.count == len(children)
        for child in children:
            if child.is_folder:
                walk(child, (*path, child.name))
                continue
            assert child.is_playlist
            assert child.key_type == "TrackID"
            tracks = child.get_tracks()
            assert child.entries == len(tracks)
            found[(*path, child.name)] = tracks

    walk(xml.get_playlist(), ())
    return found


def test_pyrekordbox_reads_every_track_and_playlist(tmp_path: Path, library: Library) -> None:
    targets = all_targets(tmp_path, library, m3u8_dir=None, traktor_nml=None, serato_dir=None)
    [written] = export_all(library.tracks, library.playlists, targets)
    assert written.format == "rekordbox" and written.path == targets.rekordbox_xml

    xml = RekordboxXml(written.path)
    assert xml.frmt_version == "1.0.0"
    assert xml.product_name == "pooldaemon"
    assert xml.num_tracks == len(library.tracks)
    by_id = {}
    for expected, track in zip(library.tracks, xml.get_tracks(), strict=True):
        # pyrekordbox strips "file://localhost/" and so the leading "/" of a POSIX path.
        got = Path("/" + track["Location"])
        assert got == expected.path and got.exists()
        assert track["Name"] == expected.title
        assert track["Artist"] == expected.artist
        assert track["Album"] == expected.album
        assert track["Genre"] == expected.genre
        assert track["Size"] == expected.size_bytes
        assert track["Kind"] == expected.kind_label
        if expected.bpm is None:
            assert track.get("AverageBpm") is None
        else:
            assert track["AverageBpm"] == pytest.approx(expected.bpm, abs=0.005)
        assert track.get("Tonality") == expected.key
        assert track["DateAdded"] == expected.added.strftime("%Y-%m-%d")
        by_id[track["TrackID"]] = expected.path

    nodes = _playlist_nodes(xml)
    expected_nodes = {}
    # docs/interface.md §9: pools and rules each in their folder; "New this week" stands
    # at the top, beside those folders, not in a folder of its own name.
    where = {
        PlaylistKind.POOL: lambda name: ("Pools", name),
        PlaylistKind.RULE: lambda name: ("Rules", name),
        PlaylistKind.RECENT: lambda name: (name,),
    }
    for playlist in library.playlists:
        # Only library files are listed: the missing one is left out.
        members = [p for p in playlist.tracks if p != library.missing]
        expected_nodes[where[playlist.kind](playlist.name)] = members
    top = xml.get_playlist().get_playlists()
    assert [(node.name, node.is_folder) for node in top] == [
        ("Pools", True),
        ("Rules", True),
        ("New this week", False),
    ]
    assert {k: [by_id[i] for i in v] for k, v in nodes.items()} == expected_nodes


def test_location_percent_encodes_what_a_uri_path_cannot_hold() -> None:
    # docs/formats.md: spaces, `%`, `#`, `?`, quotes, `<` and non-ASCII bytes are encoded;
    # `&`, parentheses and the other path sub-delimiters stay literal.
    assert location(Path('/a b/%#?"<>.mp3')) == "file://localhost/a%20b/%25%23%3F%22%3C%3E.mp3"
    assert location(Path("/R&B (x)+[y].mp3")) == "file://localhost/R&B%20(x)+%5By%5D.mp3"
    assert location(Path("/é🔥")) == "file://localhost/%C3%A9%F0%9F%94%A5"


def test_empty_library_still_loads(tmp_path: Path) -> None:
    target = tmp_path / "rekordbox.xml"
    export_all(
        [],
        [],
        all_targets(
            tmp_path,
            make_library(tmp_path / "x"),
            m3u8_dir=None,
            traktor_nml=None,
            serato_dir=None,
            rekordbox_xml=target,
        ),
    )
    xml = RekordboxXml(target)
    assert xml.num_tracks == 0 and xml.get_playlist().get_playlists() == []


def test_a_rule_named_like_a_folder_stays_in_the_rules_folder(tmp_path: Path) -> None:
    """Only "New this week" leaves its folder: a rule the user called "Rules" or "New this
    week" is listed in Rules like any other (docs/interface.md §9)."""
    library = make_library(tmp_path)
    paths = tuple(t.path for t in library.tracks)
    playlists = [
        Playlist("Rules", PlaylistKind.RULE, paths[:2]),
        Playlist("New this week", PlaylistKind.RULE, paths[2:3]),
        Playlist("New this week", PlaylistKind.RECENT, paths),
    ]
    target = tmp_path / "rekordbox.xml"
    targets = all_targets(
        tmp_path, library, m3u8_dir=None, traktor_nml=None, serato_dir=None, rekordbox_xml=target
    )
    export_all(library.tracks, playlists, targets)
    by_id = {t["TrackID"]: Path("/" + t["Location"]) for t in RekordboxXml(target).get_tracks()}
    nodes = _playlist_nodes(RekordboxXml(target))
    assert {k: tuple(by_id[i] for i in v) for k, v in nodes.items()} == {
        ("Rules", "Rules"): paths[:2],
        ("Rules", "New this week"): paths[2:3],
        ("New this week",): paths,
    }


def test_an_earlier_builds_nested_tree_is_replaced_whole(tmp_path: Path, library: Library) -> None:
    """Earlier builds wrote ROOT › New this week › New this week: that file is ours (its digest
    is the one recorded), so the next export replaces it with the new tree."""
    target = tmp_path / "rekordbox.xml"
    targets = all_targets(
        tmp_path, library, m3u8_dir=None, traktor_nml=None, serato_dir=None, rekordbox_xml=target
    )
    export_all(library.tracks, library.playlists, targets)
    text = target.read_text(encoding="utf-8")
    head = '<NODE Name="New this week" Type="1"'
    start, end = text.index(head), text.index("</NODE>\n", text.index(head)) + len("</NODE>\n")
    # The ROOT's Count is 3 either way: Pools, Rules and the folder or the playlist.
    old = (
        text[:start] + '<NODE Type="0" Name="New this week" Count="1">\n'
        f"{text[start:end]}</NODE>\n{text[end:]}"
    )
    target.write_text(old, encoding="utf-8")
    nested = _playlist_nodes(RekordboxXml(target))
    assert ("New this week", "New this week") in nested and ("New this week",) not in nested
    digest = hashlib.sha256(old.encode()).hexdigest()
    again = dataclasses.replace(targets, last_digests={target: digest})
    [written] = export_all(library.tracks, library.playlists, again)
    assert written.path == target and written.replaced and not written.beside
    assert target.read_text(encoding="utf-8") == text
    assert ("New this week",) in _playlist_nodes(RekordboxXml(target))
