"""Timed checkpoints: received bytes made durable and recorded about once a second.

A chunk's checkpoint is otherwise taken only when it completes or its answer fails, so a SIGKILL
would cost each connection everything since its last finished chunk. Every connection streaming
into a work file registers here; once a second one task makes each work file durable (one fsync
per file, however many connections write it) and then records every registered chunk's durable
prefix in one transaction (docs/reliability.md C7). The order is the one of C2: the data is
durable before the record claims it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pooldaemon.downloader.workfile import ChunkWriter, SharedFd, datasync
from pooldaemon.log import get_logger
from pooldaemon.store import parts as store_parts
from pooldaemon.store.db import Store
from pooldaemon.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pooldaemon.downloader.part import PartRun

log = get_logger(__name__)

#: How often received bytes are made durable and recorded (docs/reliability.md C7).
CHECKPOINT_INTERVAL_S = 1.0


@dataclass(eq=False)
class Stream:
    """One answer being written into a chunk: its part, chunk and writer."""

    run: PartRun
    idx: int
    writer: ChunkWriter


class Checkpointer:
    """The one timer that checkpoints every stream in flight, across parts and jobs.

    The timer task runs only while something streams, so an idle engine has no task to stop.
    """

    def __init__(
        self,
        store: Store,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        *,
        on_tick: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self._streams: set[Stream] = set()
        self._task: asyncio.Task[None] | None = None
        #: Called after each checkpoint with (work files synced, chunks recorded): for tests.
        self._on_tick = on_tick
        self.ticks = 0

    def register(self, stream: Stream) -> None:
        """`stream` writes verified bytes from now on (its head was checked)."""
        self._streams.add(stream)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="downloader-checkpoints"
            )

    @property
    def streaming(self) -> int:
        """How many streams are registered now."""
        return len(self._streams)

    def unregister(self, stream: Stream) -> None:
        """`stream` ended: its own completion or failure path records what it holds."""
        self._streams.discard(stream)

    async def close(self) -> None:
        """Stop the timer (streams checkpoint themselves when they are cancelled)."""
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _loop(self) -> None:
        while self._streams:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a failed checkpoint is retried at the next tick
                log.warning("timed checkpoint failed", error=str(err))

    async def tick(self) -> None:
        """Sync every work file being written once, then record what that made durable."""
        # Snapshot first: what a completed write put in the file before the fsync starts is
        # covered by it; anything later waits for the next tick.
        marks = [(s, s.writer.written) for s in list(self._streams)]
        files: dict[SharedFd, list[tuple[Stream, int]]] = {}
        for stream, written in marks:
            chunk = stream.run.chunks[stream.idx]
            if not chunk.done and written - chunk.start > chunk.filled and stream.run.fd:
                files.setdefault(stream.run.fd, []).append((stream, written))
        if not files:
            return
        synced = await asyncio.gather(*(self._sync(fd) for fd in files), return_exceptions=True)
        durable = [
            mark
            for ok, group in zip(synced, files.values(), strict=True)
            if ok is True
            for mark in group
        ]

        def claim() -> list[tuple[int, str, int, int]]:
            # Run with the write lock held: a stream that ended meanwhile is dropped here, and a
            # part reset after this point queues its DELETE behind this transaction.
            rows = []
            for stream, written in durable:
                chunk = stream.run.chunks[stream.idx] if stream in self._streams else None
                if chunk is None or chunk.done or written - chunk.start <= chunk.filled:
                    continue
                chunk.filled = written - chunk.start
                rows.append((stream.run.jt.job_id, stream.run.key, stream.idx, chunk.filled))
            return rows

        rows = await store_parts.commit_progress(self.store, claim)
        for stream, _ in durable:
            stream.run.advance_hash()
        self.ticks += 1
        if self._on_tick is not None:
            self._on_tick(len(files), len(rows))

    @staticmethod
    async def _sync(fd: SharedFd) -> bool:
        try:
            await fd.run(datasync)
        except OSError as err:  # closed meanwhile, or an I/O error its writer will report
            log.debug("timed checkpoint skipped a work file", error=str(err))
            return False
        return True
