"""Deterministic media bytes (MP3, MP4, WAV, ZIP) and the store the simulators serve them from."""

from __future__ import annotations

import asyncio
import hashlib
import io
import mimetypes
import random
import struct
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "KINDS",
    "MediaStore",
    "iter_media",
    "media_bytes",
    "media_layout",
    "min_size",
    "mp3_bytes",
    "mp4_bytes",
    "wav_bytes",
    "write_media",
    "zip_bytes",
]

# MPEG-1 Layer III, 128 kbps, 44.1 kHz, joint stereo, "original" bit, no CRC, no padding:
# every frame is 144 * 128000 / 44100 = 417 bytes.
_MP3_HEADER = b"\xff\xfb\x90\x44"
_MP3_FRAME = 417
# Frames per generated block (~64 KiB); each block carries its index so no two blocks of a file
# are equal and a misplaced chunk always changes the file's hash.
_MP3_FRAMES_PER_BLOCK = 157
_MP3_COUNTER_AT = 4 + 40  # after the header and the (zeroed) side info: no false Xing/VBRI tag
_NOISE_BLOCK = 64 * 1024
_ID3_HEADER_LEN = 10

KINDS: dict[str, tuple[str, str]] = {
    "mp3": ("audio/mpeg", "mp3"),
    "mp4": ("video/mp4", "mp4"),
    "wav": ("audio/wav", "wav"),
}

_MIN_SIZE = {"mp3": _ID3_HEADER_LEN + 4 * _MP3_FRAME, "mp4": 40, "wav": 46}


def min_size(kind: str) -> int:
    """Smallest size `kind` can be generated at (mutagen needs four MP3 frames to sync)."""
    return _MIN_SIZE[kind]


@lru_cache(maxsize=256)
def _seed_int(seed: str) -> int:
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")


@lru_cache(maxsize=64)
def _mp3_base_block(seed: str) -> bytes:
    rng = random.Random(f"mp3:{seed}")
    frames = []
    payload_len = _MP3_FRAME - len(_MP3_HEADER)
    for index in range(_MP3_FRAMES_PER_BLOCK):
        payload = bytearray(rng.randbytes(payload_len))
        if index == 0:
            payload[: _MP3_COUNTER_AT + 8 - 4] = bytes(_MP3_COUNTER_AT + 8 - 4)
        frames.append(_MP3_HEADER + bytes(payload))
    return b"".join(frames)


@lru_cache(maxsize=64)
def _noise_base_block(seed: str, salt: str) -> bytes:
    return random.Random(f"{salt}:{seed}").randbytes(_NOISE_BLOCK)


def _counter(seed: str, index: int) -> bytes:
    return struct.pack(">Q", (_seed_int(seed) + index * 0x9E3779B97F4A7C15) & (2**64 - 1))


@dataclass(frozen=True)
class _Layout:
    """A generated file: a fixed prefix, then `body_len` bytes made of numbered blocks."""

    prefix: bytes
    body_len: int
    block_len: int
    block: Callable[[int], bytes]

    @property
    def size(self) -> int:
        return len(self.prefix) + self.body_len


def _mp3_layout(seed: str, size: int) -> _Layout:
    rest = size - _ID3_HEADER_LEN
    frames, pad = divmod(rest, _MP3_FRAME)
    # The remainder that is not a whole frame goes into ID3v2 padding (zeros), so the file is
    # exactly `size` bytes and every frame is a valid CBR frame.
    tag = b"ID3\x04\x00\x00" + _syncsafe(pad) + bytes(pad)
    base = _mp3_base_block(seed)

    def block(index: int) -> bytes:
        return base[:_MP3_COUNTER_AT] + _counter(seed, index) + base[_MP3_COUNTER_AT + 8 :]

    return _Layout(tag, frames * _MP3_FRAME, len(base), block)


def _noise_layout(seed: str, salt: str, prefix: bytes, body_len: int) -> _Layout:
    base = _noise_base_block(seed, salt)

    def block(index: int) -> bytes:
        return _counter(seed, index) + base[8:]

    return _Layout(prefix, body_len, len(base), block)


def _mp4_layout(seed: str, size: int) -> _Layout:
    ftyp = struct.pack(">I4s4sI", 32, b"ftyp", b"isom", 0x200) + b"isomiso2avc1mp41"
    rest = size - len(ftyp)
    if rest - 8 <= 0xFFFFFFFF:
        mdat = struct.pack(">I4s", rest, b"mdat")
    else:  # ISO BMFF largesize form for boxes over 4 GiB
        mdat = struct.pack(">I4sQ", 1, b"mdat", rest)
    prefix = ftyp + mdat
    return _noise_layout(seed, "mp4", prefix, size - len(prefix))


