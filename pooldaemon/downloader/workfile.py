"""Work files: where a job's partial bytes live, and how they are written and made durable.

A part's bytes go to a preallocated file in the job's work folder inside the library (so the
final rename stays on one filesystem). Writes run in threads with `pwritev` in ~1 MiB blocks; a
chunk's data is fsynced before its checkpoint claims it (docs/reliability.md C2).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pooldaemon.downloader.failpoints import failpoint
from pooldaemon.errors import DiskFull
from pooldaemon.fsutil import fsync_dir, full_fsync, mount_point, preallocate, same_filesystem
from pooldaemon.units import format_size

#: Bytes gathered from the socket before one `pwritev` (fewer syscalls and thread hops per GiB).
WRITE_BLOCK = 1 << 20
#: Blocks a job may have on their way to its work files at once: one connection keeps reading
#: while up to this many of its blocks are written; with more connections they share them.
WRITES_IN_FLIGHT = 4
#: Stay well below IOV_MAX (1024) when tiny reads pile up.
MAX_IOV = 256
#: The longest received bytes wait in memory before they are written (docs/reliability.md C7).
MAX_HOLD_S = 0.25
#: The folder of the library that holds every job's work folder.
WORK_AREA = ".pooldaemon"
_SAFE_KEY = re.compile(r"[^A-Za-z0-9._-]")


def work_dir_for(download_dir: Path, job_id: int) -> Path:
    """A job's partial files: inside the library, so renames stay atomic (docs/interface.md §5)."""
    return download_dir / WORK_AREA / f"job-{job_id}"


def part_file_name(key: str) -> str:
    """The work file of a part: the key made safe, with a hash when it had to change."""
    safe = _SAFE_KEY.sub("_", key)[:40]
    if safe != key or not safe:
        safe += "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"part-{safe}.part"


#: Where external drives are mounted (macOS and Linux conventions).
_REMOVABLE_ROOTS = ("/Volumes", "/media", "/mnt", "/run/media")
_JOB_DIR = re.compile(r"^job-(\d+)$")


def library_blocked(download_dir: Path) -> str | None:
    """Make the library and its work area; a reason when downloads cannot go there."""
    work_root = download_dir / WORK_AREA
    if not download_dir.is_dir():
        if _on_removable_mount(download_dir):
            # Creating it would fill the system disk under an unplugged drive's mount point.
            return f"download_dir {download_dir} does not exist (is its drive mounted?)"
        download_dir.mkdir(parents=True, exist_ok=True)
    work_root.mkdir(exist_ok=True, mode=0o700)
    if not same_filesystem(work_root, download_dir):
        # docs/reliability.md D2: never fall back to copying into the library.
        return f"the work area {work_root} is on another filesystem than {download_dir}"
    return None


def _on_removable_mount(path: Path) -> bool:
    """Whether `path` lives where external drives are mounted."""
    text = os.path.abspath(path)
    return any(text == root or text.startswith(root + os.sep) for root in _REMOVABLE_ROOTS)


def clean_work_area(work_root: Path, finished: set[int]) -> None:
    """Remove work folders of jobs that are done or cancelled (kept otherwise: C1, Z1)."""
    if not work_root.is_dir():
        return
    for entry in work_root.iterdir():
        match = _JOB_DIR.match(entry.name)
        if match and int(match.group(1)) in finished and not entry.is_symlink():
            remove_tree(entry)


def remove_part_files(work_dir: Path) -> None:
    """Remove the part files of a job's work folder (its other files stay)."""
    if work_dir.is_dir():
        for entry in work_dir.iterdir():
            if entry.name.startswith("part-") and entry.is_file():
                entry.unlink()


