"""The audio checksum: SHA-256 of a media file's audio payload only, without its tag blocks.

DJ software writes into the files it plays: ID3 frames (Serato's cue points and analysis are
GEOB frames), MP4 metadata boxes, RIFF/AIFF ID3 chunks. Such a file is not corrupt, so the
library's audit compares this checksum, which covers only what is heard (docs/reliability.md
L2); a cut-off or flipped audio byte changes it (L3).

| format | the payload hashed |
| --- | --- |
| MP3 | the frames: without ID3v2 tags in front, ID3v1, APEv2, Lyrics3 and appended ID3v2 behind |
| MP4, M4A, MOV | the contents of every top-level `mdat` box |
| WAV | the `data` chunk's contents |
| AIFF | the `SSND` chunk's contents |
| FLAC | everything after the metadata blocks (the frames) |
| anything else | the whole file |

`read_audio` also says when a file is visibly cut short (a box or chunk longer than the file, an
MP3 whose last frame does not end where the audio ends). It reads a file object it is handed and
never writes; opening the file is the caller's business (docs/interface.md §8: read-only).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["EXTENSIONS", "AudioRead", "audio_kind", "audio_problem", "read_audio"]

_CHUNK = 1024 * 1024

#: File name extensions the library treats as audio or video, by the format `read_audio` reads.
EXTENSIONS: dict[str, str] = {
    ".mp3": "mp3",
    ".m4a": "mp4",
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mp4",
    ".aac": "other",
    ".wav": "wav",
    ".aif": "aiff",
    ".aiff": "aiff",
    ".flac": "flac",
    ".ogg": "other",
    ".opus": "other",
}


@dataclass(frozen=True, slots=True)
class AudioRead:
    """What `read_audio` found: the checksum, and why the file looks broken (None: it does not)."""

    audio_hash: str
    kind: str
    problem: str | None = None


def audio_kind(head: bytes, name: str = "") -> str:
    """The format of a file from its first 12 bytes, else from its name's extension."""
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b"fLaC"):
        return "flac"
    return EXTENSIONS.get(os.path.splitext(name)[1].lower(), "other")


def read_audio(fh: BinaryIO, size: int, name: str = "") -> AudioRead:
    """The audio checksum of an open file of `size` bytes (see the module)."""
    kind, spans, problem = _spans(fh, size, name)
    digest = hashlib.sha256()
    for start, end in spans:
        _hash_span(fh, digest, start, end)
    return AudioRead(digest.hexdigest(), kind, problem)


def audio_problem(fh: BinaryIO, size: int, name: str = "") -> str | None:
    """Why an open file looks cut short or damaged, reading only its block headers and tail."""
    return _spans(fh, size, name)[2]


def _spans(fh: BinaryIO, size: int, name: str) -> tuple[str, list[tuple[int, int]], str | None]:
    fh.seek(0)
    head = fh.read(12)
    kind = audio_kind(head, name)
    if kind == "mp3":
        spans, problem = _mp3_spans(fh, size)
    elif kind == "mp4":
        spans, problem = _mp4_spans(fh, size)
    elif kind == "wav":
        spans, problem = _chunk_spans(fh, size, little=True, want=b"data")
    elif kind == "aiff":
        spans, problem = _chunk_spans(fh, size, little=False, want=b"SSND")
    elif kind == "flac":
        spans, problem = _flac_spans(fh, size)
    else:
        spans, problem = [(0, size)], None
    return kind, spans, problem


def _hash_span(fh: BinaryIO, digest: hashlib._Hash, start: int, end: int) -> None:
    fh.seek(start)
    left = end - start
    while left > 0:
        piece = fh.read(min(_CHUNK, left))
        if not piece:
            break
        digest.update(piece)
        left -= len(piece)


def _read_at(fh: BinaryIO, offset: int, length: int) -> bytes:
    fh.seek(offset)
    return fh.read(length)


# -- MP3 -----------------------------------------------------------------------------------------


def _syncsafe(data: bytes) -> int:
    return (data[0] << 21) | (data[1] << 14) | (data[2] << 7) | data[3]


def _mp3_spans(fh: BinaryIO, size: int) -> tuple[list[tuple[int, int]], str | None]:
    start = 0
    while start + 10 <= size:  # ID3v2 tags in front (several may follow one another)
        head = _read_at(fh, start, 10)
        if not head.startswith(b"ID3") or any(b & 0x80 for b in head[6:10]):
            break
        footer = 10 if head[5] & 0x10 else 0
        start += 10 + _syncsafe(head[6:10]) + footer
    if start > size:
        return [], "truncated: the ID3v2 tag is longer than the file"
    end = _mp3_tail(fh, start, size)
    return [(start, end)], _mp3_cut(fh, start, end)


