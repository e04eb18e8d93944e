"""Checksums: the library's (algorithm-named), and a part's, computed in file order while the
rest of it still downloads.

The library's checksum is BLAKE3 (`blake3:<hex>`): 0.16 CPU-s per GiB where SHA-256 through
OpenSSL costs 0.90 on the machines we measure (tests/benchmarks/bench_checksum.py), and the
daemon hashes every file it lands. Values name their algorithm, so records written before the
switch (`sha256:<hex>`, or a bare hex SHA-256 from before the algorithm was named) are still
verified with the algorithm they were made with. A pool's own checksum (SHA-256 or MD5) is a
separate, plain hex value, checked against the bytes the pool sent.

Chunks finish out of order, but a hash can only be fed in order: the hasher takes each block
written at its cursor straight from memory, and reads back from the page cache only what arrived
ahead of the cursor (another connection's chunk), once the part's durable prefix (the bytes
already fsynced and checkpointed) passes it. By the time the last chunk lands, all but that chunk
is hashed, so verifying a finished file no longer costs a whole pass over it after the last byte.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pooldaemon.store.db import uncancelled

#: Read-back block: large enough that the per-call overhead vanishes, small enough to stay cached.
READ_BLOCK = 1 << 20

#: Written blocks queued for hashing from memory at most; beyond, they are read back later.
MAX_QUEUED = 1 << 20

#: The algorithm of every checksum the library records from now on.
LIBRARY_ALGORITHM = "blake3"
#: The algorithms a recorded checksum may name (older records: sha256).
ALGORITHMS = ("blake3", "sha256")


def new_hash(algorithm: str) -> Any:
    """A fresh hash object for one of ALGORITHMS (blake3 on one thread: its CPU per GiB is what
    counts on a laptop running DJ software, not the wall time of one file)."""
    if algorithm == "blake3":
        # Imported at the first hash: an idle daemon need not carry it (~0.6 MiB, issue 13).
        import blake3

        return blake3.blake3()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def checksum_value(algorithm: str, hexdigest: str) -> str:
    """The recorded form of a checksum: `<algorithm>:<hex>`."""
    return f"{algorithm}:{hexdigest}"


def split_checksum(value: str) -> tuple[str, str]:
    """A recorded checksum → (algorithm, hex). A bare 64-digit hex value is a SHA-256 recorded
    before checksums named their algorithm; anything else unknown is an error."""
    algorithm, sep, hexdigest = value.partition(":")
    if not sep:
        algorithm, hexdigest = "sha256", value
    if algorithm not in ALGORITHMS or not hexdigest:
        raise ValueError(f"not a checksum this daemon knows: {value!r}")
    return algorithm, hexdigest.lower()


@dataclass(frozen=True, slots=True)
class Digests:
    """A whole file's checksums: the library's (`<algorithm>:<hex>`), and the plain hex MD5 and
    SHA-256 a pool may give, each only when asked for."""

    checksum: str
    md5: str | None
    size: int
    plain_sha256: str | None = None

    @property
    def sha256(self) -> str:
        """The library checksum under its old name (`job_parts.sha256` keeps it; the transfer
        reads it by this name). Not a plain SHA-256: see `plain_sha256`."""
        return self.checksum


class PrefixHasher:
    """Hashes `path` from offset 0 up to the highest offset it is told is final.

    Bytes reach it two ways: blocks just written to the file at the hash's cursor (`offer`),
    hashed from memory, and the durable prefix (`advance`), read back from the file for what
    no offer covered (chunks that arrived out of order, a resumed part). Only bytes that will
    not change again may be fed: a part that restarts calls `reset`. One thread at a time does
    the work; the event loop only queues it.
    """

    def __init__(self, path: Path, *, md5: bool = False, sha256: bool = False) -> None:
        self.path = path
        self._want = (md5, sha256)
        self._hashes = _Hashes(md5=md5, sha256=sha256)
        self._hashed = 0  # bytes fed so far, from offset 0
        self._target = 0  # the durable prefix: read back up to here when nothing was offered
        self._end = 0  # bytes fed or queued to be fed
        self._queue: deque[list[bytes]] = deque()
        self._queued = 0
        self._task: asyncio.Task[None] | None = None
        self._error: OSError | None = None
        self.read_back = 0  # bytes read back from the file (the rest came from memory)

    @property
    def hashed(self) -> int:
        return self._hashed

    def offer(self, offset: int, blocks: list[bytes]) -> None:
        """`blocks` were just written at `offset` and are final: hash them from memory when they
        continue what is hashed or queued, else leave them to the read-back."""
        if offset != self._end or self._queued >= MAX_QUEUED:
            return
        n = sum(len(b) for b in blocks)
        self._queue.append(blocks)
        self._queued += n
        self._end += n
        self._start()

    def advance(self, upto: int) -> None:
        """The bytes before `upto` are final: hash them soon, in the background."""
        if upto <= self._target:
            return
        self._target = upto
        if upto > self._end:
            self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def finish(self, size: int) -> Digests:
        """Hash what is left up to `size` and return the file's checksums."""
        self.advance(size)
        task = self._task
        if task is not None:
            await asyncio.shield(task)  # a cancelled finisher leaves the work running, not torn
        if self._error is not None:
            raise self._error
        if self._hashed != size:
            raise OSError(f"{self.path.name}: hashed {self._hashed} bytes of {size}")
        return self._hashes.digests(size)

    async def reset(self) -> None:
        """Start over from offset 0 (the part restarts; its bytes will change)."""
        await self.close()
        self._hashes = _Hashes(md5=self._want[0], sha256=self._want[1])
        self._hashed = self._target = self._end = self._queued = 0
        self._queue.clear()
        self._error = None

    async def close(self) -> None:
        """Stop the background work; a read running in its thread is waited for."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        """Catch up with what is queued and the target, then end; new work starts a new run."""
        while self._error is None:
            # A cancel (pause, restart) lets the running thread finish, so the hash objects
            # are never fed by a thread nobody waits for.
            if self._queue:
                batch = list(self._queue)
                self._queue.clear()
                self._queued = 0
                await uncancelled(asyncio.to_thread(self._feed_blocks, batch))
            elif self._end < self._target:
                start, self._end = self._end, self._target
                await uncancelled(asyncio.to_thread(self._feed, start, self._target))
            else:
                return

    def _feed_blocks(self, batch: list[list[bytes]]) -> None:
        """Thread: feed blocks already in memory, in file order."""
        for blocks in batch:
            for block in blocks:
                for digest in self._hashes.all:
                    digest.update(block)
                self._hashed += len(block)

    def _feed(self, start: int, end: int) -> None:
        """Thread: feed bytes [start, end) of the file to the hashes."""
        try:
            offset = _feed(self.path, start, end, self._hashes.all)
        except OSError as err:
            self._error = err
            return
        if offset != end:
            self._error = OSError(f"{self.path.name}: ended at byte {offset}, not {end}")
        self.read_back += offset - start
        self._hashed = offset


class _Hashes:
    """The library's hash, plus the pool's algorithms when it gives a checksum."""

    def __init__(self, *, md5: bool = False, sha256: bool = False) -> None:
        self.library = new_hash(LIBRARY_ALGORITHM)
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.sha256 = hashlib.sha256() if sha256 else None
        self.all = [h for h in (self.library, self.md5, self.sha256) if h is not None]

    def digests(self, size: int) -> Digests:
        return Digests(
            checksum_value(LIBRARY_ALGORITHM, self.library.hexdigest()),
            self.md5.hexdigest() if self.md5 is not None else None,
            size,
            self.sha256.hexdigest() if self.sha256 is not None else None,
        )


def file_digests(path: Path, *, md5: bool = False, sha256: bool = False) -> Digests:
    """A whole file's checksums, read in blocks (blocking: call it in a thread)."""
    hashes = _Hashes(md5=md5, sha256=sha256)
    size = _feed(path, 0, None, hashes.all)
    return hashes.digests(size)


