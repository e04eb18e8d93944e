"""An independent checker for Traktor ``.nml`` collections, written only from public notes.

Native Instruments publishes no NML specification, and no schema says which attributes Traktor
insists on. So "required" here means: present in every NML Traktor itself writes, and read by the
public importers that had to match Traktor's own files. The checks:

- the root is ``<NML VERSION="19">`` (Traktor Pro 3's collection format);
- one ``HEAD`` with ``COMPANY`` and ``PROGRAM`` (Traktor writes
  ``COMPANY="www.native-instruments.com" PROGRAM="Traktor"``);
- one ``COLLECTION`` whose ``ENTRIES`` equals its number of ``ENTRY`` children;
- every collection ``ENTRY`` has ``TITLE`` and ``ARTIST`` attributes and one ``LOCATION`` with
  non-empty ``VOLUME``, ``DIR`` and ``FILE``; ``DIR`` uses Traktor's ``/:`` separator, starting
  and ending with it (``/:Music/:Pool/:``; the volume root is ``/:``), and ``FILE`` is a bare name;
- no two entries share a location (Traktor keys tracks by it);
- ``PLAYLISTS``, when present, hold one ``NODE TYPE="FOLDER" NAME="$ROOT"``; every folder's
  ``SUBNODES COUNT`` equals its ``NODE`` children; every ``NODE TYPE="PLAYLIST"`` holds a
  ``PLAYLIST TYPE="LIST"`` whose ``ENTRIES`` equals its ``ENTRY`` children; every playlist entry
  is a ``PRIMARYKEY TYPE="TRACK"`` whose ``KEY`` is a collection entry's ``VOLUME + DIR + FILE``
  (e.g. ``VOLUME="osx" DIR="/:Users/:dj/:" FILE="a.mp3"`` → ``KEY="osx/:Users/:dj/:a.mp3"``).

Sources:

- wolkenarchitekt/traktor-nml-utils, ``tests/fixtures/collection.nml`` and ``playlist.nml``: NML
  files written by Traktor (root and ``HEAD`` attributes, ``COLLECTION ENTRIES``, ``ENTRY
  TITLE/ARTIST``, ``LOCATION DIR/FILE/VOLUME/VOLUMEID``, the ``$ROOT`` folder, ``SUBNODES
  COUNT``, ``PLAYLIST ENTRIES/TYPE/UUID``, ``PRIMARYKEY TYPE/KEY``); ``xml_to_xsd/collection.xsd``
  in the same repository, a schema inferred from such files, in which every attribute is optional.
- Mixxx, ``src/library/traktor/traktorfeature.cpp``: its Traktor importer reads ``TITLE`` and
  ``ARTIST`` from ``ENTRY``, builds a track's location as ``VOLUME`` + ``DIR`` (with ``/:``
  replaced by ``/``) + ``FILE``, only walks playlists under ``NODE TYPE="FOLDER" NAME="$ROOT"``,
  and finds a playlist's tracks by matching ``PRIMARYKEY TYPE="TRACK"`` ``KEY`` (same
  replacement) against those locations. A key that matches nothing is silently a missing track,
  which is why it is checked here.
- bsm3d/Traktor-Bridge, NML format notes (``developers/``): VERSION 19 is Traktor Pro 3.x; the
  same ``LOCATION`` and ``PRIMARYKEY`` shapes (``VOLUME="D:"`` → ``KEY="D:/:Music/:…"``).

Left unchecked because no source shows Traktor needs them: ``AUDIO_ID``, ``VOLUMEID``, ``INFO``,
``TEMPO``, ``MUSICFOLDERS`` and the playlist ``UUID``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

#: ``/:`` first, then zero or more non-empty names each closed by ``/:``.
_TRAKTOR_DIR = re.compile(r"/:(?:[^/]+/:)*")


def check_nml(xml_bytes: bytes) -> list[str]:
    """Every problem found in an NML document, as messages; an empty list means it passed."""
    try:
        root = SafeET.fromstring(xml_bytes)
    except (ET.ParseError, DefusedXmlException) as err:
        return [f"not well-formed or unsafe XML: {err}"]

    problems: list[str] = []
    if root.tag != "NML":
        return [f"root element is <{root.tag}>, not <NML>"]
    if root.get("VERSION") != "19":
        problems.append(f'NML VERSION is {root.get("VERSION")!r}, expected "19"')

    heads = root.findall("HEAD")
    if len(heads) != 1:
        problems.append(f"NML has {len(heads)} HEAD elements, expected 1")
    else:
        problems += [
            f"HEAD has no {attr}" for attr in ("COMPANY", "PROGRAM") if not heads[0].get(attr)
        ]

    collections = root.findall("COLLECTION")
    if len(collections) != 1:
        problems.append(f"NML has {len(collections)} COLLECTION elements, expected 1")
        keys: set[str] = set()
    else:
        keys = _check_collection(collections[0], problems)

    playlists = root.findall("PLAYLISTS")
    if len(playlists) > 1:
        problems.append(f"NML has {len(playlists)} PLAYLISTS elements, expected at most 1")
    elif playlists:
        _check_playlists(playlists[0], keys, problems)
    return problems


def _count_matches(element: ET.Element, attr: str, actual: int, where: str, out: list[str]) -> None:
    declared = element.get(attr)
    if declared is None or not declared.isdigit() or int(declared) != actual:
        out.append(f"{where} says {attr}={declared!r} but holds {actual}")


def _check_collection(collection: ET.Element, out: list[str]) -> set[str]:
    """Check the collection's entries; return their keys (VOLUME + DIR + FILE)."""
    entries = collection.findall("ENTRY")
    _count_matches(collection, "ENTRIES", len(entries), "COLLECTION", out)
    keys: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"COLLECTION ENTRY {number} ({entry.get('TITLE', '?')!r})"
        out += [
            f"{where} has no {attr} attribute"
            for attr in ("TITLE", "ARTIST")
            if attr not in entry.attrib
        ]
        locations = entry.findall("LOCATION")
        if len(locations) != 1:
            out.append(f"{where} has {len(locations)} LOCATION elements, expected 1")
            continue
        key = _location_key(locations[0], where, out)
        if key is None:
            continue
        if key in keys:
            out.append(f"{where} repeats the location {key!r}")
        keys.add(key)
    return keys


