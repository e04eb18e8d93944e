"""CPU-bound work beside the event loop: a worker process that decodes catalog pages.

A 174,420-record sync parses and normalizes ~85 MB of JSON. In the daemon's process that work
and SQLite's writing take turns under one GIL; in a worker process it runs on another core,
and the event loop stays free for searches and downloads meanwhile. What comes back is a
`TrackRows` page, cheap to unpickle.

One `Offload` serves one catalog pass. Its worker starts on the first `run` and is stopped by
`close()`; until it has started (~0.3 s, importing the adapter), and for good if it cannot be
started or dies, the work runs in this process: slower, never lost, logged once.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pooldaemon.log import get_logger

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

log = get_logger(__name__)

T = TypeVar("T")

#: Allocations between two collections of the youngest generation (Python's default: 700).
#: A catalog sync allocates ~40 objects per record, none of them in reference cycles, so the
#: default collected ~250 times per 1,000-record page: ~0.6 s of the event loop's time in a
#: 174,420-record sync (9.5 → 8.9 s, alternating runs). Cycles still get collected, a few MB
#: of young objects later.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """The collector settings of the daemon's process and its worker (and the benchmarks')."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _worker_start() -> None:
    tune_gc()
    # Ctrl-C in a terminal reaches the whole process group: the daemon stops its worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _load(module: str) -> None:
    importlib.import_module(module)


class Offload:
    """Runs pure functions of picklable arguments in one worker process (see the module)."""

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._ready: asyncio.Future[None] | None = None
        self._failed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)`, in the worker once it is up, else here."""
        if self._ready is None and not self._failed:
            self._start(fn.__module__)
        if self._up() and self._executor is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
            except BrokenProcessPool as err:
                self._give_up(err)
        return fn(*args)

    def _up(self) -> bool:
        """Whether the worker has started and imported what it runs (giving up if it failed)."""
        ready = self._ready
        if ready is None or not ready.done():
            return False
        if ready.cancelled() or ready.exception() is not None:
            self._give_up(None if ready.cancelled() else ready.exception())
            return False
        return True

    async def start(self, module: str) -> bool:
        """Start the worker now and wait until it has imported `module`; whether it is up."""
        if self._ready is None and not self._failed:
            self._start(module)
        if self._ready is not None:
            await asyncio.gather(self._ready, return_exceptions=True)
        return self._up()

    def _start(self, module: str) -> None:
        # Imported at the first catalog pass: an idle daemon has no worker (issue 13).
        import multiprocessing
        from concurrent.futures import Future, ProcessPoolExecutor

        try:
            # Not fork: the daemon has threads (SQLite's, the executor's); a forked child of a
            # threaded process may hang on a lock another thread held.
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
            )
            warm: Future[None] = self._executor.submit(_load, module)
        except (OSError, RuntimeError) as err:
            self._give_up(err)
            return
        self._ready = asyncio.wrap_future(warm)

    def _give_up(self, err: BaseException | None) -> None:
        if not self._failed:
            log.warning("decoding in the daemon's process: no worker process", error=str(err))
        self._failed = True
        self._ready = None
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop the worker (it finishes the page it has, if any)."""
        executor, self._executor = self._executor, None
        self._ready = None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


class Inline(Offload):
    """Runs everything in this process (small catalogs, tests of the adapters alone)."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def start(self, module: str) -> bool:
        return False


INLINE = Inline()
