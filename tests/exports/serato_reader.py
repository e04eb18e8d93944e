"""A strict reader for Serato ``.crate`` files, written only from public format notes.

It exists so that pooldaemon's crate writer is checked by a second implementation, written by
someone who has not read the writer: a misreading of the format shared by writer and reader
cannot then hide itself.

Sources (all public, none of them Serato's own, which publishes no specification):

- Mixxx wiki, "Serato Database Format" (mixxx.org/wiki/doku.php/serato_database_format, also
  github.com/mixxxdj/mixxx/wiki/Serato-Database-Format): a crate is a concatenation of records,
  each a 4-byte ASCII tag, a 4-byte big-endian length and that many bytes of body; the first
  letter of the tag gives the body's type (``o`` nested records, ``t`` UTF-16BE text, ``p``
  UTF-16BE path relative to the root of the drive, ``u`` unsigned 32-bit, ``s`` signed, ``b`` one
  byte); ``vrsn`` is UTF-16BE text, ``1.0/Serato ScratchLive Crate``; each track is an ``otrk``
  holding a ``ptrk``; the crate's name is only in its file name.
- Holzhaus/serato-tags, ``scripts/database_v2.py``: the same record framing, read with
  ``struct.unpack('>c3sI', header)``; ``vrsn`` is the one tag whose first letter is not its type.
- dalhaan/dj-migrator-electron, ``docs/decoding-serato-crates.md``: a hex dump of a one-track crate
  written by Serato, with the column records: ``osrt`` (sort column: ``tvcn`` name, ``brev`` one
  byte), then one ``ovct`` per browser column (``tvcn`` name, ``tvcw`` width as UTF-16BE digits),
  then the ``otrk`` records. It notes that Serato repeats column records after the track list.
- davdmrgn/SeratoFolderCrateSync, README "Crate File Info": the same tag table (``osrt``, ``brev``,
  ``ovct``, ``tvcn``, ``tvcw``, ``ptrk``).

What the notes leave open, and what this reader decides:

- Strings carry no terminator and no byte-order mark (the dump shows none), so a U+0000 inside
  a text body, or a BOM at its start, is treated as a writer's mistake.
- The notes disagree on the width of ``s`` records (Holzhaus reads 2 bytes, the Mixxx wiki says
  32 bits), so their bodies are framed but not interpreted.
- Tags seen in every source are four lowercase ASCII letters; anything else in a tag position
  means the framing has gone wrong, and is reported as such.
- The format has no record count and no trailer: a file cut exactly between two records is a
  valid, shorter crate. Only a cut inside a record can be detected here; writers must therefore
  replace crates atomically.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

#: The version text Serato writes into every crate (Mixxx wiki; the dump in dj-migrator's notes).
CRATE_VERSION = "1.0/Serato ScratchLive Crate"

_HEADER = struct.Struct(">4sI")
_TAG = re.compile(rb"[a-z]{4}")
#: Crates nest one level (otrk > ptrk, ovct > tvcn); a little slack, but no unbounded recursion.
_MAX_DEPTH = 4


@dataclass(frozen=True)
class CrateInfo:
    """What a crate says: its version text, its browser columns and its track paths, in order."""

    version: str
    columns: list[str]
    tracks: list[str]


@dataclass(frozen=True)
class _Record:
    tag: str
    offset: int  # of the record's header, from the start of the file
    body: bytes
    children: tuple[_Record, ...]  # parsed body of an ``o`` record, else empty


def read_crate(data: bytes) -> CrateInfo:
    """Parse a whole ``.crate`` file, raising ValueError on anything malformed or truncated."""
    records = _parse(data, 0, len(data), depth=0, parent=None)
    if not records:
        raise ValueError("empty crate: no records at all (a crate starts with 'vrsn')")
    first = records[0]
    if first.tag != "vrsn":
        raise ValueError(f"crate starts with {first.tag!r} at offset 0, not 'vrsn'")
    version = _text(first)
    if not version.endswith("/Serato ScratchLive Crate"):
        raise ValueError(f"not a crate: version is {version!r}, expected {CRATE_VERSION!r}")

    columns: list[str] = []
    tracks: list[str] = []
    for record in records[1:]:
        if record.tag == "vrsn":
            raise ValueError(f"second 'vrsn' record at offset {record.offset}")
        if record.tag == "otrk":
            tracks.append(_track_path(record))
        elif record.tag == "ovct":
            columns.append(_column_name(record))
    return CrateInfo(version=version, columns=columns, tracks=tracks)


def _parse(
    data: bytes, start: int, end: int, *, depth: int, parent: _Record | None
) -> list[_Record]:
    """Split data[start:end] into records, recursing into ``o`` records."""
    where = "end of file" if parent is None else f"end of {parent.tag!r} at offset {parent.offset}"
    records: list[_Record] = []
    pos = start
    while pos < end:
        if end - pos < _HEADER.size:
            raise ValueError(
                f"truncated record header at offset {pos}: {end - pos} byte(s) before the "
                f"{where}, a header needs {_HEADER.size}"
            )
        raw_tag, length = _HEADER.unpack_from(data, pos)
        if not _TAG.fullmatch(raw_tag):
            raise ValueError(f"bad record tag {raw_tag!r} at offset {pos} (framing is off)")
        tag = raw_tag.decode("ascii")
        body_start = pos + _HEADER.size
        if length > end - body_start:
            raise ValueError(
                f"{tag!r} at offset {pos} claims {length} byte(s) but only {end - body_start} "
                f"remain before the {where}"
            )
        if tag == "ptrk" and (parent is None or parent.tag != "otrk"):
            raise ValueError(f"'ptrk' at offset {pos} is not inside an 'otrk'")
        body = data[body_start : body_start + length]
        record = _Record(tag, pos, body, ())
        if tag[0] == "o":
            if depth + 1 > _MAX_DEPTH:
                raise ValueError(f"{tag!r} at offset {pos} nests deeper than {_MAX_DEPTH} levels")
            children = _parse(data, body_start, body_start + length, depth=depth + 1, parent=record)
            record = _Record(tag, pos, body, tuple(children))
        else:
            _check_scalar(record)
        records.append(record)
        pos = body_start + length
    return records


def _check_scalar(record: _Record) -> None:
    """Check a leaf record's body against the width or encoding its type letter promises."""
    kind = record.tag[0]
    if kind in "tp" or record.tag == "vrsn":
        _text(record)
    elif kind == "u" and len(record.body) != 4:
        raise ValueError(
            f"{record.tag!r} at offset {record.offset} is a 32-bit value but has "
            f"{len(record.body)} byte(s)"
        )
    elif kind == "b" and len(record.body) != 1:
        raise ValueError(
            f"{record.tag!r} at offset {record.offset} is a one-byte value but has "
            f"{len(record.body)} byte(s)"
        )


