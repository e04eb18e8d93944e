"""Work files: their names, where a job keeps them, and how bytes reach them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pooldaemon.downloader.workfile import ChunkWriter, SharedFd, part_file_name
from tests.conftest import eventually

from .conftest import HeldThreads


def test_part_file_names_are_safe_and_distinct() -> None:
    assert part_file_name("main") == "part-main.part"
    odd = part_file_name("../x")
    assert "/" not in odd and odd != part_file_name("__x")


async def test_a_write_waiting_for_a_thread_survives_its_writer_being_cancelled(
    tmp_path: Path,
) -> None:
    # A stop lands while the last write of a chunk waits for a free thread: the checkpoint the
    # stop takes next drains the writer again, and must find the bytes in the file.
    threads = HeldThreads(workers=1)
    asyncio.get_running_loop().set_default_executor(threads)
    path = tmp_path / "part"
    path.write_bytes(bytes(3000))
    fd = SharedFd(os.open(path, os.O_RDWR))
    writer = ChunkWriter(fd, 1000, 64 * 1024)
    data = os.urandom(1000)
    try:
        await threads.hold()
        assert not writer.add(data)  # a tail shorter than a block: written by the drain
        drain = asyncio.ensure_future(writer.drain())
        await eventually(lambda: threads.queued == 1)
        drain.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drain
    finally:
        threads.release()
    await writer.drain()
    assert writer.written == 2000
    assert path.read_bytes() == bytes(1000) + data + bytes(1000)
    fd.close()
