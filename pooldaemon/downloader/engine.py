"""Download jobs: scheduling, states, retries with back-off, pause/resume/cancel, finishing.

The engine turns a queued job into a verified file in the library (issue 4). It owns its tasks
(STYLE habit 8): a scheduler that starts at most `max_active_downloads` jobs, one task per active
job, the outbox delivery loop and a free-space watcher; `stop()` ends them within a bound.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from pooldaemon.downloader import tags
from pooldaemon.downloader.digest import Digests, file_digests
from pooldaemon.downloader.failpoints import failpoint
from pooldaemon.downloader.fetch import JobTransfer, PlanKeeper, TransferSettings
from pooldaemon.downloader.health import HealthBook
from pooldaemon.downloader.paths import (
    PathEscape,
    ensure_dirs,
    final_path,
    render_template,
    sanitize_component,
    sanitize_ext,
    unique_path,
)
from pooldaemon.downloader.ratelimit import FairBucket, HostGates
from pooldaemon.downloader.unzip import ArchiveDamaged, ArchiveRejected, extract_parts
from pooldaemon.downloader.workfile import WORK_AREA, disk_full, work_dir_for
from pooldaemon.errors import (
    AccountError,
    BadRequest,
    Conflict,
    DiskFull,
    IntegrityError,
    NotFound,
    PoolDaemonError,
    ProtocolError,
    TransientError,
    Unsupported,
)
from pooldaemon.events import EventBus
from pooldaemon.fsutil import free_space, fsync_dir, full_fsync, same_filesystem
from pooldaemon.log import get_logger, redact_text
from pooldaemon.models import ACTIVE_STATES, DownloadPlan, Job, JobState, PlanPart, Request
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.retry import backoff_s
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store import outbox as store_outbox
from pooldaemon.store import parts as store_parts
from pooldaemon.store import pools as store_pools
from pooldaemon.store.db import Store, uncancelled

if TYPE_CHECKING:  # only attributes are read: a light config object serves the crash driver
    from pooldaemon.config import DaemonConfig

log = get_logger(__name__)

Clock = Callable[[], float]

_JOB_DIR = re.compile(r"^job-(\d+)$")
#: Errors that no retry will fix: the job fails at once.
#: How often a job of a blocked pool looks again whether the block was lifted (no network).
BLOCKED_RECHECK_S = 300.0
_PERMANENT = (NotFound, Unsupported, BadRequest, AccountError, PathEscape)
#: What a sniffed kind is called on disk when the plan names no extension.
_KIND_EXT = {"mp3": "mp3", "mp4": "mp4", "wav": "wav", "aiff": "aiff", "flac": "flac"}
_TAGGABLE = frozenset({"mp3", "mp4", "wav", "aiff", "flac"})


@dataclass
class _Active:
    """A job being worked on, and why it is being stopped (None: it is not)."""

    task: asyncio.Task[None]
    transfer: JobTransfer | None = None
    stop_reason: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    """Jobs → verified files: the daemon's downloader (CONTRACT §4, §5; issue 4)."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        adapters: Mapping[str, PoolAdapter],
        config: DaemonConfig,
        events: EventBus,
        clock: Clock = time.time,
        *,
        retry_backoff_s: float = 30.0,
        retry_backoff_max_s: float = 3600.0,
        server_cooldown_s: float = 2.0,
        retry_after_budget_s: float = 120.0,
        disk_check_interval_s: float = 30.0,
        outbox_backoff_s: float = 30.0,
        outbox_backoff_max_s: float = 6 * 3600.0,
        outbox_max_attempts: int = 50,
        lost_window_s: float = 600.0,
    ) -> None:
        self.store = store
        self.session = session
        self.adapters = adapters
        self.config = config
        self.events = events
        self.clock = clock
        self.download_dir = Path(config.download_dir)
        self.work_root = self.download_dir / WORK_AREA
        self.settings = TransferSettings(
            chunk_size=config.chunk_size_bytes,
            connections=config.connections_per_download,
            stall_timeout_s=config.stall_timeout_s,
            speed_floor_bps=config.speed_floor_bps,
            speed_grace_s=config.speed_grace_s,
            min_free_space_bytes=config.min_free_space_bytes,
            cooldown_s=server_cooldown_s,
            retry_after_budget_s=retry_after_budget_s,
        )
        self.bucket = FairBucket(config.bandwidth_limit_bps)
        self.gates = HostGates()
        self.health = HealthBook(store, clock=clock, cooldown_s=server_cooldown_s)
        self._retry_backoff = (retry_backoff_s, retry_backoff_max_s)
        self._outbox_backoff = (outbox_backoff_s, outbox_backoff_max_s)
        self._outbox_max_attempts = outbox_max_attempts
        self._disk_check_interval_s = disk_check_interval_s
        self._lost_window_s = lost_window_s
        self._active: dict[int, _Active] = {}
        self._wake = asyncio.Event()
        self._outbox_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._paused = False
        self._running = False
        self._blocked: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from whatever the last run left, then start scheduling (RELIABILITY C1-C5)."""
        self._blocked = self._check_library()
        if self._blocked:
            log.error("downloads blocked", reason=self._blocked)
        for job_id in await store_jobs.jobs_in(self.store, tuple(s.value for s in ACTIVE_STATES)):
            # Interrupted mid-flight: back to the queue with its chunk checkpoints.
            await self._set_state(job_id, JobState.QUEUED, error=None)
        await self._find_lost()
        await asyncio.to_thread(self._clean_work_area, await self._finished_job_ids())
        self._running = True
        self._tasks = [
            asyncio.create_task(self._schedule_loop(), name="downloader-scheduler"),
            asyncio.create_task(self._outbox_loop(), name="downloader-outbox"),
            asyncio.create_task(self._disk_loop(), name="downloader-disk"),
        ]

    def _check_library(self) -> str | None:
        """Make the library and its work area; a reason when downloads cannot go there."""
        if not self.download_dir.is_dir():
            if _on_removable_mount(self.download_dir):
                # Creating it would fill the system disk under an unplugged drive's mount point.
                return f"download_dir {self.download_dir} does not exist (is its drive mounted?)"
            self.download_dir.mkdir(parents=True, exist_ok=True)
        self.work_root.mkdir(exist_ok=True, mode=0o700)
        if not same_filesystem(self.work_root, self.download_dir):
            # RELIABILITY D2: never fall back to copying into the library.
            return (
                f"the work area {self.work_root} is on another filesystem than {self.download_dir}"
            )
        return None

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
        self._tasks = []

    def wake(self) -> None:
        """New work may be waiting (a job was queued, a back-off may have ended)."""
        self._wake.set()

    # -- requests -----------------------------------------------------------------------------

    async def submit(
        self, request: Request, origin: str, *, key: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Queue a download, or point at the job that already stands for it (CONTRACT §3).

        A redownload asks the pool's redownload endpoint first (CONTRACT §6), unless a job for
        the item is still on its way — then that job is the answer. With an idempotency `key`
        (the drop folder's), a replay after a crash returns the job the first call made.
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
            if adapter.supports(Capability.REDOWNLOAD) and request.item_id is not None:
                await adapter.redownload(
                    [request.item_id], request.reason or "requested again by the user"
                )
        job, created = await store_jobs.create_job(self.store, request, origin=origin, key=key)
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
        if state not in (JobState.FAILED, JobState.CANCELLED):
            raise Conflict(f"job {job_id} is {state}; only failed or cancelled jobs are retried")
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
        await asyncio.to_thread(_remove_tree, work_dir_for(self.download_dir, job_id))
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

    @property
    def paused(self) -> bool:
        return self._paused

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
        if self._paused:
            return
        free = self.config.max_active_downloads - len(self._active)
        if free <= 0:
            return
        for job_id in await store_jobs.due_jobs(self.store, self.clock(), free + len(self._active)):
            if free <= 0:
                break
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
            # RELIABILITY D1: paused, not retried in a loop; resumes when there is room.
            await self._end_attempt(job_id, JobState.PAUSED, error=err.message, error_code=err.code)
            log.warning("job paused", job=job_id, reason=err.message)
        except ArchiveRejected as err:
            # CONTRACT §5: the archive stays in the work area for inspection.
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
            self._blocked = await asyncio.to_thread(self._check_library)  # plugged in since?
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
        if await self._adopt(job, plan, adapter):
            return
        await self._check_space(job_id, plan)
        keeper = PlanKeeper(plan, adapter.renew_plan, lambda p: self._save_plan(job_id, p))
        transfer = JobTransfer(
            store=self.store,
            session=self.session,
            job_id=job_id,
            keeper=keeper,
            work_dir=work_dir_for(self.download_dir, job_id),
            settings=self.settings,
            bucket=self.bucket,
            gates=self.gates,
            health=self.health,
            on_progress=lambda n: self._publish_progress(job_id, transfer, n),
            hash_parts=self._hash_while_downloading(plan),
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
            if plan.archive:
                await self._finish_archive(job_id, plan, paths, adapter, digests)
            else:
                await self._finish_file(job_id, plan, paths, adapter, digests)
        except ArchiveRejected:
            raise
        except IntegrityError:
            # The bytes are not what was promised: the next attempt fetches them again.
            await store_parts.reset_parts(self.store, job_id)
            raise
        except OSError as err:
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise disk_full(self.work_root) from err
            raise

    def _hash_while_downloading(self, plan: DownloadPlan) -> bool:
        """Whether the parts' hashes will be used: not when tags change the file after it."""
        if plan.archive or not self.config.write_tags or len(plan.parts) != 1:
            return True
        part = plan.parts[0]
        if part.sha256 or part.md5:
            return True  # the pool's checksum is of the untagged bytes
        ext = sanitize_ext(part.extension or plan.format or "")
        return not (ext and tags.expected_kinds(ext) & _TAGGABLE)

    async def _plan(self, job: Job, adapter: PoolAdapter) -> DownloadPlan:
        """The stored plan (its tokens are renewed on refusal), or a new one from the pool.

        Reusing the stored plan matters: asking some pools for one has side effects (seed 000
        queues the track again; RELIABILITY C6)."""
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
        """Free space for what is still to be written, plus the margin (RELIABILITY D1)."""
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

    async def _finish_file(
        self,
        job_id: int,
        plan: DownloadPlan,
        paths: dict[str, Path],
        adapter: PoolAdapter,
        digests: dict[str, Digests],
    ) -> None:
        """Verify, tag a copy, rename into place, fsync the folder, record (RELIABILITY C4)."""
        if len(plan.parts) != 1:
            raise ProtocolError(f"{plan.pool}: a download of {len(plan.parts)} parts is no archive")
        part = plan.parts[0]
        work = paths[part.key]
        kind, ext, sha, size = await asyncio.to_thread(
            _verify_media, work, part, plan.format, digests.get(part.key)
        )
        source = work
        if self.config.write_tags and kind in _TAGGABLE:
            tagged = work.with_name("tagged.tmp")
            try:
                await asyncio.to_thread(_copy_and_tag, work, tagged, plan.meta)
            except OSError as err:
                tagged.unlink(missing_ok=True)
                if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                    need = size + self.config.min_free_space_bytes
                    raise disk_full(self.work_root, need) from err
                raise
            except tags.TagError as err:
                log.warning("tags not written", job=job_id, error=str(err))
                tagged.unlink(missing_ok=True)
            else:
                source = tagged
                sha, size = await asyncio.to_thread(_hash_file, tagged)
        if sha is None:
            sha, size = await asyncio.to_thread(_hash_file, work)
        assert sha is not None
        fields = {**plan.meta, "pool": plan.pool, "id": plan.item_id}
        dest, adopted = await asyncio.to_thread(self._destination, fields, ext, sha, size)
        # The intent: after a crash, a file at `path` with this hash is ours (C4).
        await store_jobs.update_job(self.store, job_id, path=str(dest), final_sha256=sha)
        failpoint("after_verify_before_rename")
        if not adopted:
            await asyncio.to_thread(_place, source, dest)
        failpoint("after_rename_before_dirsync")
        await asyncio.to_thread(fsync_dir, dest.parent)
        failpoint("after_rename_before_done")
        await self._record(job_id, plan, adapter, dest, size, sha)

    def _destination(
        self, fields: dict[str, Any], ext: str, sha: str, size: int
    ) -> tuple[Path, bool]:
        """CONTRACT §5: the template path, sanitized, inside download_dir, ` (2)` if taken by
        another file; an identical file already there is adopted (returned with True)."""
        components = render_template(self.config.file_template, fields, ext)
        ensure_dirs(self.download_dir, components)
        dest = final_path(self.download_dir, components)

        def same(path: Path) -> bool:
            return path.stat().st_size == size and _hash_file(path)[0] == sha

        chosen = unique_path(dest, same_content=same)
        return chosen, os.path.lexists(chosen)

    async def _finish_archive(
        self,
        job_id: int,
        plan: DownloadPlan,
        paths: dict[str, Path],
        adapter: PoolAdapter,
        digests: dict[str, Digests],
    ) -> None:
        """Verify every ZIP part, extract into staging, rename to `<pool>/<name>/` (CONTRACT §5)."""
        summary: list[str] = []
        for part in plan.parts:
            digest = await asyncio.to_thread(
                _verify_zip_part, paths[part.key], part, digests.get(part.key)
            )
            summary.append(f"{part.key}:{digest}")
        combined = hashlib.sha256("\n".join(summary).encode()).hexdigest()
        components = [
            sanitize_component(plan.pool),
            sanitize_component(plan.name or plan.item_id or f"job {job_id}"),
        ]
        await asyncio.to_thread(ensure_dirs, self.download_dir, components)
        dest = unique_path(final_path(self.download_dir, components), split_ext=False)
        await store_jobs.update_job(self.store, job_id, path=str(dest), final_sha256=combined)
        room = await asyncio.to_thread(free_space, self.download_dir)
        limit = min(self.config.max_extract_size_bytes, room - self.config.min_free_space_bytes)
        if limit <= 0:
            raise disk_full(self.download_dir, self.config.min_free_space_bytes)
        staging = work_dir_for(self.download_dir, job_id) / "staging"
        failpoint("mid_extract")
        files = await asyncio.to_thread(
            extract_parts,
            [paths[p.key] for p in plan.parts],
            dest,
            staging,
            max_total_bytes=limit,
        )
        if files:
            dest = dest.parent / Path(files[0]).relative_to(dest.parent).parts[0]
        size = sum(f.stat().st_size for f in files)
        failpoint("after_rename_before_done")
        await self._record(job_id, plan, adapter, dest, size, combined)

    async def _record(
        self,
        job_id: int,
        plan: DownloadPlan,
        adapter: PoolAdapter,
        dest: Path,
        size: int,
        sha: str,
    ) -> None:
        calls = adapter.after_download(plan)
        # Once begun, "done" is committed even if a stop arrives meanwhile (milliseconds):
        # readers on the shared connection may already have seen it inside the transaction.
        job = await uncancelled(
            store_library.record_download(
                self.store, job_id, path=str(dest), size=size, sha256=sha, calls=calls
            )
        )
        # The work area goes before anyone hears "done", and a stop arriving right after the
        # commit still lets it go (it takes milliseconds); only a crash in between leaves a
        # leftover, which start-up sweeps.
        await uncancelled(asyncio.to_thread(_remove_tree, work_dir_for(self.download_dir, job_id)))
        self._publish_state(job)
        log.info("download finished", job=job_id, path=str(dest), size=size)
        if calls:
            self._outbox_wake.set()

    async def _adopt(self, job: Job, plan: DownloadPlan, adapter: PoolAdapter) -> bool:
        """RELIABILITY C4: the final file (or folder) exists from a run that died before "done":
        verify and adopt it, never download over it."""
        job_id = job.id
        path, sha = job.path, job.final_sha256
        if not path or not sha:
            return False
        dest = Path(path)
        adopted: tuple[int, str] | None = None
        if plan.archive and dest.is_dir() and not dest.is_symlink():
            size = await asyncio.to_thread(_tree_size, dest)
            adopted = (size, sha)
        elif not plan.archive and dest.is_file() and not dest.is_symlink():
            digest, size = await asyncio.to_thread(_hash_file, dest)
            if digest == sha:
                adopted = (size, sha)
        if adopted is None:
            await store_jobs.update_job(self.store, job_id, path=None, final_sha256=None)
            return False
        log.info("adopting a file finished before a crash", job=job_id, path=path)
        await self._set_state(job_id, JobState.VERIFYING)
        await asyncio.to_thread(fsync_dir, dest.parent)
        await self._record(job_id, plan, adapter, dest, adopted[0], adopted[1])
        return True

    # -- recovery helpers ---------------------------------------------------------------------

    async def _find_lost(self) -> None:
        """RELIABILITY C4: "done" but the file is gone (a lost directory fsync): re-queue.

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

    def _clean_work_area(self, finished: set[int]) -> None:
        """Remove work folders of jobs that are done or cancelled (kept otherwise: C1, Z1)."""
        if not self.work_root.is_dir():
            return
        for entry in self.work_root.iterdir():
            match = _JOB_DIR.match(entry.name)
            if match and int(match.group(1)) in finished and not entry.is_symlink():
                _remove_tree(entry)

    # -- background loops ---------------------------------------------------------------------

    async def _outbox_loop(self) -> None:
        """Deliver calls owed to pools until acknowledged, with back-off (CONTRACT §6)."""
        while self._running:
            self._outbox_wake.clear()
            try:
                await self._deliver_due()
                next_due = await store_outbox.next_due(self.store)
            except PoolDaemonError as err:
                log.warning("outbox pass failed", error=str(err))
                next_due = self.clock() + 30
            timeout = None if next_due is None else max(0.05, next_due - self.clock())
            try:
                await asyncio.wait_for(self._outbox_wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _deliver_due(self) -> None:
        for entry in await store_outbox.pending(self.store, self.clock()):
            adapter = self.adapters.get(entry.call.pool)
            if adapter is None:
                await store_outbox.defer(
                    self.store, entry.id, "pool not configured", self.clock() + 3600
                )
                continue
            try:
                await adapter.deliver(entry.call)
            except Unsupported as err:
                await store_outbox.ack(self.store, entry.id, error=redact_text(str(err)))
                continue
            except (PoolDaemonError, aiohttp.ClientError, TimeoutError) as err:
                attempts = entry.attempts + 1
                message = redact_text(f"{type(err).__name__}: {err}")
                if attempts >= self._outbox_max_attempts:
                    await store_outbox.ack(
                        self.store, entry.id, error=f"given up after {attempts} tries: {message}"
                    )
                    log.warning("outbox call given up", pool=entry.call.pool, error=message)
                    continue
                delay = backoff_s(attempts, *self._outbox_backoff)
                if isinstance(err, TransientError) and err.retry_after_s:
                    delay = max(delay, err.retry_after_s)
                await store_outbox.defer(self.store, entry.id, message, self.clock() + delay)
                continue
            await store_outbox.ack(self.store, entry.id)
            log.info("outbox call delivered", pool=entry.call.pool, action=entry.call.action)

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
            self._blocked = await asyncio.to_thread(self._check_library)
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


_REMOVABLE_ROOTS = ("/Volumes", "/media", "/mnt", "/run/media")


def _on_removable_mount(path: Path) -> bool:
    """Whether `path` lives where external drives are mounted (macOS and Linux conventions)."""
    text = os.path.abspath(path)
    return any(text == root or text.startswith(root + os.sep) for root in _REMOVABLE_ROOTS)


def _planned_total(plan: DownloadPlan) -> int | None:
    sizes = [p.expected_size for p in plan.parts]
    if any(s is None for s in sizes):
        return None
    return sum(s for s in sizes if s is not None)


def _hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file."""
    digests = file_digests(path)
    return digests.sha256, digests.size


