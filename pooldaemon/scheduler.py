"""The only APScheduler user: per pool, catalog, queue, lookup and token-renewal jobs.

Every job runs a PoolSync method and swallows its error: PoolSync has already recorded it, logged
it if the pool just started failing and published it as an event, and the next tick is the
retry. Nothing a pool does can stop the scheduler.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pooldaemon.log import get_logger
from pooldaemon.pools.base import Capability
from pooldaemon.retry import backoff_s
from pooldaemon.sync import PoolSync

log = get_logger(__name__)

#: docs/interface.md §6 "All pools": polling floors, also enforced by the config (a second line
#: here).
CATALOG_FLOOR_S = 15 * 60.0
QUEUE_FLOOR_S = 60.0
DAY_S = 86400.0


def jitter_for(interval_s: float) -> float:
    """Up to a tenth of the interval, at most 10 minutes: pools never see us in lock-step."""
    return min(interval_s * 0.1, 600.0)


class PoolScheduler:
    """Schedules each enabled pool's syncs on an `AsyncIOScheduler`."""

    def __init__(
        self,
        *,
        full_interval_s: float = DAY_S,
        lookups_interval_s: float = DAY_S,
        renew_margin_s: float = 300.0,
        start_delay_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        syncs: Iterable[PoolSync] = (),
    ) -> None:
        self.full_interval_s = full_interval_s
        self.lookups_interval_s = lookups_interval_s
        self.renew_margin_s = renew_margin_s
        self.start_delay_s = start_delay_s
        self.clock = clock
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.syncs: dict[str, PoolSync] = {}
        self._renew_failures: dict[str, int] = {}
        self._last_renewal: dict[str, float] = {}
        for sync in syncs:
            self.add_pool(sync)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, paused: bool = False) -> None:
        """Start ticking on the running event loop (the daemon's `Lifecycle`)."""
        self.scheduler.start(paused=paused)

    async def stop(self) -> None:
        """Stop scheduling; a job already running is cancelled with the daemon's tasks."""
        self.shutdown()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def get_jobs(self) -> list[Job]:
        return list(self.scheduler.get_jobs())

    # -- pools ------------------------------------------------------------------------------------

    def add_pool(
        self,
        sync: PoolSync,
        *,
        catalog_interval_s: float | None = None,
        queue_interval_s: float | None = None,
    ) -> None:
        """Add the jobs for one pool (none when the pool is disabled)."""
        config = sync.adapter.config
        if not config.enabled:
            log.info("pool disabled, not scheduled", pool=sync.name)
            return
        name = sync.name
        self.syncs[name] = sync
        adapter = sync.adapter
        soon = self._soon()
        if adapter.supports(Capability.CATALOG):
            every = max(
                CATALOG_FLOOR_S,
                catalog_interval_s or config.catalog_interval_s,
            )
            # Incremental passes (full when there is no earlier pass to start from).
            self._interval(f"{name}:catalog", self.catalog_job, name, every, first=soon)
            # The daily full pass is what notices removed tracks (docs/reliability.md M2).
            self._interval(f"{name}:full", self.full_catalog_job, name, self.full_interval_s)
        if adapter.supports(Capability.QUEUE):
            every = max(
                QUEUE_FLOOR_S,
                queue_interval_s or config.queue_interval_s,
            )
            self._interval(f"{name}:queue", self.queue_job, name, every, first=soon)
        if adapter.supports(Capability.LOOKUPS):
            self._interval(
                f"{name}:lookups", self.lookups_job, name, self.lookups_interval_s, first=soon
            )

    def _soon(self) -> datetime:
        delay = self.start_delay_s + random.uniform(0, self.start_delay_s)
        return datetime.fromtimestamp(self.clock() + delay, UTC)

    def _interval(
        self,
        job_id: str,
        func: Callable[..., Any],
        name: str,
        every_s: float,
        *,
        first: datetime | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if first is not None:
            options["next_run_time"] = first
        self.scheduler.add_job(
            func,
            # Jitter: pools never see all their clients (or all our pools) in lock-step.
            IntervalTrigger(seconds=every_s, jitter=jitter_for(every_s), timezone=UTC),
            args=[name],
            id=job_id,
            name=job_id,
            replace_existing=True,
            # A slow sync never runs twice at once: the next tick waits for this one.
            max_instances=1,
            # Ticks missed while the laptop slept run once on waking, not once per missed tick.
            coalesce=True,
            # A tick up to one interval late is still worth running; later than that the next
            # regular tick is as good, so a long sleep does not end in a burst.
            misfire_grace_time=max(1, int(every_s)),
            **options,
        )

    def add_library_audit(self, audit: Callable[[str], Any], every_s: float) -> None:
        """docs/interface.md §8: the library's quick audit every `audit_interval` (0: never)."""
        if every_s > 0:
            self._interval("library:audit", audit, "quick", every_s)

    # -- jobs -------------------------------------------------------------------------------------

    async def catalog_job(self, name: str) -> None:
        """Incremental catalog pass."""
        await self._run(name, "catalog", lambda sync: sync.sync_catalog(full=False))

    async def full_catalog_job(self, name: str) -> None:
        """Full catalog pass (marks tracks the pool no longer lists as removed)."""
        await self._run(name, "catalog", lambda sync: sync.sync_catalog(full=True))

    async def queue_job(self, name: str) -> None:
        await self._run(name, "queue", lambda sync: sync.sync_queue())

    async def lookups_job(self, name: str) -> None:
        await self._run(name, "lookups", lambda sync: sync.sync_lookups())

    async def renew_job(self, name: str) -> None:
        """Renew the account token ahead of its expiry, then plan the next renewal."""
        sync = self.syncs.get(name)
        if sync is None:
            return
        self._last_renewal[name] = self.clock()
        try:
            await sync.renew_token()
        except Exception as err:  # recorded and logged-on-change by PoolSync
            failures = self._renew_failures.get(name, 0) + 1
            self._renew_failures[name] = failures
            # Back off in minutes, never in a loop (docs/reliability.md T4).
            delay = backoff_s(failures, 60.0, 1800.0, jitter=False)
            log.debug("token renewal failed", pool=name, error=str(err), retry_in_s=delay)
            self._renewal_at(name, self.clock() + delay)
            return
        self._renew_failures.pop(name, None)
        self.schedule_renewal(name)

    async def _run(self, name: str, what: str, work: Callable[[PoolSync], Any]) -> None:
        sync = self.syncs.get(name)
        if sync is None:
            return
        try:
            await work(sync)
        except Exception as err:  # PoolSync recorded it; the next tick is the retry
            log.debug("scheduled job failed", pool=name, what=what, error=str(err))
        finally:
            # A sync may have signed in (or renewed on a 401): follow the token's new expiry.
            if name not in self._renew_failures:
                self.schedule_renewal(name)

    # -- token renewal ----------------------------------------------------------------------------

    def renewal_time(self, name: str) -> float | None:
        """When to renew `name`'s token: ahead of `exp` by the margin (None: nothing to renew)."""
        sync = self.syncs.get(name)
        expires_at = sync.adapter.token_expires_at() if sync else None
        if expires_at is None:
            return None
        now = self.clock()
        # A margin never larger than a fifth of the time left: short-lived tokens (Promo Only's
        # five minutes) are renewed late in their life, not right after they are issued.
        margin = min(self.renew_margin_s, max(0.0, expires_at - now) / 5)
        earliest = max(now, self._last_renewal.get(name, 0.0) + 30.0)
        return max(expires_at - margin, earliest)

    def schedule_renewal(self, name: str) -> None:
        """(Re)place the pool's renewal job at `renewal_time`, or drop it."""
        when = self.renewal_time(name)
        if when is None:
            if self.scheduler.get_job(f"{name}:renew") is not None:
                self.scheduler.remove_job(f"{name}:renew")
            return
        self._renewal_at(name, when)

    def _renewal_at(self, name: str, when: float) -> None:
        self.scheduler.add_job(
            self.renew_job,
            DateTrigger(run_date=datetime.fromtimestamp(when, UTC), timezone=UTC),
            args=[name],
            id=f"{name}:renew",
            name=f"{name}:renew",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            # Run however late (after a sleep the token may be about to expire); a call that
            # meets an expired token renews it anyway, so a late renewal is harmless.
            misfire_grace_time=None,
        )

    def next_run(self, job_id: str) -> datetime | None:
        """When a job fires next (for status output and tests)."""
        job = self.scheduler.get_job(job_id)
        if job is None:
            return None
        next_time = getattr(job, "next_run_time", None)
        if next_time is not None:
            return next_time  # type: ignore[no-any-return]
        return job.trigger.get_next_fire_time(None, datetime.fromtimestamp(self.clock(), UTC))  # type: ignore[no-any-return]
