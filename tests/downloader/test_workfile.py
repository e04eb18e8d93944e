"""Work files: their names, where a job keeps them, and how bytes reach them."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


class _FirstWaits(ThreadPoolExecutor):
    """Two threads; the first call handed over waits until released, later ones run at once."""

    def __init__(self) -> None:
        super().__init__(2)
        self.gate = threading.Event()
        self._first = True

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._first:
            self._first = False

            def held() -> Any:
                assert self.gate.wait(10)
                return fn(*args, **kwargs)

            return super().submit(held)
        return super().submit(fn, *args, **kwargs)


async def test_writes_ending_out_of_order_claim_only_the_completed_prefix(tmp_path: Path) -> None:
    # Several blocks in flight (the job's budget): the second ends first. What a checkpoint may
    # claim (docs/reliability.md C2) must stop at the first block still on its way to the file.
    threads = _FirstWaits()
    asyncio.get_running_loop().set_default_executor(threads)
    path = tmp_path / "part"
    path.write_bytes(bytes(5000))
    fd = SharedFd(os.open(path, os.O_RDWR))
    fed: list[tuple[int, int]] = []
    writer = ChunkWriter(
        fd,
        1000,
        1000,
        budget=asyncio.Semaphore(4),
        on_written=lambda offset, blocks: fed.append((offset, sum(map(len, blocks)))),
    )
    first, second = os.urandom(1000), os.urandom(1000)
    try:
        assert writer.add(first)
        await writer.flush(mid_chunk=True)
        assert writer.add(second)
        await writer.flush(mid_chunk=True)
        await eventually(lambda: path.read_bytes()[2000:3000] == second)
        await asyncio.sleep(0.05)  # the second write's completion has been seen by now
        assert writer.written == 1000 and fed == []
    finally:
        threads.gate.set()
    await writer.drain()
    assert writer.written == 3000
    assert fed == [(1000, 1000), (2000, 1000)]  # the hasher gets them in file order
    assert path.read_bytes() == bytes(1000) + first + second + bytes(2000)
    fd.close()


async def test_a_budget_bounds_the_blocks_in_flight(tmp_path: Path) -> None:
    threads = _FirstWaits()
    asyncio.get_running_loop().set_default_executor(threads)
    path = tmp_path / "part"
    path.write_bytes(bytes(4000))
    fd = SharedFd(os.open(path, os.O_RDWR))
    budget = asyncio.Semaphore(1)
    writer = ChunkWriter(fd, 0, 1000, budget=budget)
    try:
        writer.add(os.urandom(1000))
        await writer.flush(mid_chunk=True)
        writer.add(os.urandom(1000))
        blocked = asyncio.ensure_future(writer.flush(mid_chunk=True))
        await asyncio.sleep(0.05)
        assert not blocked.done()  # the one slot is held by the first write
    finally:
        threads.gate.set()
    await blocked
    await writer.drain()
    assert writer.written == 2000 and not budget.locked()
    fd.close()