def _check_checksum(path: Path, part: PlanPart, known: Digests | None, size: int) -> str | None:
    """Compare with the pool's checksum when it gives one; returns the SHA-256 if known.

    `known` holds the hashes taken while the part downloaded; the file is read again only
    when they are missing or do not cover it."""
    if known is None or known.size != size or (part.md5 and known.md5 is None):
        if not part.sha256 and not part.md5:
            return None
        known = file_digests(path, md5=bool(part.md5))
    if part.sha256 and part.sha256.lower() != known.sha256:
        raise IntegrityError(f"part {part.key}: SHA-256 {known.sha256} does not match the pool's")
    if part.md5 and part.md5.lower() != known.md5:
        raise IntegrityError(f"part {part.key}: MD5 {known.md5} does not match the pool's")
    return known.sha256


def _verify_media(
    path: Path, part: PlanPart, fmt: str, known: Digests | None = None
) -> tuple[str | None, str, str | None, int]:
    """Size, magic bytes against the extension (RELIABILITY H9), checksum. Returns (kind, ext,
    sha256 when computed, size)."""
    size = path.stat().st_size
    if part.expected_size is not None and size != part.expected_size:
        raise IntegrityError(f"part {part.key}: {size} bytes, the pool says {part.expected_size}")
    with open(path, "rb") as fh:
        kind = tags.sniff_media(fh.read(tags.SNIFF_BYTES))
    ext = sanitize_ext(part.extension or fmt or "")
    expected = tags.expected_kinds(ext) if ext else set()
    if kind in (None, "html", "json") and (expected or kind is not None):
        raise IntegrityError(
            f"the downloaded bytes are {kind.upper() if kind else 'not recognizable media'}, "
            f"not a .{ext or 'media'} file"
        )
    if expected and kind not in expected:
        raise IntegrityError(f"the downloaded file is {kind}, not .{ext}")
    if not ext:
        ext = _KIND_EXT.get(kind or "", "bin")
    sha = _check_checksum(path, part, known, size)
    return kind, ext, sha, size


