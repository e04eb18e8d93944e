"""Traktor NML read back with the standard library's XML parser (docs/formats.md, Traktor NML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest

from pooldaemon.exports import ExportTrack, Playlist, PlaylistKind, export_all
from pooldaemon.exports.traktor import musical_key_value, traktor_bytes
from tests.exports.library import Library, all_targets, make_library
from tests.exports.nml_checks import check_nml

# docs/formats.md: what Traktor needs of every collection entry to find and show the file.
REQUIRED = {
    "ENTRY": ("TITLE", "ARTIST"),
    "LOCATION": ("DIR", "FILE", "VOLUME", "VOLUMEID"),
    "INFO": ("FILESIZE", "IMPORT_DATE"),
}


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return make_library(tmp_path)


def _path_of(location: ET.Element, system_volume: str) -> Path:
    """Undo Traktor's spelling: DIR "/:a/:b/:" means /a/b on the system volume."""
    directory = location.attrib["DIR"]
    assert directory.startswith("/:") and directory.endswith("/:")
    parts = [p for p in directory.split("/:") if p]
    assert location.attrib["VOLUME"] == system_volume
    return Path("/", *parts, location.attrib["FILE"])


def test_nml_parses_and_carries_what_traktor_needs(tmp_path: Path, library: Library) -> None:
    targets = all_targets(tmp_path, library, m3u8_dir=None, rekordbox_xml=None, serato_dir=None)
    [written] = export_all(library.tracks, library.playlists, targets)
    root = ET.parse(written.path).getroot()

    assert root.tag == "NML" and root.attrib["VERSION"] == "19"
    assert [child.tag for child in root] == [
        "HEAD",
        "MUSICFOLDERS",
        "COLLECTION",
        "SETS",
        "PLAYLISTS",
    ]
    collection = root.find("COLLECTION")
    assert collection is not None
    entries = collection.findall("ENTRY")
    assert collection.attrib["ENTRIES"] == str(len(entries)) == str(len(library.tracks))

    keys = {}
    for expected, entry in zip(library.tracks, entries, strict=True):
        for tag, names in REQUIRED.items():
            element = entry if tag == "ENTRY" else entry.find(tag)
            assert element is not None, tag
            missing = [n for n in names if n not in element.attrib]
            assert not missing, (tag, missing)
        location = entry.find("LOCATION")
        info = entry.find("INFO")
        assert location is not None and info is not None
        path = _path_of(location, "Macintosh HD")
        assert path == expected.path and path.exists()
        assert entry.attrib["TITLE"] == expected.title
        assert entry.attrib["ARTIST"] == expected.artist
        assert info.attrib["FILESIZE"] == str(expected.size_bytes // 1024)
        assert info.get("GENRE") == (expected.genre or None)
        assert info.get("KEY") == expected.key
        if expected.duration_s is not None:
            assert info.attrib["PLAYTIME"] == str(round(expected.duration_s))
        tempo = entry.find("TEMPO")
        if expected.bpm is None:
            assert tempo is None
        else:
            assert tempo is not None
            assert float(tempo.attrib["BPM"]) == pytest.approx(expected.bpm)
        loc = location.attrib
        keys[loc["VOLUME"] + loc["DIR"] + loc["FILE"]] = expected.path

    playlists = root.find("PLAYLISTS")
    assert playlists is not None
    [top] = playlists.findall("NODE")
    assert top.attrib == {"TYPE": "FOLDER", "NAME": "$ROOT"}
    found = {}
    uuids = set()

    def walk(folder: ET.Element, path: tuple[str, ...]) -> None:
        [subnodes] = folder.findall("SUBNODES")
        children = subnodes.findall("NODE")
        assert subnodes.attrib["COUNT"] == str(len(children))
        for node in children:
            if node.attrib["TYPE"] == "FOLDER":
                walk(node, (*path, node.attrib["NAME"]))
                continue
            assert node.attrib["TYPE"] == "PLAYLIST"
            playlist = node.find("PLAYLIST")
            assert playlist is not None and playlist.attrib["TYPE"] == "LIST"
            uuids.add(playlist.attrib["UUID"])
            pks = playlist.findall("ENTRY/PRIMARYKEY")
            assert playlist.attrib["ENTRIES"] == str(len(pks))
            assert all(pk.attrib["TYPE"] == "TRACK" for pk in pks)
            # Every playlist entry points at a collection entry.
            found[(*path, node.attrib["NAME"])] = [keys[pk.attrib["KEY"]] for pk in pks]

    walk(top, ())
    assert len(uuids) == len(library.playlists)
    # docs/interface.md §9: pools and rules each in their folder; "New this week" stands at
    # the top, beside those folders, not in a folder of its own name.
    assert [(n.attrib["TYPE"], n.attrib["NAME"]) for n in top.findall("SUBNODES/NODE")] == [
        ("FOLDER", "Pools"),
        ("FOLDER", "Rules"),
        ("PLAYLIST", "New this week"),
    ]
    where = {"pool": ("Pools",), "rule": ("Rules",), "recent": ()}
    assert found == {
        (*where[p.kind], p.name): [t for t in p.tracks if t != library.missing]
        for p in library.playlists
    }


def test_external_drive_is_its_own_volume(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    track = ExportTrack(
        path=Path("/Volumes/DJ STICK/Music/a & b.mp3"),
        artist="A",
        title="B",
        size_bytes=4096,
        added=datetime(2026, 1, 2, tzinfo=UTC),
    )
    text = b"".join(traktor_bytes([track], [], system_volume="Studio SSD")).decode()
    location = ET.fromstring(text).find("COLLECTION/ENTRY/LOCATION")
    assert location is not None
    assert location.attrib["VOLUME"] == "DJ STICK"
    assert location.attrib["DIR"] == "/:Music/:"
    assert location.attrib["FILE"] == "a & b.mp3"
    system = PurePosixPath("/Users/dj/x.mp3")
    other = ExportTrack(path=Path(system), artist="", title="", size_bytes=0, added=track.added)
    text = b"".join(traktor_bytes([other], [], system_volume="Studio SSD")).decode()
    location = ET.fromstring(text).find("COLLECTION/ENTRY/LOCATION")
    assert location is not None and location.attrib["VOLUME"] == "Studio SSD"
    assert location.attrib["DIR"] == "/:Users/:dj/:"


# The Camelot wheel against Traktor's numbering (C=0 … B=11 major, Cm=12 … Bm=23), written
# out by hand from docs/formats.md rather than derived from the code's own tables.
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("8B", 0),
        ("3B", 1),
        ("10B", 2),
        ("5B", 3),
        ("12B", 4),
        ("7B", 5),
        ("2B", 6),
        ("9B", 7),
        ("4B", 8),
        ("11B", 9),
        ("6B", 10),
        ("1B", 11),
        ("5A", 12),
        ("12A", 13),
        ("7A", 14),
        ("2A", 15),
        ("9A", 16),
        ("4A", 17),
        ("11A", 18),
        ("6A", 19),
        ("1A", 20),
        ("8A", 21),
        ("3A", 22),
        ("10A", 23),
        ("C", 0),
        ("Am", 21),
        ("F#m", 18),
        ("Bb", 10),
        ("Ebm", 15),
        ("Dbmaj", 1),
        ("G min", 19),
        ("", None),
        ("13A", None),
        ("H", None),
        (None, None),
    ],
)
def test_musical_key_values(key: str | None, value: int | None) -> None:
    assert musical_key_value(key) == value


def test_a_rule_named_like_a_folder_stays_in_the_rules_folder(tmp_path: Path) -> None:
    """Only "New this week" leaves its folder (docs/interface.md §9)."""
    library = make_library(tmp_path)
    paths = tuple(t.path for t in library.tracks[:2])
    playlists = [
        Playlist("Rules", PlaylistKind.RULE, paths),
        Playlist("New this week", PlaylistKind.RULE, paths),
        Playlist("New this week", PlaylistKind.RECENT, paths),
    ]
    text = b"".join(traktor_bytes(library.tracks, playlists))
    assert check_nml(text) == []
    top = ET.fromstring(text).find("PLAYLISTS/NODE/SUBNODES")
    assert top is not None and top.attrib["COUNT"] == "2"
    tree = [
        (
            node.attrib["TYPE"],
            node.attrib["NAME"],
            [n.attrib["NAME"] for n in node.iterfind("SUBNODES/NODE")],
        )
        for node in top.findall("NODE")
    ]
    assert tree == [
        ("FOLDER", "Rules", ["Rules", "New this week"]),
        ("PLAYLIST", "New this week", []),
    ]
