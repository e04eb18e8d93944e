"""The bytes of one job: every part fetched at once, the plan kept fresh, progress measured.

A job's parts (one file, or the parts of an archive) are fetched together — some pools' tokens
expire — each by a `part.PartRun`. The job-level pieces live here: the settings, the current
plan with single-flight renewals, the rate meter, and the restart of the whole set when the
pool splits the download differently (docs/reliability.md T5).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pooldaemon.downloader.checkpoint import Checkpointer
from pooldaemon.downloader.digest import Digests
from pooldaemon.downloader.health import HealthBook
from pooldaemon.downloader.part import PartRun, TransferFailed, run_all
from pooldaemon.downloader.ratelimit import FairBucket, HostGates
from pooldaemon.downloader.workfile import WRITES_IN_FLIGHT, remove_part_files
from pooldaemon.log import get_logger
from pooldaemon.models import DownloadPlan, PlanPart
from pooldaemon.store import parts as store_parts
from pooldaemon.store.db import Store

log = get_logger(__name__)


@dataclass(frozen=True)
class TransferSettings:
    """How hard and how patiently bytes are fetched (from `[daemon]`, plus internal knobs)."""

    chunk_size: int = 8 << 20
    connections: int = 4
    stall_timeout_s: float = 30.0
    speed_floor_bps: int = 16 << 10  # per job; each connection is held to its share
    speed_grace_s: float = 20.0
    min_free_space_bytes: int = 0
    connect_timeout_s: float = 30.0
    max_redirects: int = 5
    cooldown_s: float = 2.0
    cooldown_max_s: float = 300.0
    #: A Retry-After up to this long is waited out; a longer one counts as a failure (H7).
    retry_after_budget_s: float = 120.0
    max_part_restarts: int = 3


class SplitChanged(Exception):
    """A renewed plan has other parts than the one being fetched (docs/reliability.md T5)."""


class PlanKeeper:
    """The job's current plan; renewals are single-flight (docs/reliability.md T3: one renewal
    for eight workers that all saw an expired token)."""

    def __init__(
        self,
        plan: DownloadPlan,
        renew: Callable[[DownloadPlan, str | None], Awaitable[DownloadPlan]],
        saved: Callable[[DownloadPlan], Awaitable[None]] | None = None,
    ) -> None:
        self.plan = plan
        self.generation = 0
        self.renewals = 0
        self._renew = renew
        self._saved = saved
        self._lock = asyncio.Lock()

    def part(self, key: str) -> PlanPart:
        for part in self.plan.parts:
            if part.key == key:
                return part
        raise SplitChanged(f"part {key} is no longer in the plan")

    async def renew(self, seen_generation: int, part_key: str | None) -> None:
        """Renew unless someone already did since `seen_generation` was read."""
        async with self._lock:
            if self.generation != seen_generation:
                return
            old = self.plan
            new = await self._renew(old, part_key)
            self.plan = new
            self.generation += 1
            self.renewals += 1
            if self._saved is not None:
                await self._saved(new)
            log.info("plan renewed", pool=new.pool, item=new.item_id, part=part_key)
            if sorted(p.key for p in new.parts) != sorted(p.key for p in old.parts):
                raise SplitChanged(
                    f"the pool now splits the download into {len(new.parts)} parts, "
                    f"not {len(old.parts)}"
                )


class RateMeter:
    """Bytes per second over the last couple of seconds."""

    def __init__(self, window_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = 0
        self._window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def add(self, n: int) -> None:
        self.total += n

    def rate(self) -> int:
        now = self._clock()
        if now - self._samples[-1][0] >= 0.2:
            self._samples.append((now, self.total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window_s:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        if now - t0 < 0.05:
            return 0
        return int((self.total - b0) / (now - t0))


class JobTransfer:
    """Fetches every part of one job into work files; returns them complete and size-checked."""

    def __init__(
        self,
        *,
        store: Store,
        session: aiohttp.ClientSession,
        job_id: int,
        keeper: PlanKeeper,
        work_dir: Path,
        settings: TransferSettings,
        bucket: FairBucket,
        gates: HostGates,
        health: HealthBook,
        on_progress: Callable[[int], None] | None = None,
        hash_parts: bool = True,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.job_id = job_id
        self.keeper = keeper
        self.work_dir = work_dir
        self.settings = settings
        self.bucket = bucket
        self.gates = gates
        self.health = health
        self.meter = RateMeter()
        self.bytes_done = 0
        self.requests = 0
        self._on_progress = on_progress
        self._last_emit = 0.0
        self.connections = asyncio.Semaphore(settings.connections)
        #: Blocks the job's writers may have in flight at once: the memory they hold (issue 13).
        self.write_budget = asyncio.Semaphore(WRITES_IN_FLIGHT)
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout_s, sock_read=settings.stall_timeout_s
        )
        self.rate_strikes: Counter[str] = Counter()
        #: Hash each part while it downloads (off when the file is re-hashed after tagging).
        self.hash_parts = hash_parts
        #: The timed checkpoints (docs/reliability.md C7): the engine's one, shared by its jobs.
        self.checkpointer = checkpointer if checkpointer is not None else Checkpointer(store)
        self._runs: list[PartRun] = []

    @property
    def pool(self) -> str:
        return self.keeper.plan.pool

    def bytes_total(self) -> int | None:
        """The job's size as far as known (probed sizes, else the plan's)."""
        total = 0
        for part in self.keeper.plan.parts:
            size = part.expected_size
            for run in self._runs:
                if run.key == part.key and run.state is not None:
                    size = run.state.expected_size
            if size is None:
                return None
            total += size
        return total

    def digests(self) -> dict[str, Digests]:
        """The checksums of the parts hashed while they downloaded (after `run`)."""
        return {run.key: run.digests for run in self._runs if run.digests is not None}

    def count(self, n: int) -> None:
        """Bytes received (or given up when negative); emits progress at most 4×/s."""
        self.bytes_done += n
        if n > 0:
            self.meter.add(n)
        now = time.monotonic()
        if self._on_progress is not None and now - self._last_emit >= 0.25:
            self._last_emit = now
            self._on_progress(self.bytes_done)

    async def run(self) -> dict[str, Path]:
        """Fetch all parts (at once: Harvest tokens expire); restart the set on T5."""
        await self.health.load(self.pool)
        for _ in range(self.settings.max_part_restarts + 1):
            plan = self.keeper.plan
            try:
                return await self._run_parts(plan)
            except SplitChanged as err:
                log.warning("download split changed; restarting the set", job=self.job_id)
                await store_parts.reset_parts(self.store, self.job_id)
                remove_part_files(self.work_dir)
                last = err
        raise TransferFailed(f"the pool keeps changing the download's parts ({last})")

    async def _run_parts(self, plan: DownloadPlan) -> dict[str, Path]:
        states = await store_parts.load_parts(self.store, self.job_id)
        stale = [key for key in states if key not in {p.key for p in plan.parts}]
        if stale:
            await store_parts.reset_parts(self.store, self.job_id, stale)
        runs = [PartRun(self, part.key, states.get(part.key)) for part in plan.parts]
        self._runs = runs
        for run in runs:
            await run.load()
        self.bytes_done = sum(run.durable_bytes for run in runs)
        paths = await run_all(run.run() for run in runs)
        return {run.key: path for run, path in zip(runs, paths, strict=True)}