def _wav_layout(seed: str, size: int) -> _Layout:
    # PCM noise at 44.1 kHz: 16-bit mono (block align 2) when the data length is even, 8-bit mono
    # (block align 1) when it is odd, so the data chunk always holds whole samples. (An odd data
    # chunk lacks RIFF's pad byte; readers such as the `wave` module accept that.)
    data_len = size - 44
    bits = 16 if data_len % 2 == 0 else 8
    align = bits // 8
    fmt = struct.pack("<HHIIHH", 1, 1, 44100, 44100 * align, align, bits)
    prefix = (
        b"RIFF"
        + struct.pack("<I", size - 8)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_len)
    )
    return _noise_layout(seed, "wav", prefix, data_len)


def _syncsafe(value: int) -> bytes:
    return bytes(((value >> shift) & 0x7F) for shift in (21, 14, 7, 0))


def media_layout(kind: str, seed: str, size: int) -> _Layout:
    """The layout of a generated file; raises ValueError for unknown kinds or too small sizes."""
    if kind not in KINDS:
        raise ValueError(f"unknown media kind {kind!r} (known: {', '.join(KINDS)})")
    if size < _MIN_SIZE[kind]:
        raise ValueError(f"{kind} needs at least {_MIN_SIZE[kind]} bytes, got {size}")
    if kind == "mp3":
        return _mp3_layout(seed, size)
    if kind == "mp4":
        return _mp4_layout(seed, size)
    return _wav_layout(seed, size)


def _iter_layout(layout: _Layout, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end) of a layout, in pieces of at most one block."""
    prefix = layout.prefix
    if start < len(prefix):
        yield prefix[start : min(end, len(prefix))]
        start = len(prefix)
    if start >= end:
        return
    offset = start - len(prefix)
    stop = end - len(prefix)
    index, skip = divmod(offset, layout.block_len)
    while offset < stop:
        piece = layout.block(index)
        take = min(layout.block_len - skip, stop - offset)
        yield piece if take == layout.block_len else piece[skip : skip + take]
        offset += take
        index += 1
        skip = 0


def iter_media(
    kind: str, seed: str, size: int, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Bytes [start, end) of the generated file, without building the whole file."""
    layout = media_layout(kind, seed, size)
    stop = size if end is None else min(end, size)
    if start < 0 or start > stop:
        raise ValueError(f"bad range {start}-{end} for a {size}-byte file")
    yield from _iter_layout(layout, start, stop)


def media_bytes(kind: str, seed: str, size: int) -> bytes:
    """The whole generated file of `kind` ("mp3", "mp4", "wav")."""
    return b"".join(iter_media(kind, seed, size))


def mp3_bytes(seed: str, size: int) -> bytes:
    """A valid MPEG-1 Layer III file (ID3v2 tag, 128 kbps CBR frames) of exactly `size` bytes."""
    return media_bytes("mp3", seed, size)


def mp4_bytes(seed: str, size: int) -> bytes:
    """A minimal ISO BMFF file (`ftyp`, then an `mdat` box filling the rest) of `size` bytes."""
    return media_bytes("mp4", seed, size)


def wav_bytes(seed: str, size: int) -> bytes:
    """A RIFF/WAVE file (mono PCM noise, 44.1 kHz) of exactly `size` bytes."""
    return media_bytes("wav", seed, size)


def write_media(path: str | Path, kind: str, seed: str, size: int) -> Path:
    """Write the generated file to `path` in blocks (for 1 GiB benchmark files)."""
    target = Path(path)
    with target.open("wb") as out:
        for piece in iter_media(kind, seed, size):
            out.write(piece)
    return target


