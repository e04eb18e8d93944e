"""Traktor's NML collection (version 19): every library file, then the playlists, as a stream.

docs/formats.md (Traktor NML) lists the attributes each entry carries and where they come from.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

from pooldaemon.exports.body import Body, FullBody
from pooldaemon.exports.model import ExportTrack, Playlist, playlist_tree
from pooldaemon.exports.reuse import Part, Reuse
from pooldaemon.exports.volumes import MOUNTS_DIR, SYSTEM_VOLUME_NAME, split_volume_str
from pooldaemon.exports.xmltext import attr, attrs, opt, shared_attr

NML_VERSION = "19"
_MOUNTS = str(MOUNTS_DIR)

# Traktor's MUSICAL_KEY VALUE: 0-11 are C, C#, D, … B major and 12-23 the same tonics in
# minor (docs/formats.md). Pools give keys in Camelot ("8A") or in musical notation ("Am").
_TONICS = {"C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "F": 5, "F#": 6, "GB": 6}
_TONICS |= {"G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11}
_CAMELOT_MAJOR = {8: "C", 9: "G", 10: "D", 11: "A", 12: "E", 1: "B", 2: "F#", 3: "DB", 4: "AB"}
_CAMELOT_MAJOR |= {5: "EB", 6: "BB", 7: "F"}
_CAMELOT = re.compile(r"(1[0-2]|[1-9])\s*([AB])")
_MUSICAL = re.compile(r"([A-G](?:#|B|♯|♭)?)\s*(M|MIN|MINOR|MAJ|MAJOR)?")


@functools.lru_cache(maxsize=256)
def musical_key_value(key: str | None) -> int | None:
    """Traktor's 0-23 key number for a key written as "8A" or "Am"/"F#m"/"Bb", else None."""
    if not key:
        return None
    text = key.strip()
    camelot = _CAMELOT.fullmatch(text.upper())
    if camelot is not None:
        number_, letter = int(camelot.group(1)), camelot.group(2)
        major_tonic = _TONICS[_CAMELOT_MAJOR[number_]]
        # Camelot nA is the relative minor of nB: three semitones below its major tonic.
        return major_tonic if letter == "B" else 12 + (major_tonic - 3) % 12
    # "m" means minor only in lower case ("Am"); "M" alone is not a mode anyone writes.
    minor = text.endswith("m") and not text.lower().endswith(("maj", "major"))
    musical = _MUSICAL.fullmatch(text.upper().replace("♯", "#").replace("♭", "B"))
    if musical is None:
        return None
    tonic = _TONICS.get(musical.group(1))
    if tonic is None:
        return None
    is_minor = minor or (musical.group(2) or "").startswith("MIN")
    return tonic + 12 if is_minor else tonic


def traktor_dir(inner_dir: str) -> str:
    """A directory in Traktor's spelling: each component followed by `/:`, e.g. `/:Users/:dj/:`."""
    return "/:" + inner_dir.replace("/", "/:") + "/:" if inner_dir else "/:"


class NmlLocations:
    """Traktor's LOCATION attributes and PRIMARYKEY for files, given the system volume's name."""

    def __init__(self, system_volume: str = SYSTEM_VOLUME_NAME) -> None:
        self.system_volume = system_volume

    def location(self, path: Path) -> tuple[str, str, str]:
        """(VOLUME, DIR, FILE) of an absolute path."""
        volume, _, inner = split_volume_str(str(path), self.system_volume)
        directory, _, file = inner.rpartition("/")
        return volume, traktor_dir(directory), file

    @staticmethod
    def primary_key(location: tuple[str, str, str]) -> str:
        """The playlist key of a file: VOLUME + DIR + FILE, as Traktor joins them."""
        return "".join(location)


def _date(value: date) -> str:
    # Traktor writes dates as year/month/day without leading zeros ("2024/5/1").
    return f"{value.year}/{value.month}/{value.day}"


def _entry(track: ExportTrack, where: tuple[str, str, str]) -> str:
    # One f-string per entry rather than lists of pairs: this runs 100,000 times an export.
    volume, directory, file = shared_attr(where[0]), shared_attr(where[1]), attr(where[2])
    added = _date(track.added.date())
    duration, year, bpm = track.duration_s, track.year, track.bpm
    album = f'<ALBUM TITLE="{shared_attr(track.album)}"></ALBUM>' if track.album else ""
    playtime = (
        "" if duration is None else f' PLAYTIME="{round(duration)}" PLAYTIME_FLOAT="{duration:.6f}"'
    )
    release = "" if year is None else f' RELEASE_DATE="{year}/1/1"'
    tempo = "" if bpm is None else f'<TEMPO BPM="{bpm:.6f}" BPM_QUALITY="100.000000"></TEMPO>'
    key_value = musical_key_value(track.key)
    key = "" if key_value is None else f'<MUSICAL_KEY VALUE="{key_value}"></MUSICAL_KEY>'
    return (
        f'<ENTRY MODIFIED_DATE="{added}" MODIFIED_TIME="0" TITLE="{attr(track.title)}"'
        f' ARTIST="{shared_attr(track.artist)}"><LOCATION DIR="{directory}" FILE="{file}"'
        f' VOLUME="{volume}" VOLUMEID="{volume}"></LOCATION>{album}'
        f"<INFO{opt('GENRE', track.genre)}{opt('LABEL', track.label)}"
        f"{opt('COMMENT', track.comment)}{opt('MIX', track.mix)}{opt('KEY', track.key)}"
        # Traktor counts FILESIZE in kibibytes.
        f'{playtime} IMPORT_DATE="{added}"{release} FILESIZE="{track.size_bytes // 1024}">'
        f"</INFO>{tempo}{key}</ENTRY>\n"
    )