def _mp3_tail(fh: BinaryIO, start: int, end: int) -> int:
    """Where the frames end: tag blocks behind them taken off, in any order."""
    for _ in range(8):
        if end - start >= 128 and _read_at(fh, end - 128, 3) == b"TAG":
            end -= 128
            if end - start >= 227 and _read_at(fh, end - 227, 4) == b"TAG+":
                end -= 227
            continue
        if end - start >= 32:
            footer = _read_at(fh, end - 32, 32)
            if footer.startswith(b"APETAGEX"):
                tag_size, flags = struct.unpack("<I4xI", footer[12:24])
                end -= tag_size + (32 if flags & 0x80000000 else 0)
                continue
        if end - start >= 15 and _read_at(fh, end - 9, 9) == b"LYRICS200":
            digits = _read_at(fh, end - 15, 6)
            if digits.isdigit():
                end -= int(digits) + 15
                continue
        if end - start >= 10:
            footer = _read_at(fh, end - 10, 10)
            if footer.startswith(b"3DI") and not any(b & 0x80 for b in footer[6:10]):
                end -= 20 + _syncsafe(footer[6:10])
                continue
        break
    return max(start, end)


_BITRATES = {
    (3, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (3, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (3, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _frame(header: bytes) -> tuple[tuple[int, int, int], int] | None:
    """An MPEG audio frame header's (version, layer, rate index) and frame length, or None."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, 4 - ((header[1] >> 1) & 3)
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    table = _BITRATES[(3, layer)] if version == 3 else _BITRATES[(2, 1 if layer == 1 else 2)]
    bitrate = table[bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    elif layer == 3 and version != 3:
        length = 72 * bitrate // rate + padding
    else:
        length = 144 * bitrate // rate + padding
    return (version, layer, rate_index), length


#: How far before the end of the frames the last frame can start (the longest MPEG frame).
_MAX_FRAME = 2890


def _mp3_cut(fh: BinaryIO, start: int, end: int) -> str | None:
    """Why the frames look cut short, or None: the last frame must end where the audio ends."""
    if end - start < 4:
        return "no MP3 frames"
    first = _frame(_read_at(fh, start, 4))
    if first is None:
        return None  # not frames we can follow (junk in front): no verdict
    shape = first[0]
    tail_at = max(start, end - _MAX_FRAME - 4)
    tail = _read_at(fh, tail_at, end - tail_at)
    at = tail.find(b"\xff")
    while at != -1:
        read = _frame(tail[at : at + 4])
        if read is not None and read[0] == shape and tail_at + at + read[1] == end:
            return None
        at = tail.find(b"\xff", at + 1)
    return "truncated: the last MP3 frame is cut short"


# -- chunked containers: MP4 boxes, RIFF and AIFF chunks -----------------------------------------


def _mp4_spans(fh: BinaryIO, size: int) -> tuple[list[tuple[int, int]], str | None]:
    """The contents of every top-level `mdat` box (size, then type; ISO BMFF)."""
    spans: list[tuple[int, int]] = []
    at = 0
    while at + 8 <= size:
        raw = _read_at(fh, at, 8)
        length, name = struct.unpack(">I", raw[:4])[0], raw[4:8]
        body = at + 8
        if length == 1:  # a 64-bit "largesize" follows the type
            large = _read_at(fh, at + 8, 8)
            if len(large) < 8:
                return spans or [(0, size)], "truncated: a box header is cut short"
            length, body = struct.unpack(">Q", large)[0], at + 16
        elif length == 0:  # the last box: to the end of the file
            length = size - at
        if length < body - at:
            return spans or [(0, size)], f"damaged: a {_name(name)} box of {length} bytes"
        if name == b"mdat":
            spans.append((body, min(at + length, size)))
        if at + length > size:
            return spans or [(0, size)], f"truncated: the {_name(name)} box is cut short"
        at += length
    if not spans:
        return [(0, size)], "no audio: the file has no mdat box"
    return spans, None


def _chunk_spans(
    fh: BinaryIO, size: int, *, little: bool, want: bytes
) -> tuple[list[tuple[int, int]], str | None]:
    """The contents of every `want` chunk of a RIFF (`little`) or AIFF file (id, then size)."""
    spans: list[tuple[int, int]] = []
    at = 12
    while at + 8 <= size:
        raw = _read_at(fh, at, 8)
        name, length = raw[:4], struct.unpack("<I" if little else ">I", raw[4:8])[0]
        if name == want:
            spans.append((at + 8, min(at + 8 + length, size)))
        if at + 8 + length > size:
            return spans or [(0, size)], f"truncated: the {_name(name)} chunk is cut short"
        at += 8 + length + (length & 1)  # chunks are padded to an even length
    if not spans:
        return [(0, size)], f"no audio: the file has no {_name(want)} chunk"
    return spans, None


def _name(raw: bytes) -> str:
    return repr(raw.decode("latin-1"))


# -- FLAC ----------------------------------------------------------------------------------------


def _flac_spans(fh: BinaryIO, size: int) -> tuple[list[tuple[int, int]], str | None]:
    at = 4
    while at + 4 <= size:
        block = _read_at(fh, at, 4)
        last = block[0] & 0x80
        at += 4 + int.from_bytes(block[1:4], "big")
        if last:
            break
    if at > size:
        return [], "truncated: a FLAC metadata block is cut short"
    return [(at, size)], None
