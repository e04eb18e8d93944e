"""Hashing a part in file order while it downloads (the hasher on its own, on real files)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import blake3
import pytest

from pooldaemon.downloader.digest import READ_BLOCK, Digests, PrefixHasher, file_digests

#: BLAKE3 of no bytes, from the BLAKE3 specification's test vectors.
BLAKE3_EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def b3(data: bytes) -> str:
    """The library checksum as recorded: the algorithm's name, then the hex digest."""
    return "blake3:" + blake3.blake3(data).hexdigest()


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "part"
    path.write_bytes(data)
    return path, data


async def test_prefixes_fed_in_steps_hash_the_whole_file(tmp_path: Path) -> None:
    size = 3 * READ_BLOCK + 12345
    path, data = _file(tmp_path, size)
    hasher = PrefixHasher(path)
    for upto in (1000, 500, READ_BLOCK, READ_BLOCK + 1, 2 * READ_BLOCK + 7):  # 500: no step back
        hasher.advance(upto)
        await asyncio.sleep(0)
    digests = await hasher.finish(size)
    assert digests.checksum == b3(data)
    assert digests.md5 is None and digests.size == size


async def test_md5_is_computed_when_asked_for(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 70_000)
    hasher = PrefixHasher(path, md5=True)
    hasher.advance(30_000)
    digests = await hasher.finish(70_000)
    assert digests.md5 == hashlib.md5(data).hexdigest()
    assert digests.checksum == b3(data)


async def test_reset_forgets_what_was_hashed(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, 2 * READ_BLOCK)
    hasher = PrefixHasher(path)
    hasher.advance(2 * READ_BLOCK)
    await hasher.finish(2 * READ_BLOCK)
    await hasher.reset()
    assert hasher.hashed == 0
    fresh = os.urandom(5000)  # the part restarted and its file now holds other bytes
    path.write_bytes(fresh)
    assert (await hasher.finish(5000)).checksum == b3(fresh)


async def test_a_file_shorter_than_promised_is_an_error_not_a_digest(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, 4096)
    hasher = PrefixHasher(path)
    with pytest.raises(OSError, match="ended at byte 4096, not 8192"):
        await hasher.finish(8192)


async def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    hasher = PrefixHasher(tmp_path / "gone")
    with pytest.raises(FileNotFoundError):
        await hasher.finish(10)


async def test_close_waits_for_the_read_in_flight(tmp_path: Path) -> None:
    size = 8 * READ_BLOCK
    path, data = _file(tmp_path, size)
    hasher = PrefixHasher(path)
    hasher.advance(size)
    await asyncio.sleep(0)
    await hasher.close()  # whatever it had read is consistent: finishing resumes from there
    assert 0 <= hasher.hashed <= size
    assert (await hasher.finish(size)).checksum == b3(data)


def test_whole_files_are_hashed_with_the_same_reader(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 2 * READ_BLOCK + 3)
    found = file_digests(path, md5=True, sha256=True)
    assert (found.checksum, found.md5, found.size, found.plain_sha256) == (
        b3(data),
        hashlib.md5(data).hexdigest(),
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_digests(empty) == Digests(f"blake3:{BLAKE3_EMPTY}", None, 0)


async def test_blocks_offered_at_the_cursor_are_hashed_from_memory_the_rest_read_back(
    tmp_path: Path,
) -> None:
    # Four connections: blocks arrive out of order. Only those continuing the hashed prefix are
    # taken from memory; the others are read back once the durable prefix passes them.
    size = 6 * READ_BLOCK + 777
    path, data = _file(tmp_path, size)
    hasher = PrefixHasher(path, md5=True, sha256=True)
    step = READ_BLOCK // 2
    blocks = [(o, [data[o : o + step]]) for o in range(0, size, step)]
    order = [0, 1, 4, 5, 2, 8, 3, 6, 7, 9, 10, 11, 12]
    assert sorted(order) == list(range(len(blocks)))
    for i in order:
        offset, pieces = blocks[i]
        hasher.offer(offset, pieces)
        if i == 3:
            hasher.advance(6 * step)  # chunks 0-5 are durable now: 4 and 5 are read back
        await asyncio.sleep(0)
    digests = await hasher.finish(size)
    assert digests.checksum == b3(data)
    assert digests.md5 == hashlib.md5(data).hexdigest()
    assert digests.plain_sha256 == hashlib.sha256(data).hexdigest()
    assert 0 < hasher.read_back < size


async def test_an_offer_not_at_the_cursor_is_never_hashed_twice(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 3 * READ_BLOCK)
    hasher = PrefixHasher(path)
    hasher.offer(READ_BLOCK, [data[READ_BLOCK : 2 * READ_BLOCK]])  # ahead of the cursor
    hasher.offer(0, [data[:READ_BLOCK]])
    hasher.offer(0, [data[:READ_BLOCK]])  # a write of the same bytes again: behind the cursor
    hasher.advance(2 * READ_BLOCK)
    digests = await hasher.finish(3 * READ_BLOCK)
    assert digests.checksum == b3(data)
    assert hasher.read_back == 2 * READ_BLOCK
