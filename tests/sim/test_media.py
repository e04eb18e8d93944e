"""Generated media: valid files of exact sizes, deterministic, served by range from MediaStore."""

from __future__ import annotations

import hashlib
import io
import struct
import wave
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mutagen.mp3 import MP3

from pooldaemon.sim.answer import json_error
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.media import (
    MediaStore,
    iter_media,
    media_bytes,
    min_size,
    mp3_bytes,
    mp4_bytes,
    wav_bytes,
    write_media,
    zip_bytes,
)


@pytest.mark.parametrize("size", [min_size("mp3"), 5_000, 65_536, 300_001, 1_048_576 + 7])
def test_mp3_is_valid_and_exactly_sized(size: int) -> None:
    data = mp3_bytes("track-1", size)
    assert len(data) == size
    assert data[:3] == b"ID3"
    info: Any = MP3(io.BytesIO(data)).info  # type: ignore[no-untyped-call]
    assert info.length > 0
    assert (info.bitrate, info.sample_rate, info.layer, info.version) == (128_000, 44_100, 3, 1)
    # The frames after the ID3 tag start with the MPEG-1 Layer III sync word.
    tag_size = sum(b << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    assert data[10 + tag_size : 10 + tag_size + 2] == b"\xff\xfb"


def test_mp3_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        mp3_bytes("x", min_size("mp3") - 1)
    with pytest.raises(ValueError, match="unknown media kind"):
        media_bytes("flac", "x", 10_000)


@pytest.mark.parametrize("size", [46, 47, 1_000, 1_001, 200_000])
def test_wav_header_parses(size: int) -> None:
    data = wav_bytes("w", size)
    assert len(data) == size
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == size - 8
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getframerate() == 44_100
        assert reader.getnchannels() == 1
        assert reader.getnframes() * reader.getsampwidth() == size - 44


@pytest.mark.parametrize("size", [min_size("mp4"), 4_096, 333_333])
def test_mp4_is_ftyp_then_mdat_to_the_end(size: int) -> None:
    data = mp4_bytes("v", size)
    assert len(data) == size
    ftyp_size, ftyp = struct.unpack(">I4s", data[:8])
    assert ftyp == b"ftyp" and data[8:12] == b"isom"
    mdat_size, mdat = struct.unpack(">I4s", data[ftyp_size : ftyp_size + 8])
    assert mdat == b"mdat"
    assert ftyp_size + mdat_size == size


def test_generation_is_deterministic_and_seeded() -> None:
    assert mp3_bytes("a", 100_000) == mp3_bytes("a", 100_000)
    assert mp3_bytes("a", 100_000) != mp3_bytes("b", 100_000)
    assert wav_bytes("a", 9_000) == wav_bytes("a", 9_000)
    assert mp4_bytes("a", 9_000) != mp4_bytes("b", 9_000)


def test_no_two_aligned_chunks_are_equal() -> None:
    # A misplaced chunk must always change the file's hash (docs/reliability.md oracle 1).
    data = mp3_bytes("chunks", 4 * 1024 * 1024)
    chunk = 64 * 1024
    pieces = {data[offset : offset + chunk] for offset in range(0, len(data), chunk)}
    assert len(pieces) == len(data) // chunk


@pytest.mark.parametrize("kind", ["mp3", "mp4", "wav"])
def test_ranges_equal_slices_of_the_whole(kind: str) -> None:
    size = 400_000
    whole = media_bytes(kind, "r", size)
    for start, end in [(0, 1), (0, 10), (5, 70_000), (65_000, 200_003), (size - 3, size)]:
        assert b"".join(iter_media(kind, "r", size, start, end)) == whole[start:end]


def test_zip_bytes_round_trip_and_determinism() -> None:
    entries = {"Artist - Title.mp3": mp3_bytes("z", 20_000), "cover/art.txt": b"hello"}
    data = zip_bytes(entries)
    assert data == zip_bytes(entries)
    assert data[:4] == b"PK\x03\x04"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert {name: archive.read(name) for name in archive.namelist()} == entries
    with zipfile.ZipFile(io.BytesIO(zip_bytes(entries, compress=True))) as archive:
        assert archive.getinfo("cover/art.txt").compress_type == zipfile.ZIP_DEFLATED


def test_store_generated_entries_are_lazy_and_hashable() -> None:
    store = MediaStore(last_modified=1_700_000_000.0)
    store.add_generated("t/1", "mp3", "s1", 150_000, filename="A - B.mp3")
    store.add_generated("t/2", "mp3", "s2", 150_000)
    expected = mp3_bytes("s1", 150_000)
    assert "t/1" in store and "t/3" not in store
    assert store.size("t/1") == 150_000
    assert store.content_type("t/1") == "audio/mpeg"
    assert store.filename("t/1") == "A - B.mp3"
    assert store.get("t/1") == expected
    assert store.read("t/1", 1_000, 90_000) == expected[1_000:90_000]
    assert store.sha256("t/1") == hashlib.sha256(expected).hexdigest()
    assert store.etag("t/1") != store.etag("t/2")
    assert store.last_modified("t/1") == 1_700_000_000.0
    with pytest.raises(KeyError):
        store.size("t/3")


async def test_store_serves_files_and_bytes(tmp_path: Path) -> None:
    path = write_media(tmp_path / "big.mp4", "mp4", "disk", 3 * 1024 * 1024 + 5)
    assert path.read_bytes() == mp4_bytes("disk", 3 * 1024 * 1024 + 5)
    store = MediaStore()
    store.add_file("f", path)
    store.add_bytes("b", b"0123456789", content_type="text/plain")
    assert store.size("f") == path.stat().st_size
    assert store.content_type("f") == "video/mp4"
    pieces = [piece async for piece in store.iter_range("f", 1_000_000, 2_500_000)]
    assert b"".join(pieces) == path.read_bytes()[1_000_000:2_500_000]
    assert store.sha256("f") == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [piece async for piece in store.iter_range("b", 2, 5)] == [b"234"]
    assert store.sha256("b") == hashlib.sha256(b"0123456789").hexdigest()


async def test_download_server_is_pool_agnostic() -> None:
    store = MediaStore()
    store.add_generated("a.mp3", "mp3", "dl", 50_000)

    def resolve(request: web.Request) -> str | web.StreamResponse:
        if request.query.get("token") != "ok":
            return json_error(403, "bad token")
        return request.match_info["key"]

    async with (
        DownloadServer(store, resolve, path="/pool/v5/download/{key}") as server,
        aiohttp.ClientSession() as session,
    ):
        url = f"{server.base_url}/pool/v5/download/a.mp3"
        async with session.get(url, params={"token": "ok"}, headers={"Range": "bytes=10-19"}) as r:
            assert (r.status, await r.read()) == (206, store.read("a.mp3", 10, 20))
        async with session.get(url, params={"token": "no"}) as resp:
            assert (resp.status, await resp.json()) == (
                403,
                {"status": 403, "message": "bad token"},
            )
        async with session.get(f"{server.base_url}/pool/v5/download/b.mp3?token=ok") as resp:
            assert resp.status == 404
        assert server.log.calls["download"] == 3
        assert server.completed["a.mp3"] == 0
        async with session.get(url, params={"token": "ok"}) as resp:
            assert await resp.read() == store.get("a.mp3")
        assert server.completed["a.mp3"] == 1