@functools.lru_cache(maxsize=1024)
def _key_prefix(where: NmlLocations, directory: str) -> str:
    """VOLUME + DIR of the files in `directory` (an absolute path), escaped for an attribute."""
    volume, _, inner = split_volume_str(f"{directory}/x", where.system_volume)
    return attr(volume + traktor_dir(inner.rpartition("/")[0]))


def _playlist_uuid(folder: str, name: str) -> str:
    # Stable across runs, so Traktor sees the same playlist each time, and unique per name.
    return uuid.uuid5(uuid.NAMESPACE_URL, f"pooldaemon:{folder}/{name}").hex


def traktor_parts(body: Body, reuse: Reuse, system_volume: str) -> Iterator[Part]:
    """The NML document as a stream of pieces (`reuse` salted with `system_volume`)."""
    where = NmlLocations(system_volume)
    yield '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
    yield f'<NML VERSION="{NML_VERSION}">'
    yield '<HEAD COMPANY="www.native-instruments.com" PROGRAM="Traktor"></HEAD>\n'
    yield "<MUSICFOLDERS></MUSICFOLDERS>\n"
    yield f'<COLLECTION ENTRIES="{body.count}">\n'
    yield from body.entries(reuse, lambda _, track: _entry(track, where.location(track.path)))
    yield '</COLLECTION>\n<SETS ENTRIES="0"></SETS>\n<PLAYLISTS>\n'
    top = playlist_tree(body.playlists)
    yield f'<NODE TYPE="FOLDER" NAME="$ROOT"><SUBNODES COUNT="{len(top)}">\n'

    def member(_id: int, track: ExportTrack) -> str:
        # VOLUME + DIR + FILE (`primary_key`), the directory's part escaped once per
        # directory: a 100,000-file library lists each file in two or three playlists.
        head, _, file = str(track.path).rpartition("/")
        if head != _MOUNTS:
            key = _key_prefix(where, head) + attr(file)
        else:  # "/Volumes/NAME" is a volume's root, not a file on the system volume
            key = attr(where.primary_key(where.location(track.path)))
        return f'<ENTRY><PRIMARYKEY TYPE="TRACK" KEY="{key}"></PRIMARYKEY></ENTRY>\n'

    def playlist_node(playlist: Playlist) -> Iterator[Part]:
        count, parts = body.members(reuse, playlist, member)
        # Named by the family's folder even when listed on its own: the UUID stays what earlier
        # exports gave the playlist, so Traktor keeps seeing the same one.
        list_id = _playlist_uuid(playlist.folder, playlist.name)
        yield f'<NODE TYPE="PLAYLIST"{attrs([("NAME", playlist.name)])}>'
        yield f'<PLAYLIST ENTRIES="{count}" TYPE="LIST" UUID="{list_id}">\n'
        yield from parts
        yield "</PLAYLIST></NODE>\n"

    for node in top:
        if isinstance(node, Playlist):
            yield from playlist_node(node)
            continue
        folder, members = node
        yield f'<NODE TYPE="FOLDER"{attrs([("NAME", folder)])}>'
        yield f'<SUBNODES COUNT="{len(members)}">\n'
        for playlist in members:
            yield from playlist_node(playlist)
        yield "</SUBNODES></NODE>\n"
    yield "</SUBNODES></NODE>\n</PLAYLISTS>\n</NML>\n"


def traktor_bytes(
    tracks: Sequence[ExportTrack],
    playlists: Sequence[Playlist],
    system_volume: str = SYSTEM_VOLUME_NAME,
    reuse: Reuse | None = None,
) -> Iterator[bytes]:
    """The whole collection as UTF-8 chunks for `write_export`; with `reuse` (salted with
    `system_volume`), unchanged entries are copied from the file written last time."""
    reuse = Reuse(system_volume) if reuse is None else reuse
    return reuse.encode(traktor_parts(FullBody(tracks, playlists), reuse, system_volume))