def file_checksum(path: Path, algorithm: str = LIBRARY_ALGORITHM) -> tuple[str, int]:
    """A file's checksum as recorded (`<algorithm>:<hex>`) and its size (blocking)."""
    digest = new_hash(algorithm)
    size = _feed(path, 0, None, [digest])
    return checksum_value(algorithm, digest.hexdigest()), size


def checksum_matches(path: Path, recorded: str, size: int | None = None) -> bool:
    """Whether the file at `path` has the recorded checksum (and `size`, when given), hashed
    with the algorithm the record names (blocking). A value naming no algorithm this daemon
    knows matches nothing: the file is left alone, never adopted."""
    try:
        algorithm, hexdigest = split_checksum(recorded)
    except ValueError:
        return False
    if size is not None and path.stat().st_size != size:
        return False
    found, _ = file_checksum(path, algorithm)
    return found == checksum_value(algorithm, hexdigest)


def _feed(path: Path, start: int, end: int | None, hashes: list[Any]) -> int:
    """Feed bytes [start, end) of `path` (to its end when `end` is None) to every hash;
    returns the offset reached (short of `end` when the file is)."""
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start)
        buf = bytearray(READ_BLOCK if end is None else min(READ_BLOCK, max(end - start, 1)))
        view = memoryview(buf)
        offset = start
        while end is None or offset < end:
            want = len(buf) if end is None else min(len(buf), end - offset)
            n = fh.readinto(view[:want])
            if not n:
                break
            for digest in hashes:
                digest.update(view[:n])
            offset += n
    return offset