def zip_bytes(entries: dict[str, bytes], *, compress: bool = False) -> bytes:
    """A ZIP archive of `entries` (name -> bytes) with fixed timestamps, so it is deterministic."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@dataclass
class _Entry:
    size: int
    content_type: str
    filename: str | None
    last_modified: float
    etag: str
    data: bytes | None = None
    path: Path | None = None
    layout: _Layout | None = None
    sha256: str | None = None


_FILE_PIECE = 1024 * 1024


class MediaStore:
    """Media by key: generated on demand (never held whole), given as bytes, or read from a file."""

    def __init__(self, *, last_modified: float | None = None) -> None:
        self._entries: dict[str, _Entry] = {}
        self._last_modified = time.time() if last_modified is None else last_modified

    def add_generated(
        self, key: str, kind: str, seed: str, size: int, *, filename: str | None = None
    ) -> None:
        """Register a generated file; its bytes are produced per range when served."""
        layout = media_layout(kind, seed, size)
        tag = hashlib.sha256(f"{kind}:{seed}:{size}".encode()).hexdigest()[:32]
        self._entries[key] = _Entry(
            size=size,
            content_type=KINDS[kind][0],
            filename=filename,
            last_modified=self._last_modified,
            etag=f'"{tag}"',
            layout=layout,
        )

    def add_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        filename: str | None = None,
    ) -> None:
        """Register fixed bytes."""
        digest = hashlib.sha256(data).hexdigest()
        self._entries[key] = _Entry(
            size=len(data),
            content_type=content_type,
            filename=filename,
            last_modified=self._last_modified,
            etag=f'"{digest[:32]}"',
            data=data,
            sha256=digest,
        )

    def add_file(
        self,
        key: str,
        path: str | Path,
        *,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> None:
        """Register a file on disk, served by reading ranges (for files too big for memory)."""
        file = Path(path)
        stat = file.stat()
        guessed = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self._entries[key] = _Entry(
            size=stat.st_size,
            content_type=content_type or guessed,
            filename=filename,
            last_modified=stat.st_mtime,
            etag=f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"',
            path=file,
        )

    def remove(self, key: str) -> None:
        """Forget a key (no error when it is unknown)."""
        self._entries.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        """Keys registered so far."""
        return list(self._entries)

    def _entry(self, key: str) -> _Entry:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"no media {key!r}") from None

    def size(self, key: str) -> int:
        """Byte size of the media."""
        return self._entry(key).size

    def content_type(self, key: str) -> str:
        """MIME type served for the media."""
        return self._entry(key).content_type

    def filename(self, key: str) -> str | None:
        """File name offered in Content-Disposition, if any."""
        return self._entry(key).filename

    def etag(self, key: str) -> str:
        """Strong, quoted ETag of the media."""
        return self._entry(key).etag

    def last_modified(self, key: str) -> float:
        """Last-Modified time (epoch seconds)."""
        return self._entry(key).last_modified

    def iter_sync(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) in pieces, synchronously."""
        entry = self._entry(key)
        stop = entry.size if end is None else min(end, entry.size)
        if entry.data is not None:
            for offset in range(start, stop, _FILE_PIECE):
                yield entry.data[offset : min(offset + _FILE_PIECE, stop)]
        elif entry.layout is not None:
            yield from _iter_layout(entry.layout, start, stop)
        else:
            assert entry.path is not None
            with entry.path.open("rb") as file:
                file.seek(start)
                remaining = stop - start
                while remaining > 0:
                    piece = file.read(min(_FILE_PIECE, remaining))
                    if not piece:
                        raise OSError(f"{entry.path} is shorter than {entry.size} bytes")
                    remaining -= len(piece)
                    yield piece

    async def iter_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) in pieces; file reads run in a thread so the loop stays free."""
        entry = self._entry(key)
        if entry.path is None:
            for piece in self.iter_sync(key, start, end):
                yield piece
            return
        pieces = self.iter_sync(key, start, end)
        while True:
            piece = await asyncio.to_thread(next, pieces, b"")
            if not piece:
                return
            yield piece

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) as one bytes object."""
        return b"".join(self.iter_sync(key, start, end))

    def get(self, key: str) -> bytes:
        """The whole media (built in memory; use iter_sync for very large files)."""
        return self.read(key)

    def sha256(self, key: str) -> str:
        """Hex SHA-256 of the media, computed once by streaming."""
        entry = self._entry(key)
        if entry.sha256 is None:
            digest = hashlib.sha256()
            for piece in self.iter_sync(key):
                digest.update(piece)
            entry.sha256 = digest.hexdigest()
        return entry.sha256


def aiff_bytes(seed: str, size: int) -> bytes:
    """A minimal AIFF file (FORM/AIFF, COMM, SSND; mono PCM noise, 44.1 kHz) of `size` bytes."""
    header = 12 + 26 + 16
    data_len = size - header
    if data_len < 2:
        raise ValueError(f"aiff needs at least {header + 2} bytes, got {size}")
    bits = 16 if data_len % 2 == 0 else 8
    frames = data_len // (bits // 8)
    # 44100 as an 80-bit IEEE 754 extended float, as AIFF's COMM chunk wants it.
    rate = b"\x40\x0e\xac\x44\x00\x00\x00\x00\x00\x00"
    comm = b"COMM" + struct.pack(">IhIh", 18, 1, frames, bits) + rate
    noise = wav_bytes(seed, data_len + 46)[46:]
    ssnd = b"SSND" + struct.pack(">III", data_len + 8, 0, 0) + noise
    return b"FORM" + struct.pack(">I", size - 8) + b"AIFF" + comm + ssnd