def _location_key(location: ET.Element, where: str, out: list[str]) -> str | None:
    volume, directory, file = (location.get(attr) for attr in ("VOLUME", "DIR", "FILE"))
    missing = [
        name
        for name, value in (("VOLUME", volume), ("DIR", directory), ("FILE", file))
        if not value
    ]
    if missing:
        out.append(f"{where} LOCATION has no {', '.join(missing)}")
        return None
    assert volume is not None and directory is not None and file is not None
    ok = True
    if not _TRAKTOR_DIR.fullmatch(directory):
        out.append(f"{where} LOCATION DIR {directory!r} does not use Traktor's '/:' separators")
        ok = False
    if "/" in file:
        out.append(f"{where} LOCATION FILE {file!r} is not a bare file name")
        ok = False
    return volume + directory + file if ok else None


def _check_playlists(playlists: ET.Element, keys: set[str], out: list[str]) -> None:
    nodes = playlists.findall("NODE")
    if len(nodes) != 1 or nodes[0].get("TYPE") != "FOLDER" or nodes[0].get("NAME") != "$ROOT":
        out.append('PLAYLISTS must hold exactly one NODE TYPE="FOLDER" NAME="$ROOT"')
        return
    _check_node(nodes[0], "$ROOT", keys, out)


def _check_node(node: ET.Element, path: str, keys: set[str], out: list[str]) -> None:
    kind = node.get("TYPE")
    if kind == "FOLDER":
        subnodes = node.findall("SUBNODES")
        if len(subnodes) != 1:
            out.append(f"folder {path!r} has {len(subnodes)} SUBNODES elements, expected 1")
            return
        children = subnodes[0].findall("NODE")
        _count_matches(subnodes[0], "COUNT", len(children), f"folder {path!r} SUBNODES", out)
        for child in children:
            name = child.get("NAME")
            if not name:
                out.append(f"a NODE in folder {path!r} has no NAME")
                continue
            _check_node(child, f"{path}/{name}", keys, out)
    elif kind == "PLAYLIST":
        lists = node.findall("PLAYLIST")
        if len(lists) != 1:
            out.append(f"playlist {path!r} has {len(lists)} PLAYLIST elements, expected 1")
            return
        playlist = lists[0]
        if playlist.get("TYPE") != "LIST":
            out.append(f'playlist {path!r} PLAYLIST TYPE is {playlist.get("TYPE")!r}, not "LIST"')
        entries = playlist.findall("ENTRY")
        _count_matches(playlist, "ENTRIES", len(entries), f"playlist {path!r}", out)
        for number, entry in enumerate(entries, start=1):
            where = f"playlist {path!r} entry {number}"
            primary = entry.findall("PRIMARYKEY")
            if len(primary) != 1 or primary[0].get("TYPE") != "TRACK":
                out.append(f'{where} needs one PRIMARYKEY TYPE="TRACK"')
                continue
            key = primary[0].get("KEY")
            if key not in keys:
                out.append(f"{where} KEY {key!r} matches no collection entry")
    else:
        out.append(f"NODE {path!r} has TYPE {kind!r}, expected FOLDER or PLAYLIST")