def _text(record: _Record) -> str:
    """Decode a UTF-16BE text body strictly."""
    body = record.body
    if len(body) % 2:
        raise ValueError(
            f"{record.tag!r} at offset {record.offset} holds UTF-16 text but has an odd length "
            f"({len(body)} bytes)"
        )
    try:
        text = body.decode("utf-16-be")  # strict: a lone surrogate raises
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{record.tag!r} at offset {record.offset} is not valid UTF-16BE: {err.reason}"
        ) from err
    if "\x00" in text:
        raise ValueError(f"{record.tag!r} at offset {record.offset} contains a NUL character")
    if text.startswith("\ufeff"):
        raise ValueError(f"{record.tag!r} at offset {record.offset} starts with a byte-order mark")
    return text


def _only_child(record: _Record, tag: str) -> _Record:
    found = [child for child in record.children if child.tag == tag]
    if len(found) != 1:
        raise ValueError(
            f"{record.tag!r} at offset {record.offset} holds {len(found)} {tag!r} record(s), "
            "expected exactly one"
        )
    return found[0]


def _track_path(record: _Record) -> str:
    path = _text(_only_child(record, "ptrk"))
    if not path:
        raise ValueError(f"'otrk' at offset {record.offset} has an empty path")
    return path


def _column_name(record: _Record) -> str:
    name = _text(_only_child(record, "tvcn"))
    if not name:
        raise ValueError(f"'ovct' at offset {record.offset} has an empty column name")
    return name
