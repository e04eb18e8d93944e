"""Serato crates: one `.crate` file per playlist in `_Serato_/Subcrates/`.

A crate is a sequence of tagged fields: a 4-byte ASCII tag, a 4-byte big-endian length, then
the value, either UTF-16BE text or more tagged fields (docs/formats.md, Serato crate).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence

from pooldaemon.exports.body import Body
from pooldaemon.exports.model import ExportTrack, Playlist
from pooldaemon.exports.names import safe_file_name
from pooldaemon.exports.reuse import Part, Reuse

CRATE_VERSION = "1.0/Serato ScratchLive Crate"
NESTING = "%%"  # Serato nests crates by file name: "Parent%%Child.crate"
# The columns Serato shows for the crate, in order: (column name, sort on it first).
_COLUMNS = ("song", "artist", "album", "bpm", "key", "genre", "length", "comment")


def _field(tag: bytes, value: bytes) -> bytes:
    return tag + struct.pack(">I", len(value)) + value


def _text(tag: bytes, value: str) -> bytes:
    # UTF-16BE: characters beyond the BMP (emoji) become surrogate pairs, as Serato writes them.
    return _field(tag, value.encode("utf-16-be", errors="surrogatepass"))


def _header() -> bytes:
    sort = _field(b"osrt", _text(b"tvcn", _COLUMNS[0]) + _field(b"brev", b"\x00"))
    columns = b"".join(
        _field(b"ovct", _text(b"tvcn", name) + _text(b"tvcw", "0")) for name in _COLUMNS
    )
    return _text(b"vrsn", CRATE_VERSION) + sort + columns


_HEADER = _header()


def crate_bytes(track_paths: Sequence[str]) -> bytes:
    """A whole crate listing `track_paths`: paths relative to the volume root, POSIX separators.

    Raises ValueError for an absolute path, which Serato would not find on any volume.
    """
    return b"".join(crate_chunks(track_paths))


def crate_chunks(track_paths: Iterable[str]) -> Iterator[bytes]:
    """`crate_bytes` a piece at a time, for writing a big crate without holding it whole."""
    yield _HEADER
    for path in track_paths:
        yield _track(path)


def _track(path: str) -> bytes:
    if path.startswith("/"):
        raise ValueError(f"a crate path is relative to the volume root, got {path!r}")
    return _field(b"otrk", _text(b"ptrk", path))


def crate_parts(body: Body, reuse: Reuse, playlist: Playlist, volume_root: str) -> Iterator[Part]:
    """One crate as a stream of pieces: the members on the volume mounted at `volume_root`
    (Serato keeps a `_Serato_` folder per volume and stores paths relative to its root)."""
    prefix = volume_root.rstrip("/") + "/"

    def member(_: int, track: ExportTrack) -> bytes | None:
        text = str(track.path)
        return _track(text[len(prefix) :]) if text.startswith(prefix) else None

    yield _HEADER
    _, members = body.members(reuse, playlist, member, counted=False)
    yield from members


def crate_file_name(playlist_name: str, parents: Sequence[str] = ()) -> str:
    """`Parent%%Name.crate`, each level made safe and unable to fake a level of its own."""
    return NESTING.join(_level(level) for level in (*parents, playlist_name)) + ".crate"


def _level(name: str) -> str:
    # No "%%" inside a level, and no "%" at its edges, where it would merge with a separator.
    safe = safe_file_name(name.replace(NESTING, "%"))
    if safe.startswith("%"):
        safe = "-" + safe[1:]
    if safe.endswith("%"):
        safe = safe[:-1] + "-"
    return safe
