"""Download jobs: scheduling, states, retries with back-off, pause/resume/cancel.

The engine turns a queued job into a verified file in the library: it plans it with the pool,
lets `fetch` bring the bytes and `finish` verify and place them. It owns its tasks: a scheduler
that starts at most `max_active_downloads` jobs, one task per active job and a free-space
watcher; `stop()` ends them within a bound. Calls a finished download owes its pool are the
outbox's (`pooldaemon.outbox`), woken through `on_owed`.

It is one concept, the job state machine (every transition in docs/interface.md §4 and the
recovery of each at start-up), and stays one module although it is near 700 lines: splitting it
would spread the legal transitions over modules that each see half of them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from pooldaemon.downloader import dupes
from pooldaemon.downloader.checkpoint import Checkpointer
from pooldaemon.downloader.health import HealthBook
from pooldaemon.downloader.paths import PathEscape
from pooldaemon.downloader.pool import REDOWNLOAD, DownloadPool
from pooldaemon.downloader.ratelimit import FairBucket, HostGates
from pooldaemon.downloader.workfile import (
    WORK_AREA,
    clean_work_area,
    disk_full,
    library_blocked,
    no_space,
    remove_tree,
    work_dir_for,
)
from pooldaemon.errors import (
    AccountError,
    ArchiveDamaged,
    ArchiveRejected,
    BadRequest,
    Conflict,
    DiskFull,
    IntegrityError,
    NotFound,
    PoolDaemonError,
    TransientError,
    Unsupported,
)
from pooldaemon.events import EventBus
from pooldaemon.fsutil import free_space
from pooldaemon.library_config import LibraryConfig
from pooldaemon.log import get_logger, redact_text
from pooldaemon.models import ACTIVE_STATES, DownloadPlan, Job, JobState, Request
from pooldaemon.retry import backoff_s
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store import parts as store_parts
from pooldaemon.store import pools as store_pools
from pooldaemon.store.db import Store

# The transfer (fetch, part, answer) and the finishing (finish, tags, digest) are imported by
# the first download: an idle daemon does not carry them (issue 13: idle RSS).
if TYPE_CHECKING:
    from pooldaemon.config import DaemonConfig
    from pooldaemon.downloader.fetch import JobTransfer, TransferSettings
    from pooldaemon.downloader.finish import Finisher

log = get_logger(__name__)

Clock = Callable[[], float]

#: How often a job of a blocked pool looks again whether the block was lifted (no network).
BLOCKED_RECHECK_S = 300.0
#: Errors that no retry will fix: the job fails at once.
_PERMANENT = (NotFound, Unsupported, BadRequest, AccountError, PathEscape)


@dataclass
class _Active:
    """A job being worked on, and why it is being stopped (None: it is not)."""

    task: asyncio.Task[None]
    transfer: JobTransfer | None = None
    stop_reason: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    """Jobs → verified files: the daemon's downloader (docs/interface.md §4, §5)."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        adapters: Mapping[str, DownloadPool],
        config: DaemonConfig,
        events: EventBus,
        clock: Clock = time.time,
        *,
        retry_backoff_s: float = 30.0,
        retry_backoff_max_s: float = 3600.0,
        server_cooldown_s: float = 2.0,
        retry_after_budget_s: float = 120.0,
        disk_check_interval_s: float = 30.0,
        lost_window_s: float = 600.0,
        on_owed: Callable[[], None] | None = None,
        library: LibraryConfig = dupes.NO_SKIPPING,
        folders: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.adapters = adapters
        self.config = config
        self.events = events
        self.clock = clock
        self.download_dir = Path(config.download_dir)
        self.work_root = self.download_dir / WORK_AREA
        self._server_cooldown_s = server_cooldown_s
        self._retry_after_budget_s = retry_after_budget_s
        self.bucket = FairBucket(config.bandwidth_limit_bps)
        #: One timer checkpoints every job's streams: one commit a second, not one per job.
        self.checkpointer = Checkpointer(store)
        self.gates = HostGates()
        self.health = HealthBook(store, clock=clock, cooldown_s=server_cooldown_s)
        self._retry_backoff = (retry_backoff_s, retry_backoff_max_s)
        self._disk_check_interval_s = disk_check_interval_s
        self._lost_window_s = lost_window_s
        self.library = library
        self._active: dict[int, _Active] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._paused = False
        self._held: str | None = None
        self._running = False
        #: Scheduler passes completed: tests wait for one rather than sleep.
        self.scheduler_passes = 0
        self._blocked: str | None = None
        self._owed = on_owed or (lambda: None)
        self._folders = folders

    @functools.cached_property
    def settings(self) -> TransferSettings:
        """How every job's transfer runs; built with the first download (see TYPE_CHECKING)."""
        from pooldaemon.downloader.fetch import TransferSettings

        config = self.config
        return TransferSettings(
            chunk_size=config.chunk_size_bytes,
            connections=config.connections_per_download,
            stall_timeout_s=config.stall_timeout_s,
            speed_floor_bps=config.speed_floor_bps,
            speed_grace_s=config.speed_grace_s,
            min_free_space_bytes=config.min_free_space_bytes,
            cooldown_s=self._server_cooldown_s,
            retry_after_budget_s=self._retry_after_budget_s,
        )

    @functools.cached_property
    def finisher(self) -> Finisher:
        """Verifies and places what a job fetched; built with the first download."""
        from pooldaemon.downloader.finish import Finisher

        return Finisher(
            self.store,
            self.config,
            set_state=self._set_state,
            publish_state=self._publish_state,
            owed=self._owed,
            folders=self._folders,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what the last run left, then start scheduling (docs/reliability.md C1-C5)."""
        self._blocked = library_blocked(self.download_dir)
        if self._blocked:
            log.error("downloads blocked", reason=self._blocked)
        for job_id in await store_jobs.jobs_in(self.store, tuple(s.value for s in ACTIVE_STATES)):
            # Interrupted mid-flight: back to the queue with its chunk checkpoints.
            await self._set_state(job_id, JobState.QUEUED, error=None)
        await self._find_lost()
        await asyncio.to_thread(clean_work_area, self.work_root, await self._finished_job_ids())
        self._running = True
        self._tasks = [
            asyncio.create_task(self._schedule_loop(), name="downloader-scheduler"),
            asyncio.create_task(self._disk_loop(), name="downloader-disk"),
        ]

    async def stop(self, timeout_s: float = 8.0) -> None:
        """Stop taking work, let transfers checkpoint what they have, then cancel (bounded)."""
        self._running = False
        for task in self._tasks:
            task.cancel()
        active = list(self._active.items())
        for _, entry in active:
            entry.stop_reason = "stop"
            entry.task.cancel()
        tasks = [entry.task for _, entry in active] + self._tasks
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        for job_id, _ in active:
            await self._requeue_if_active(job_id)
        await self.checkpointer.close()
        self._tasks = []

    def wake(self) -> None:
        """New work may be waiting (a job was queued, a back-off may have ended)."""
        self._wake.set()

    # -- requests -----------------------------------------------------------------------------

    async def submit(
        self,
        request: Request,
        origin: str,
        *,
        key: str | None = None,
        title: str | None = None,
        artist: str | None = None,
        automatic: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Queue a download, or point at the job already standing for it (docs/interface.md §3).

        `automatic`: a rule or a pool's "latest" list asked, not the user by name; a song+version
        the library holds then ends `skipped` (docs/interface.md §8, `downloader/dupes.py`).

        A redownload asks the pool's redownload endpoint first (docs/interface.md §6), unless a
        job for the item is still on its way — then that job is the answer. With an idempotency
        `key` (the drop folder's), a replay after a crash returns the job the first call made.
        """
        if key is not None:
            earlier = await store_jobs.job_for_key(self.store, key)
            if earlier is not None:
                return self._overlay(earlier), False
        adapter = self.adapters.get(request.pool)
        if adapter is None:
            raise NotFound(f"unknown pool {request.pool!r}")
        if request.kind not in adapter.kinds:
            raise Unsupported(f"{request.pool} cannot download a {request.kind}")
        if request.redownload:
            live = await store_jobs.find_live_job(self.store, request)
            if live is not None and live["state"] != JobState.DONE:
                return self._overlay(live), False
            if REDOWNLOAD in adapter.capabilities and request.item_id is not None:
                await adapter.redownload(
                    [request.item_id], request.reason or "requested again by the user"
                )
        verdict = await dupes.check(self.store, self.library, request, automatic=automatic)
        if verdict.displace is not None:
            await self._set_state(
                verdict.displace,
                JobState.SKIPPED,
                error=verdict.displace_reason,
                error_code="duplicate",
                expect=frozenset({JobState.QUEUED}),
            )
        job, created = await store_jobs.create_job(
            self.store,
            request,
            origin=origin,
            key=key,
            title=title,
            artist=artist,
            song=verdict.song,
            skipped=verdict.skipped,
            automatic=automatic,
        )
        if created:
            self._publish_state(job)
            self.wake()
        return self._overlay(job), created

    async def retry(self, job_id: int) -> dict[str, Any]:
        """A failed or cancelled job goes back to the queue with fresh attempts; a queued one
        waiting out a back-off starts now."""
        job = await store_jobs.load_job(self.store, job_id)
        state = job.state
        if state == JobState.QUEUED:
            await store_pools.set_blocked(self.store, job.pool, None)
            await store_jobs.update_job(self.store, job_id, not_before=None)
            self.wake()
            return self._overlay(await store_jobs.get_job(self.store, job_id))
        if state not in (JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED):
            raise Conflict(
                f"job {job_id} is {state}; only failed, cancelled or skipped jobs are retried"
            )
        if job.error_code in (ArchiveDamaged.code, IntegrityError.code):
            # The bytes were bad: a retry fetches them again.
            await store_parts.reset_parts(self.store, job_id)
        queued = await self._set_state(job_id, JobState.QUEUED, attempts=0, not_before=None)
        self.wake()
        return queued

    async def cancel(self, job_id: int) -> dict[str, Any]:
        """Stop the job and forget its partial files."""
        job = await store_jobs.load_job(self.store, job_id)
        if job.state in (JobState.DONE, JobState.CANCELLED):
            if job.state == JobState.CANCELLED:
                return self._overlay(job.to_api())
            raise Conflict(f"job {job_id} is done; there is nothing to cancel")
        await self._interrupt(job_id, "cancel")
        cancelled = await self._set_state(job_id, JobState.CANCELLED, error=None)
        await store_parts.reset_parts(self.store, job_id)
        await asyncio.to_thread(remove_tree, work_dir_for(self.download_dir, job_id))
        return cancelled

    async def pause(self, job_id: int) -> dict[str, Any]:
        """Stop the job where it is (its chunks checkpointed); `resume` continues it."""
        job = await store_jobs.load_job(self.store, job_id)
        state = job.state
        if state == JobState.PAUSED:
            return self._overlay(job.to_api())
        if state not in ACTIVE_STATES and state != JobState.QUEUED:
            raise Conflict(f"job {job_id} is {state}; it cannot be paused")
        await self._interrupt(job_id, "pause")
        return await self._set_state(job_id, JobState.PAUSED, error=None)

    async def resume(self, job_id: int) -> dict[str, Any]:
        """A paused job (by the user, or for lack of space) goes back to the queue."""
        job = await store_jobs.load_job(self.store, job_id)
        state = job.state
        if state != JobState.PAUSED:
            if state in ACTIVE_STATES or state == JobState.QUEUED:
                return self._overlay(job.to_api())
            raise Conflict(f"job {job_id} is {state}; only paused jobs are resumed")
        # Resuming is the user saying "try again": a pool block (download limit) is lifted
        # and comes back on the pool's next refusal.
        await store_pools.set_blocked(self.store, job.pool, None)
        queued = await self._set_state(job_id, JobState.QUEUED, not_before=None)
        self.wake()
        return queued

    async def job_action(self, job_id: int, action: str) -> dict[str, Any]:
        """`POST /v1/jobs/{id}/{action}`: retry | cancel | pause | resume."""
        actions = {
            "retry": self.retry,
            "cancel": self.cancel,
            "pause": self.pause,
            "resume": self.resume,
        }
        if action not in actions:
            raise BadRequest(f"unknown job action {action!r}")
        return await actions[action](job_id)

    async def pause_all(self) -> dict[str, Any]:
        """The whole downloader stops; active jobs go back to the queue, checkpointed."""
        self._paused = True
        active = list(self._active)
        for job_id in active:
            await self._interrupt(job_id, "suspend")
            await self._requeue_if_active(job_id)
        return {"paused": True, "interrupted": active}

    async def resume_all(self) -> dict[str, Any]:
        self._paused = False
        self.wake()
        return {"paused": False}

    async def hold(self, reason: str) -> list[int]:
        """Downloads wait for `reason` (a schedule window, a DJ app): no job starts, active ones
        checkpoint and go back to the queue; returns the jobs interrupted.

        docs/interface.md §10: a hold is not the user's pause. `release` never undoes
        `pause_all`, and `resume_all` never ends a hold, so a window closing cannot start jobs
        the user paused, nor a `poolctl resume` start downloads during a gig.
        """
        was_held = self._held is not None
        self._held = reason
        if was_held:
            return []  # nothing started since: only the reason changed
        active = list(self._active)
        # All at once: each transfer checkpoints its chunks while the others do too.
        await asyncio.gather(*(self._interrupt(job_id, "hold") for job_id in active))
        for job_id in active:
            await self._requeue_if_active(job_id)
        return active

    def release(self) -> None:
        """The hold ends: queued jobs start again (unless the user paused the downloader)."""
        if self._held is not None:
            self._held = None
            self.wake()

    def set_rate(self, rate_bps: int) -> None:
        """The bandwidth limit in force now, for all jobs (0: unlimited)."""
        self.bucket.set_rate(rate_bps)

    @property
    def paused(self) -> bool:
        """The user's own pause (`poolctl pause`)."""
        return self._paused

    @property
    def held(self) -> str | None:
        """Why downloads are held by the schedule or gig mode, or None."""
        return self._held

    def waiting_reason(self) -> str | None:
        """Why a queued job does not start now, when it is the whole downloader's doing."""
        if self._paused:
            return "downloads paused (poolctl resume)"
        return self._held

    def rate_bps(self) -> int:
        """Bytes per second across all jobs now."""
        return sum(self.job_rate(job_id) for job_id in list(self._active))

    def job_rate_bps(self, job_id: int) -> int:
        return self.job_rate(job_id)

    def job_rate(self, job_id: int) -> int:
        entry = self._active.get(job_id)
        if entry is None or entry.transfer is None:
            return 0
        return entry.transfer.meter.rate()

    async def get_job(self, job_id: int) -> dict[str, Any]:
        """A job with live progress for active ones."""
        return self._overlay(await store_jobs.get_job(self.store, job_id))

    async def list_jobs(
        self, state: str | None = None, pool: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            self._overlay(job)
            for job in await store_jobs.list_jobs(self.store, state=state, pool=pool)
        ]

    def _overlay(self, job: dict[str, Any]) -> dict[str, Any]:
        entry = self._active.get(job["id"])
        if entry is not None and entry.transfer is not None:
            job = dict(job)
            job["bytes_done"] = max(0, entry.transfer.bytes_done)
            job["rate_bps"] = entry.transfer.meter.rate()
            total = entry.transfer.bytes_total()
            if total:
                job["bytes_total"] = total
        return job

    # -- state changes and events ------------------------------------------------------------

    async def _set_state(self, job_id: int, to: JobState, **fields: Any) -> dict[str, Any]:
        job = await store_jobs.transition(self.store, job_id, to, **fields)
        job = self._overlay(job)
        self._publish_state(job)
        return job

    def _publish_state(self, job: dict[str, Any]) -> None:
        self.events.publish("job.state", job=job)

    def _publish_progress(self, job_id: int, transfer: JobTransfer, bytes_done: int) -> None:
        self.events.publish(
            "job.progress",
            job=job_id,
            bytes_done=max(0, bytes_done),
            bytes_total=transfer.bytes_total(),
            rate_bps=transfer.meter.rate(),
        )

    async def _interrupt(self, job_id: int, reason: str) -> None:
        """Stop an active job's task and wait until it has checkpointed."""
        entry = self._active.get(job_id)
        if entry is None:
            return
        entry.stop_reason = reason
        entry.task.cancel()
        await entry.done.wait()

    async def _requeue_if_active(self, job_id: int) -> None:
        try:
            job = await store_jobs.load_job(self.store, job_id)
            if job.state in ACTIVE_STATES:
                await self._set_state(job_id, JobState.QUEUED, error=None)
        except PoolDaemonError as err:
            log.warning("could not requeue job", job=job_id, error=str(err))

    # -- scheduling ---------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while self._running:
            self._wake.clear()
            try:
                await self._schedule_once()
                self.scheduler_passes += 1
            except PoolDaemonError as err:
                log.error("scheduler pass failed", error=str(err))
                await asyncio.sleep(1.0)
                continue
            timeout: float | None = None
            next_due = await store_jobs.next_due(self.store)
            if next_due is not None:
                timeout = max(0.05, next_due - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _schedule_once(self) -> None:
        """Start due jobs up to `max_active_downloads`."""
        if self._paused or self._held is not None:
            return
        free = self.config.max_active_downloads - len(self._active)
        if free <= 0:
            return
        for job_id in await store_jobs.due_jobs(self.store, self.clock(), free + len(self._active)):
            if free <= 0 or self._paused or self._held is not None:
                break  # (a pause or hold may have come while the query ran)
            if job_id not in self._active:
                self._launch(job_id)
                free -= 1

    def _launch(self, job_id: int) -> None:
        task = asyncio.create_task(self._run_job(job_id), name=f"job-{job_id}")
        entry = _Active(task)
        self._active[job_id] = entry

        def finished(_: asyncio.Task[None]) -> None:
            self._active.pop(job_id, None)
            entry.done.set()
            self.wake()

        task.add_done_callback(finished)

    async def _run_job(self, job_id: int) -> None:
        """One attempt at a job; every outcome ends in a legal state with its reason."""
        try:
            await self._attempt(job_id)
        except asyncio.CancelledError:
            # The canceller (pause, cancel, stop) sets the state once we are out.
            return
        except DiskFull as err:
            # docs/reliability.md D1: paused, not retried in a loop; resumes when there is room.
            await self._end_attempt(job_id, JobState.PAUSED, error=err.message, error_code=err.code)
            log.warning("job paused", job=job_id, reason=err.message)
        except ArchiveRejected as err:
            # docs/interface.md §5: the archive stays in the work area for inspection.
            await self._end_attempt(
                job_id,
                JobState.FAILED,
                error=redact_text(f"rejected archive: {err.message}"),
                error_code=err.code,
            )
        except PoolDaemonError as err:
            await self._attempt_failed(job_id, err)
        except Exception as err:
            log.exception("job failed unexpectedly", job=job_id)
            await self._attempt_failed(
                job_id, PoolDaemonError(f"internal error: {type(err).__name__}: {err}")
            )

    async def _end_attempt(self, job_id: int, to: JobState, **fields: Any) -> None:
        """Leave an attempt in state `to`, unless someone already moved the job on."""
        job = await store_jobs.load_job(self.store, job_id)
        if job.state in ACTIVE_STATES:
            await self._set_state(job_id, to, **fields)

    async def _attempt_failed(self, job_id: int, err: PoolDaemonError) -> None:
        job = await store_jobs.load_job(self.store, job_id)
        if job.state not in ACTIVE_STATES:
            return
        attempts = job.attempts + 1
        message = redact_text(err.message)
        if isinstance(err, AccountError) and err.blocked:
            # The pool stopped our downloads (Harvest 12/13/14/18): every job of that pool waits
            # with the pool's reason, shown in `poolctl status`, until the user resumes one.
            await store_pools.set_blocked(self.store, job.pool, message)
            await self._set_state(
                job_id,
                JobState.QUEUED,
                error=message,
                error_code=err.code,
                not_before=self.clock() + BLOCKED_RECHECK_S,
            )
            log.warning("pool blocked downloads", pool=job.pool, reason=message)
            return
        if isinstance(err, _PERMANENT) or attempts >= self.config.max_attempts:
            if attempts >= self.config.max_attempts and not isinstance(err, _PERMANENT):
                message = f"after {attempts} attempts: {message}"
            await self._set_state(
                job_id, JobState.FAILED, error=message, error_code=err.code, attempts=attempts
            )
            log.warning("job failed", job=job_id, reason=message)
            return
        delay = None
        if isinstance(err, TransientError) and err.retry_after_s:
            delay = err.retry_after_s
        if delay is None:
            delay = backoff_s(attempts, *self._retry_backoff)
        await self._set_state(
            job_id,
            JobState.QUEUED,
            error=message,
            error_code=err.code,
            attempts=attempts,
            not_before=self.clock() + delay,
        )
        log.info("job will be retried", job=job_id, reason=message, in_s=round(delay, 1))

    # -- one attempt --------------------------------------------------------------------------

    async def _attempt(self, job_id: int) -> None:
        job = await store_jobs.load_job(self.store, job_id)
        adapter = self.adapters.get(job.pool)
        if self._blocked:
            self._blocked = await asyncio.to_thread(
                library_blocked, self.download_dir
            )  # plugged in since?
        blocked = self._blocked
        if adapter is None:
            blocked = f"pool {job.pool!r} is not configured (or not enabled)"
        pool_row = (await store_pools.pool_rows(self.store)).get(job.pool, {})
        if not blocked and pool_row.get("blocked_reason"):
            # The pool refused our account or downloads: wait without asking it again; the
            # block lifts when a sync succeeds or the user retries/resumes a job.
            await self._set_state(
                job_id,
                JobState.QUEUED,
                error=f"{job.pool}: {pool_row['blocked_reason']}",
                error_code="blocked",
                not_before=self.clock() + BLOCKED_RECHECK_S,
            )
            return
        if blocked:
            await self._set_state(job_id, JobState.PAUSED, error=blocked, error_code="config")
            return
        assert adapter is not None
        await self._set_state(job_id, JobState.RESOLVING)
        plan = await self._plan(job, adapter)
        if plan.sent_by_email:
            await self._set_state(job_id, JobState.VERIFYING)
            await self._set_state(
                job_id, JobState.DONE, error="the pool sent this download by e-mail"
            )
            return
        if await self.finisher.adopt(job, plan, adapter):
            return
        await self._check_space(job_id, plan)
        from pooldaemon.downloader.fetch import JobTransfer, PlanKeeper  # the first download

        keeper = PlanKeeper(plan, adapter.renew_plan, lambda p: self._save_plan(job_id, p))
        transfer = JobTransfer(
            store=self.store,
            session=self.session,
            job_id=job_id,
            keeper=keeper,
            work_dir=work_dir_for(self.download_dir, job_id),
            settings=self.settings,
            bucket=self.bucket,
            checkpointer=self.checkpointer,
            gates=self.gates,
            health=self.health,
            on_progress=lambda n: self._publish_progress(job_id, transfer, n),
            hash_parts=self.finisher.hash_while_downloading(plan),
        )
        entry = self._active.get(job_id)
        if entry is not None:
            entry.transfer = transfer
        await self._set_state(job_id, JobState.DOWNLOADING, bytes_total=_planned_total(plan))
        paths = await transfer.run()
        plan = keeper.plan
        await self._set_state(job_id, JobState.VERIFYING, bytes_total=transfer.bytes_total())
        digests = transfer.digests()
        try:
            await self.finisher.finish(job_id, plan, paths, adapter, digests)
        except ArchiveRejected:
            raise
        except IntegrityError:
            # The bytes are not what was promised: the next attempt fetches them again.
            await store_parts.reset_parts(self.store, job_id)
            raise
        except OSError as err:
            if no_space(err):
                raise disk_full(self.work_root) from err
            raise

    async def _plan(self, job: Job, adapter: DownloadPool) -> DownloadPlan:
        """The stored plan (its tokens are renewed on refusal), or a new one from the pool.

        Reusing the stored plan matters: asking some pools for one has side effects (Promo Only
        queues the track again: docs/pools/promoonly.md; docs/reliability.md C6)."""
        stored = await store_jobs.load_plan(self.store, job.id)
        if stored:
            return store_jobs.plan_from_dict(stored)
        known = None
        if job.item_id is not None:
            known = await store_jobs.queue_entry(self.store, job.pool, job.kind, job.item_id)
        request = Request(job.pool, job.item_id, job.kind)
        plan = await adapter.plan(request, known)
        await self._save_plan(job.id, plan)
        fields = {}
        if not job.title and plan.meta.get("title"):
            fields["title"] = str(plan.meta["title"])
        if not job.artist and plan.meta.get("artist"):
            fields["artist"] = str(plan.meta["artist"])
        await store_jobs.update_job(self.store, job.id, **fields)
        return plan

    async def _save_plan(self, job_id: int, plan: DownloadPlan) -> None:
        await store_jobs.save_plan(self.store, job_id, store_jobs.plan_to_dict(plan))

    async def _check_space(self, job_id: int, plan: DownloadPlan) -> None:
        """Free space for what is still to be written, plus the margin (docs/reliability.md D1)."""
        parts = await store_parts.load_parts(self.store, job_id)
        need = 0
        for part in plan.parts:
            state = parts.get(part.key)
            if state is not None and state.work_path and os.path.exists(state.work_path):
                continue  # already preallocated
            need += part.expected_size or 0
        total = _planned_total(plan) or 0
        if plan.archive or self.config.write_tags:
            need += total  # the extracted files, or the tagged copy
        if need == 0:
            return
        need += self.config.min_free_space_bytes
        if await asyncio.to_thread(free_space, self.work_root) < need:
            raise disk_full(self.work_root, need)

    # -- finishing ----------------------------------------------------------------------------

    # -- recovery helpers ---------------------------------------------------------------------

    async def _find_lost(self) -> None:
        """docs/reliability.md C4: "done" but the file is gone (a lost directory fsync): re-queue.

        Only recent entries are checked: older ones missing were removed by the user, which
        the library scan (not the downloader) records.
        """
        if not self.download_dir.is_dir():
            return
        since = self.clock() - self._lost_window_s
        for entry in await store_library.recent_downloads(self.store, since):
            if not os.path.lexists(entry["path"]):
                reason = f"the finished file is missing: {entry['path']}"
                await store_library.mark_lost_and_requeue(
                    self.store, entry["id"], entry["job_id"], reason
                )
                self._publish_state(await store_jobs.get_job(self.store, entry["job_id"]))
                log.warning("finished file lost; downloading again", job=entry["job_id"])

    async def _finished_job_ids(self) -> set[int]:
        rows = await store_jobs.jobs_in(self.store, (JobState.DONE.value, JobState.CANCELLED.value))
        return set(rows)

    # -- background loops ---------------------------------------------------------------------

    async def _disk_loop(self) -> None:
        """Jobs paused for lack of space resume on their own once there is room (D1)."""
        while self._running:
            await asyncio.sleep(self._disk_check_interval_s)
            await self.check_disk_space()

    async def check_disk_space(self) -> list[int]:
        """Re-queue jobs paused for a full disk where there is now room, or for a library or
        pool that is back; returns their ids."""
        resumed = []
        for job_id in await store_jobs.paused_for(self.store, DiskFull.code):
            job = await store_jobs.load_job(self.store, job_id)
            remaining = max(0, (job.bytes_total or 0) - (job.bytes_done or 0))
            factor = 2 if self.config.write_tags else 1
            need = remaining * factor + self.config.min_free_space_bytes
            if await asyncio.to_thread(free_space, self.work_root) >= need:
                await self._set_state(job_id, JobState.QUEUED, not_before=None)
                resumed.append(job_id)
        if self._blocked:
            self._blocked = await asyncio.to_thread(library_blocked, self.download_dir)
        if not self._blocked:
            # Paused because the library drive or the pool was missing: both may be back.
            for job_id in await store_jobs.paused_for(self.store, "config"):
                job = await store_jobs.load_job(self.store, job_id)
                if job.pool in self.adapters:
                    await self._set_state(job_id, JobState.QUEUED, not_before=None)
                    resumed.append(job_id)
        if resumed:
            self.wake()
        return resumed


# -- file helpers (run in threads) -------------------------------------------------------------


def _planned_total(plan: DownloadPlan) -> int | None:
    sizes = [p.expected_size for p in plan.parts]
    if any(s is None for s in sizes):
        return None
    return sum(s for s in sizes if s is not None)