def _verify_zip_part(path: Path, part: PlanPart, known: Digests | None = None) -> str:
    """A part must be a ZIP (magic bytes) of the promised size, and match any checksum."""
    size = path.stat().st_size
    if part.expected_size is not None and size != part.expected_size:
        raise IntegrityError(f"part {part.key}: {size} bytes, the pool says {part.expected_size}")
    with open(path, "rb") as fh:
        kind = tags.sniff_media(fh.read(tags.SNIFF_BYTES))
    if kind != "zip":
        raise IntegrityError(f"part {part.key} is {kind or 'not recognizable'}, not a ZIP")
    sha = _check_checksum(path, part, known, size)
    return sha if sha is not None else _hash_file(path)[0]


def _copy_and_tag(src: Path, dst: Path, meta: Mapping[str, Any]) -> None:
    """Tags go into a copy in the work area, merged (never clobbering), then fsynced."""
    dst.unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    tags.write_tags(dst, meta)
    fd = os.open(dst, os.O_RDONLY)
    try:
        full_fsync(fd)
    finally:
        os.close(fd)


def _place(src: Path, dest: Path) -> None:
    """Move the verified file to its final name without ever replacing another file.

    `link` fails if the name was taken meanwhile; filesystems without hard links (exFAT sticks)
    get a rename after a last check.
    """
    try:
        os.link(src, dest, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "final path taken", str(dest)) from err
        os.rename(src, dest)
        return
    os.unlink(src)


def _tree_size(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _remove_tree(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