def remove_tree(path: Path) -> None:
    """Remove a work folder (a symlink in its place is unlinked, never followed)."""
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def datasync(fd: int) -> None:
    """Make the file's data durable; size and blocks were fixed (and synced) at creation."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        full_fsync(fd)


def allocate(fd: int, total: int, folder: Path) -> None:
    """Give a fresh work file its full size, durably, with the folder entry naming it."""
    preallocate(fd, total)
    if os.fstat(fd).st_size != total:
        os.ftruncate(fd, total)
    # The file and its size must be durable before any chunk checkpoint names it (C2).
    full_fsync(fd)
    fsync_dir(folder)


def disk_full(path: Path, need: int | None = None) -> DiskFull:
    """The error a full disk gives the user: "disk full: need X on <mount>"."""
    mount = mount_point(path)
    if need is None:
        return DiskFull(f"disk full: no space left on {mount}")
    return DiskFull(
        f"disk full: need {format_size(need)} on {mount}",
        detail={"need": need, "mount": str(mount)},
    )


def no_space(err: OSError) -> bool:
    """Whether a write failed for lack of space (or quota)."""
    return err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class SharedFd:
    """A file descriptor used by writer threads; closed only once no thread is using it.

    An asyncio task cancelled while its write runs in a thread does not stop the thread; closing
    the descriptor then could let the write land in whatever file reuses the number.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._users = 0
        self._closing = False
        self._lock = threading.Lock()

    def enter(self) -> int:
        with self._lock:
            if self._closing:
                raise OSError(errno.EBADF, "work file already closed")
            self._users += 1
            return self._fd

    def exit(self) -> None:
        with self._lock:
            self._users -= 1
            if self._closing and self._users == 0 and self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def close(self) -> None:
        with self._lock:
            self._closing = True
            if self._users == 0 and self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def run(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `func(fd, *args)` in a thread, holding the descriptor open meanwhile.

        Once handed over the call always runs: a caller cancelled while it still waits for a
        thread must not take it out of the queue. A write dropped there would be lost although
        its bytes count as received (docs/reliability.md C2), and the descriptor it holds
        would never be released.
        """
        fd = self.enter()

        def call() -> Any:
            try:
                return func(fd, *args)
            finally:
                self.exit()

        inner = asyncio.get_running_loop().run_in_executor(None, call)
        inner.add_done_callback(_observed)
        return asyncio.shield(inner)


def _observed(fut: asyncio.Future[Any]) -> None:
    """Mark an outcome as seen: the caller may have stopped waiting for it."""
    if not fut.cancelled():
        fut.exception()


def _write_blocks(fd: int, blocks: list[bytes], offset: int, mid_chunk: bool) -> None:
    """Write `blocks` at `offset`, whole (a short write is continued, not lost)."""
    if hasattr(os, "pwritev"):
        views: list[Any] = list(blocks)
        while views:
            n = os.pwritev(fd, views, offset)
            if n <= 0:
                raise OSError(errno.EIO, "pwritev wrote nothing")
            offset += n
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if n:
                views[0] = memoryview(views[0])[n:]
    else:
        view = memoryview(b"".join(blocks))
        while view:
            n = os.pwrite(fd, view, offset)
            if n <= 0:
                raise OSError(errno.EIO, "pwrite wrote nothing")
            offset += n
            view = view[n:]
    if mid_chunk:
        failpoint("mid_chunk_write")


class ChunkWriter:
    """Buffers one answer's bytes and writes them at their offset.

    Without a `budget` one write is in flight at a time. With one (the job's `WriteBudget`),
    several blocks may be in flight at once, each holding a slot of the budget until its write
    ends: the receiving connection keeps reading while the disk catches up, and the budget
    bounds the memory the job's writers hold. `written` only ever covers the completed prefix
    (docs/reliability.md C2), so writes that end out of order never claim a gap.
    """

    def __init__(
        self,
        fd: SharedFd,
        offset: int,
        block: int = WRITE_BLOCK,
        *,
        max_hold_s: float = MAX_HOLD_S,
        clock: Callable[[], float] = time.monotonic,
        budget: asyncio.Semaphore | None = None,
        on_written: Callable[[int, list[bytes]], None] | None = None,
    ) -> None:
        self.fd = fd
        self.block = block
        self.offset = offset  # file offset of the next byte to write
        #: File offset up to which every write has completed (what an fsync now makes durable).
        self.written = offset
        self.received = 0
        self._bufs: list[bytes] = []
        self._buffered = 0
        #: Writes handed to threads, in file order: (offset, end, blocks, future).
        self._inflight: deque[tuple[int, int, list[bytes], asyncio.Future[Any]]] = deque()
        #: The first failed write's error: `written` stays where it was from then on.
        self._error: BaseException | None = None
        self._max_hold_s = max_hold_s
        self._clock = clock
        self._held_since = 0.0
        self._budget = budget
        #: Told (offset, blocks) of each write that extended `written` (the hasher's feed).
        self._on_written = on_written

    def add(self, data: bytes) -> bool:
        """Buffer `data`; True when a block is ready to write, or bytes were held too long."""
        if not self._bufs:
            self._held_since = self._clock()
        self._bufs.append(data)
        self._buffered += len(data)
        self.received += len(data)
        return (
            self._buffered >= self.block
            or len(self._bufs) >= MAX_IOV
            # A slow connection fills a block in seconds; the timed checkpoint (C7) can claim
            # only written bytes, so they are not held longer than this.
            or self._clock() - self._held_since >= self._max_hold_s
        )

    def peek(self, n: int) -> bytes:
        return b"".join(self._bufs)[:n]

    async def flush(self, *, mid_chunk: bool) -> None:
        """Hand the buffered block to a thread, once the budget (or the one write) allows."""
        if self._budget is None:
            await self._wait()
        else:
            await self._budget.acquire()
        if not self._bufs:
            if self._budget is not None:
                self._budget.release()
            return
        bufs, offset = self._bufs, self.offset
        end = offset + self._buffered
        self._bufs, self.offset, self._buffered = [], end, 0
        try:
            pending = self.fd.run(_write_blocks, bufs, offset, mid_chunk)
        except BaseException:
            if self._budget is not None:
                self._budget.release()
            raise
        self._inflight.append((offset, end, bufs, pending))
        pending.add_done_callback(self._wrote)

    def _wrote(self, fut: asyncio.Future[Any]) -> None:
        if self._budget is not None:
            self._budget.release()
        # Advance over the completed prefix only: a later block done first waits its turn.
        while self._inflight and self._inflight[0][3].done():
            offset, end, bufs, done = self._inflight.popleft()
            if self._error is None and done.cancelled():
                self._error = OSError(errno.EIO, "a write to the work file was cancelled")
            elif self._error is None and done.exception() is not None:
                self._error = done.exception()
            if self._error is not None:
                continue
            self.written = max(self.written, end)
            if self._on_written is not None:
                self._on_written(offset, bufs)

    async def _wait(self) -> None:
        """Wait for every write in flight to end; raise the first failed write's error.

        A caller cancelled meanwhile leaves the writes running and still tracked here, so the
        checkpoint its stop takes next (docs/reliability.md C2) waits for them too instead of
        claiming bytes that are still on their way to the file.
        """
        while self._inflight:
            # Each write's `_wrote` runs before gather sees it done: the deque empties here.
            futures = [fut for *_, fut in self._inflight]
            await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
        if self._error is not None:
            raise self._error

    async def drain(self) -> None:
        """Write everything buffered and wait for it."""
        await self.flush(mid_chunk=False)
        await self._wait()

    async def abandon(self) -> None:
        """Drop what is buffered; let writes in flight finish (their bytes stay unclaimed)."""
        self._bufs, self._buffered = [], 0
        try:
            await self._wait()
        except OSError:
            pass
