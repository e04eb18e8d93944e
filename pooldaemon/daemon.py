"""The composition root and lifecycle: the only module that sees everything (STYLE habit 8).

config → lock → store → one shared HTTP session → components → control socket → READY=1.
SIGTERM/SIGINT: STOPPING=1, close the socket, stop the components in reverse order within a
bounded time, close the session and the store, exit 0 (CONTRACT §1: within 10 s).

Adding a component (sync coordinator, scheduler, download engine, drop-folder watcher): construct
it in `build_components()` and put it in the matching `Components` field. Anything with
`async start()` / `async stop()` there is started in `Components.lifecycle()` order after the
store and before the socket, and stopped in reverse. The `Daemon` methods that serve the socket
delegate to those fields through the small port protocols below; until a field is set they
raise `Unsupported` naming what brings them.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from pooldaemon import __version__
from pooldaemon.alerts import Alerts, Timing
from pooldaemon.config import Config
from pooldaemon.control.server import ControlServer
from pooldaemon.downloader.engine import Engine
from pooldaemon.drop import DropWatcher, SubmitOutcome
from pooldaemon.errors import BadRequest, Conflict, NotFound, PoolDaemonError, Unsupported
from pooldaemon.events import EventBus
from pooldaemon.exporter import Exporter
from pooldaemon.governor import Governor, Throttle, local_zone, system_clock
from pooldaemon.hooks import HookRunner
from pooldaemon.informed import Informer
from pooldaemon.library.keeper import Library
from pooldaemon.lock import InstanceLock
from pooldaemon.log import REDACTOR, configure_logging, get_logger, redact_text
from pooldaemon.models import JobState, Request
from pooldaemon.notify import Notifier
from pooldaemon.offload import tune_gc
from pooldaemon.outbox import Outbox
from pooldaemon.pools import build_adapter
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.pools.http import PoolHttp
from pooldaemon.refs import parse_ref
from pooldaemon.rules import Rules
from pooldaemon.scheduler import PoolScheduler
from pooldaemon.search import search as catalog_search
from pooldaemon.store import Store, job_pages
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store import pools as store_pools
from pooldaemon.sync import Submit, SyncCoordinator
from pooldaemon.web.app import WebServer, WebSetupError, settings_answer

log = get_logger(__name__)

#: CONTRACT §1 allows 10 s from SIGTERM to exit; components share most of it, the rest is
#: for the socket, the session and the database.
STOP_BUDGET_S = 7.0
#: Events after which the one-line STATUS= summary may have changed.
_STATUS_EVENTS = frozenset(
    {
        "job.state",
        "sync",
        "pool.error",
        "pool.failing",
        "downloader.paused",
        "downloader.resumed",
        "downloader.throttle",
    }
)


# -- ports: what the daemon asks of each component ---------------------------------------------


class Lifecycle(Protocol):
    """A component with background work: started after the store, stopped before it closes."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SyncPort(Lifecycle, Protocol):
    """The per-pool sync coordinator (issue: pool adapters)."""

    async def sync_now(self, pool: str, *, full: bool) -> dict[str, Any]:
        """Sync catalog and queue now; `{"added", "updated", "removed", "queue_new"}`."""
        ...

    async def remote_queue(self, pool: str) -> dict[str, Any]: ...

    async def queue_edit(
        self, pool: str, *, add: str | None, remove: str | None
    ) -> dict[str, Any]: ...


class EnginePort(Lifecycle, Protocol):
    """The download engine (issue: downloads)."""

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
        """Queue a download (or return the live job for the same item): (job, created)."""
        ...

    async def job_action(self, job_id: int, action: str) -> dict[str, Any]: ...

    async def pause_all(self) -> Any: ...

    async def resume_all(self) -> Any: ...

    async def hold(self, reason: str) -> Any:
        """Downloads wait for the schedule or gig mode (not the user's pause)."""
        ...

    def release(self) -> None: ...

    @property
    def paused(self) -> bool: ...

    @property
    def held(self) -> str | None: ...

    def waiting_reason(self) -> str | None:
        """Why queued jobs do not start now (paused by the user, or held), or None."""
        ...

    def set_rate(self, rate_bps: int) -> None:
        """The bandwidth limit in force now (0: unlimited)."""
        ...

    def rate_bps(self) -> float:
        """Bytes/s across all jobs now."""
        ...

    def job_rate_bps(self, job_id: int) -> float: ...


class GovernedDownloads:
    """The governor wired to the engine (docs/interface.md §10): each change of the throttle
    sets the engine's rate at once, and holds or releases the whole downloader.

    Started before the engine, so a window or a gig in force at start-up holds downloads before
    the first job starts; stopped after it. Holding waits for the transfers to checkpoint, so it
    runs in an owned task; one task at a time, in order, so a quick hold-release-hold ends in the
    last state.
    """

    def __init__(self, governor: Governor, engine: EnginePort, events: EventBus) -> None:
        self.governor = governor
        self._engine = engine
        self._events = events
        self._latest: Throttle | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        throttle = self.governor.evaluate()
        await self._apply(throttle)
        self.governor.subscribe(self._on_change)
        self._task = asyncio.create_task(self._follow(), name="governed-downloads")
        self.governor.start()

    async def stop(self) -> None:
        await self.governor.stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    def _on_change(self, throttle: Throttle) -> None:
        # The rate at once, without waiting for a transfer: in-flight reads slow down now.
        self._set_rate(throttle)
        self._latest = throttle
        self._changed.set()

    async def _follow(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._latest is None:
                continue
            try:
                await self._apply(self._latest)
            except PoolDaemonError as err:  # the next change tries again
                log.error("throttle not applied", error=err.message)

    def _set_rate(self, throttle: Throttle) -> None:
        # A pause has no limit of its own: the last one stays while transfers stop, rather
        # than "unlimited" letting them burst on their way out.
        if not throttle.paused:
            self._engine.set_rate(throttle.limit_bps or 0)

    async def _apply(self, throttle: Throttle) -> None:
        self._set_rate(throttle)
        if throttle.paused:
            await self._engine.hold(throttle.reason or "schedule")
        else:
            self._engine.release()
        self._events.publish(
            "downloader.throttle",
            paused=throttle.paused,
            limit_bps=throttle.limit_bps,
            reason=throttle.reason,
        )


class Informing:
    """Hooks and notifications from the event bus (informed.py), as a component."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer

    async def start(self) -> None:
        self.informer.start()
        # Subscribed before the engine starts: no job's end is missed.
        await self.informer.wait_subscribed()

    async def stop(self) -> None:
        await self.informer.stop()


#: `GET /v1/catalog`: the offline search over the store's catalog mirror.
SearchPort = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]
#: What the drop-folder watcher (and anything else) calls to request a download.
SubmitFn = Submit


@dataclass
class Components:
    """Everything `build_components` wired; a field left None is a part this daemon runs without."""

    adapters: dict[str, PoolAdapter] = field(default_factory=dict)
    informing: Lifecycle | None = None
    outbox: Lifecycle | None = None
    governed: GovernedDownloads | None = None
    engine: EnginePort | None = None
    sync: SyncPort | None = None
    scheduler: Lifecycle | None = None
    watcher: Lifecycle | None = None
    search: SearchPort | None = None
    exporter: Exporter | None = None
    #: docs/interface.md §8: adopt, audit, heal, and the library's background pass.
    library: Library | None = None
    rules: Rules | None = None

    def lifecycle(self) -> list[Lifecycle]:
        """Start order: hooks, notifications and the exporter listen before anything happens;
        the outbox is ready before a download can owe a call; the throttle in force is set before
        the engine starts a job; sync gives the adapters back their saved state (no network)
        before the engine resumes jobs that use them; the engine takes jobs before the rules or
        the scheduler's ticks hand it any; the library, after the engine, may ask it to heal; the
        rules know when they appeared before a catalog pass ends; the watcher submits last.
        Stopped in reverse."""
        order = (
            self.informing,
            self.exporter,
            self.outbox,
            self.governed,
            self.sync,
            self.engine,
            self.library,
            self.rules,
            self.scheduler,
            self.watcher,
        )
        return [c for c in order if c is not None]


@dataclass(frozen=True)
class Wiring:
    """What components are built from: all shared, all owned by the daemon."""

    config: Config
    store: Store
    session: aiohttp.ClientSession
    events: EventBus
    #: Request a download as the socket API does (dedup, origin recorded).
    submit: SubmitFn
    #: Request several at once under an idempotency key (the drop folder's crash-safe hand-off).
    submit_batch: Callable[[list[Request], str], Awaitable[list[SubmitOutcome]]]
    #: Enabled pools → the request kinds they download (what refs are parsed against).
    pool_kinds: Callable[[], dict[str, tuple[str, ...]]]
    #: Tell the daemon something worth a new STATUS= line happened.
    changed: Callable[[], None]
    #: The process environment: the local time zone, hooks' inherited variables, the desktop.
    env: Mapping[str, str] = field(default_factory=dict)
    #: Notification intervals (tests shorten them); None: docs/interface.md §10's.
    alert_timing: Timing | None = None


async def build_components(wiring: Wiring) -> Components:
    """Construct the components; nothing starts here (the daemon starts them in order).

    Data flows one way (STYLE): adapters → sync (into the store) → submit → engine → files;
    the drop folder also only submits.
    """
    cfg = wiring.config
    components = Components()
    for name, pool in cfg.enabled_pools().items():
        http = PoolHttp(wiring.session, name, timeout_s=cfg.daemon.request_timeout_s)
        components.adapters[name] = build_adapter(name, pool, http)
    components.informing = Informing(
        Informer(
            wiring.events,
            hooks=HookRunner(cfg.hooks, base_env=wiring.env),
            alerts=Alerts(cfg.notify, env=wiring.env, timing=wiring.alert_timing),
        )
    )
    outbox = Outbox(wiring.store, components.adapters)
    components.outbox = outbox
    engine = Engine(
        wiring.store,
        wiring.session,
        components.adapters,
        cfg.daemon,
        wiring.events,
        on_owed=outbox.wake,
        library=cfg.library,
        folders={rule.origin: rule.folder for rule in cfg.rules if rule.folder},
    )
    components.engine = engine
    governor = Governor(
        bandwidth_limit_bps=cfg.daemon.bandwidth_limit_bps,
        schedule=cfg.schedule,
        gig=cfg.gig,
        clock=system_clock(local_zone(wiring.env)),
    )
    components.governed = GovernedDownloads(governor, engine, wiring.events)
    components.library = Library(wiring.store, cfg.library, wiring.events, wiring.submit)
    if cfg.rules:
        components.rules = Rules(
            cfg.rules,
            wiring.store,
            wiring.submit,
            wiring.events,
            pools=[
                name
                for name, adapter in components.adapters.items()
                if adapter.supports(Capability.CATALOG)
            ],
            prefer_pools=cfg.library.prefer_pools,
        )
    sync = SyncCoordinator(
        components.adapters,
        wiring.store,
        wiring.events,
        wiring.submit,
        catalog_watch=components.rules,
    )
    components.sync = sync
    components.search = functools.partial(catalog_search, wiring.store)
    scheduler = PoolScheduler()
    for name, pool_sync in sync.pools.items():
        pool = cfg.pools[name]
        scheduler.add_pool(
            pool_sync,
            catalog_interval_s=pool.catalog_interval_s,
            queue_interval_s=pool.queue_interval_s,
        )
    scheduler.add_library_audit(components.library.scheduled_audit, cfg.library.audit_interval_s)
    components.scheduler = scheduler
    components.exporter = Exporter(
        wiring.store, cfg.exports, cfg.daemon.download_dir, wiring.events
    )
    components.watcher = DropWatcher(
        cfg.daemon.drop_dir,
        wiring.store,
        wiring.submit_batch,
        wiring.pool_kinds,
        wiring.events,
        force_polling=cfg.daemon.force_polling,
        rescan_interval_s=cfg.daemon.drop_rescan_interval_s,
    )
    return components


def _not_running(part: str, wanted: str | None = None) -> Unsupported:
    """The answer when a request needs a part this daemon was built without."""
    head = f"{wanted}: " if wanted else ""
    return Unsupported(f"{head}{part} is not running in this daemon")


# -- the daemon --------------------------------------------------------------------------------


class Daemon:
    """Owns every resource and background task; implements `control.services.Services`."""

    def __init__(
        self,
        config: Config,
        *,
        env: Mapping[str, str] | None = None,
        notifier: Notifier | None = None,
        alert_timing: Timing | None = None,
    ) -> None:
        self.config = config
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._alert_timing = alert_timing
        self.events = EventBus()
        self.notifier = notifier or Notifier(env)
        self.components = Components()
        self.store: Store | None = None
        self.session: aiohttp.ClientSession | None = None
        self.server: ControlServer | None = None
        self.web: WebServer | None = None
        self._web_problem = "the dashboard is off ([web] enabled = false)"
        self._lock = InstanceLock(config.daemon.state_dir)
        self._started: list[Lifecycle] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._started_at = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring everything up to READY=1; on failure, undo what was done and raise."""
        daemon_cfg = self.config.daemon
        try:
            self._lock.acquire()
            # Claim the socket before anything starts work: an unsafe directory or another
            # daemon on the path stops us here, not after downloads resumed.
            self.server = ControlServer(self, daemon_cfg.socket_path)
            self.server.bind()
            self._bind_web(self.server)
            self.store = await Store.open(daemon_cfg.state_dir / "state.db")
            await store_pools.ensure_pools(
                self.store, {name: pool.type for name, pool in self.config.pools.items()}
            )
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, limit_per_host=16, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
                headers={"User-Agent": f"pooldaemon/{__version__}"},
            )
            self.components = await build_components(
                Wiring(
                    config=self.config,
                    store=self.store,
                    session=self.session,
                    events=self.events,
                    submit=self.submit_request,
                    submit_batch=self.submit_batch,
                    pool_kinds=self.pool_kinds,
                    changed=self._status_dirty.set,
                    env=self.env,
                    alert_timing=self._alert_timing,
                )
            )
            for component in self.components.lifecycle():
                await component.start()
                self._started.append(component)
            await self.server.start()
            if self.web is not None:
                await self.web.start()
        except BaseException:
            await self._teardown()
            raise
        summary = await self._summary()
        # READY only now: the socket answers (issue 2), so `systemctl start` returning means
        # `poolctl status` works.
        self.notifier.ready(summary)
        _release_memory()
        self._spawn(self.notifier.watchdog_loop(), "watchdog")
        self._spawn(self._watch_events(), "status-events")
        self._spawn(self._refresh_status(), "status-refresh")
        log.info(
            "pooldaemon ready",
            version=__version__,
            pid=os.getpid(),
            pools=len(self.config.pools),
            socket=str(daemon_cfg.socket_path),
            state_dir=str(daemon_cfg.state_dir),
            status=summary,
        )

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def wait(self) -> None:
        await self._stop_requested.wait()

    async def stop(self) -> None:
        """Stop taking work, let components checkpoint within the budget, close everything."""
        log.info("pooldaemon stopping")
        self.notifier.stopping()
        await self._teardown()
        log.info("pooldaemon stopped")

    async def _teardown(self) -> None:
        deadline = time.monotonic() + STOP_BUDGET_S
        if self.web is not None:
            web, self.web = self.web, None
            await web.stop()
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()  # no new requests; event streams end with a "shutdown" line
        while self._started:
            component = self._started.pop()
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(component.stop(), remaining)
            except TimeoutError:
                log.error("component did not stop in time", component=type(component).__name__)
            except Exception:
                log.exception("component failed to stop", component=type(component).__name__)
        await self._cancel_tasks()
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()
        if self.store is not None:
            store, self.store = self.store, None
            await store.close()
        self.notifier.close()
        self._lock.release()

    def _bind_web(self, api: ControlServer) -> None:
        """The dashboard, when enabled; one that cannot listen is logged, not fatal: downloads
        matter more than the page, and `poolctl ui` repeats the reason."""
        if not self.config.web.enabled:
            return
        web = WebServer(
            self.config.web, api, self.events, functools.partial(settings_answer, self.config)
        )
        try:
            web.bind()
        except WebSetupError as err:
            log.error(err.message, code=err.code)
            self._web_problem = err.message
            return
        self.web = web

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", task=task.get_name(), error=repr(task.exception()))

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    # -- STATUS= line --------------------------------------------------------------------------

    async def _watch_events(self) -> None:
        async with self.events.subscribe() as stream:
            async for event in stream:
                if event.get("type") in _STATUS_EVENTS:
                    self._status_dirty.set()

    async def _refresh_status(self) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            try:
                self.notifier.status(await self._summary())
            except PoolDaemonError as err:
                log.warning("status summary failed", error=err.message)
            await asyncio.sleep(0.5)  # coalesce bursts: at most two STATUS= lines a second

    async def _summary(self) -> str:
        """One line for `systemctl status`: "3 pools, 2 downloading, 1 failed; crateq: …"."""
        assert self.store is not None
        counts = await store_jobs.job_counts(self.store)
        pools = await store_pools.pool_rows(self.store)
        enabled = sum(1 for p in self.config.pools.values() if p.enabled)
        parts = [f"{enabled} pool{'s' if enabled != 1 else ''}"]
        active = sum(counts.get(s, 0) for s in ("resolving", "downloading", "verifying"))
        for label, n in (
            ("downloading", active),
            ("queued", counts.get("queued", 0)),
            ("failed", counts.get("failed", 0)),
        ):
            if n:
                parts.append(f"{n} {label}")
        engine = self.components.engine
        if engine is not None and engine.paused:
            parts.append("paused")
        if engine is not None and engine.held:
            parts.append(f"held ({engine.held})")
        text = ", ".join(parts)
        errors = [
            f"{name}: {row['blocked_reason'] or row['last_error']}"
            for name, row in sorted(pools.items())
            if name in self.config.pools and (row["blocked_reason"] or row["last_error"])
        ]
        if errors:
            text += "; " + errors[0] + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
        return redact_text(text)

    # -- Services (control/services.py) --------------------------------------------------------

    def _store(self) -> Store:
        if self.store is None:
            raise Conflict("pooldaemon is starting or stopping")
        return self.store

    def _pool(self, name: str) -> Any:
        pool = self.config.pools.get(name)
        if pool is None:
            known = ", ".join(sorted(self.config.pools)) or "none configured"
            raise NotFound(f"no pool {name!r} (configured pools: {known})")
        return pool

    def pool_kinds(self) -> dict[str, tuple[str, ...]]:
        """Enabled pools → the request kinds they download (what refs are parsed against)."""
        kinds: dict[str, tuple[str, ...]] = {}
        for name, pool in self.config.pools.items():
            if pool.enabled:
                adapter = self.components.adapters.get(name)
                kinds[name] = adapter.kinds if adapter is not None else ("track",)
        return kinds

    async def status(self) -> dict[str, Any]:
        rows = await store_pools.pool_rows(self._store())
        engine = self.components.engine
        governed = self.components.governed
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started_at, 1),
            "paused": bool(engine and engine.paused),
            "pools": [
                {
                    "name": name,
                    "type": pool.type,
                    "enabled": pool.enabled,
                    "last_catalog_sync": rows.get(name, {}).get("last_catalog_sync"),
                    "last_queue_sync": rows.get(name, {}).get("last_queue_sync"),
                    "last_error": rows.get(name, {}).get("last_error"),
                    "last_error_at": rows.get(name, {}).get("last_error_at"),
                    "blocked_reason": rows.get(name, {}).get("blocked_reason"),
                    # What the pool lacks (an assumed endpoint): said here, not as an error.
                    "notice": self._notice(name),
                }
                for name, pool in self.config.pools.items()
            ],
            "jobs": await store_jobs.job_counts(self._store()),
            "rate_bps": int(engine.rate_bps()) if engine is not None else 0,
            # docs/interface.md §10: the window in force and the limit now; the DJ app seen.
            **(governed.governor.status() if governed else {"schedule": None, "gig": None}),
            "library": await self._library().status() if self.components.library else None,
        }

    def _notice(self, pool: str) -> str | None:
        adapter = self.components.adapters.get(pool)
        if adapter is None:
            return None
        return "; ".join(adapter.notices()) or None

    async def pools(self) -> list[dict[str, Any]]:
        result = []
        for name, pool in self.config.pools.items():
            adapter = self.components.adapters.get(name)
            result.append(
                {
                    "name": name,
                    "type": pool.type,
                    "enabled": pool.enabled,
                    "auto_download": pool.auto_download,
                    "catalog_interval_s": pool.catalog_interval_s,
                    "queue_interval_s": pool.queue_interval_s,
                    "capabilities": sorted(adapter.capabilities) if adapter else [],
                    "kinds": list(adapter.kinds) if adapter else [],
                }
            )
        return result

    async def sync(self, pool: str, full: bool) -> dict[str, Any]:
        if not self._pool(pool).enabled:
            raise Conflict(f"pool {pool!r} is disabled in the config (enabled = false)")
        if self.components.sync is None:
            raise _not_running("pool sync")
        return await self.components.sync.sync_now(pool, full=full)

    async def search(self, params: dict[str, str]) -> dict[str, Any]:
        if self.components.search is None:
            raise _not_running("catalog search")
        return await self.components.search(params)

    def _rules(self) -> Rules:
        if self.components.rules is None:
            raise NotFound("no rules are configured (add [[rules]] tables to the config)")
        return self.components.rules

    async def rules(self) -> dict[str, Any]:
        if self.components.rules is None:
            return {"items": []}
        return await self.components.rules.list()

    async def rule_preview(self, name: str, limit: int, offset: int) -> dict[str, Any]:
        return await self._rules().preview(name, limit=limit, offset=offset)

    async def rule_run(self, name: str, backfill: bool, since: str | None) -> dict[str, Any]:
        return dict(await self._rules().run(name, backfill=backfill, since=since))

    async def list_jobs(
        self, state: str | None, pool: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        total, jobs = await job_pages.page_jobs(
            self._store(), state=state, pool=pool, limit=limit, offset=offset
        )
        return {"total": total, "items": [self._live(job) for job in jobs]}

    async def get_job(self, job_id: int) -> dict[str, Any]:
        return self._live(await store_jobs.get_job(self._store(), job_id))

    def _live(self, job: dict[str, Any]) -> dict[str, Any]:
        engine = self.components.engine
        if engine is not None and job["state"] == JobState.DOWNLOADING:
            job["rate_bps"] = int(engine.job_rate_bps(job["id"]))
        if engine is not None and job["state"] == JobState.QUEUED:
            # docs/interface.md §10: a job held by a window or a gig says why it waits.
            job["waiting"] = engine.waiting_reason()
        return job

    async def submit(
        self, refs: list[str], *, redownload: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        if self.components.engine is None:
            raise _not_running("the download engine")
        kinds = self.pool_kinds()
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for ref in refs:
            try:
                request = parse_ref(ref, kinds)
                if redownload:
                    request = Request(
                        request.pool, request.item_id, request.kind, redownload=True, reason=reason
                    )
                job = await self.submit_request(request, "socket")
            except PoolDaemonError as err:
                rejected.append({"ref": ref, "reason": err.message})
                continue
            accepted.append({"ref": request.ref, "job": job["id"]})
        return {"accepted": accepted, "rejected": rejected}

    async def submit_request(
        self,
        request: Request,
        origin: str,
        *,
        title: str | None = None,
        artist: str | None = None,
        automatic: bool = False,
    ) -> dict[str, Any]:
        """The one way a download is requested (socket, drop folder, auto-download); `title`
        and `artist` are what the requester already knows of the item; `automatic`: no one
        asked for it by name (docs/interface.md §8: duplicates are skipped)."""
        engine = self.components.engine
        if engine is None:
            raise _not_running("the download engine")
        if request.pool not in self.pool_kinds():
            raise BadRequest(f"pool {request.pool!r} is not enabled")
        # Only an automatic request says so: a by-name one is the engine's plain call.
        if automatic:
            job, _created = await engine.submit(
                request, origin, title=title, artist=artist, automatic=True
            )
        else:
            job, _created = await engine.submit(request, origin, title=title, artist=artist)
        return job

    async def submit_batch(self, requests: list[Request], key: str) -> list[SubmitOutcome]:
        """Submit requests under an idempotency key: replaying the same key after a crash
        points at the jobs the first call made and creates none (RELIABILITY C5)."""
        engine = self.components.engine
        if engine is None:
            raise _not_running("the download engine")
        kinds = self.pool_kinds()
        outcomes: list[SubmitOutcome] = []
        for index, request in enumerate(requests):
            if request.pool not in kinds:
                outcomes.append(SubmitOutcome(reason=f"pool {request.pool!r} is not enabled"))
                continue
            try:
                job, _created = await engine.submit(request, "drop", key=f"{key}#{index}")
            except (BadRequest, NotFound, Unsupported, Conflict) as err:
                outcomes.append(SubmitOutcome(reason=err.message))
                continue
            outcomes.append(SubmitOutcome(job=job["id"]))
        return outcomes

    async def job_action(self, job_id: int, action: str) -> dict[str, Any]:
        await store_jobs.get_job(self._store(), job_id)  # NotFound first, whatever is wired
        if self.components.engine is None:
            raise _not_running("the download engine", action)
        return self._live(await self.components.engine.job_action(job_id, action))

    async def pause_all(self) -> dict[str, Any]:
        if self.components.engine is None:
            raise _not_running("the download engine", "pause")
        await self.components.engine.pause_all()
        self.events.publish("downloader.paused")
        return {"paused": True}

    async def resume_all(self) -> dict[str, Any]:
        if self.components.engine is None:
            raise _not_running("the download engine", "resume")
        await self.components.engine.resume_all()
        self.events.publish("downloader.resumed")
        return {"paused": False}

    async def export(self) -> dict[str, Any]:
        if self.components.exporter is None:
            raise _not_running("exports")
        written = await self.components.exporter.export_now()
        return {"written": [{"format": w.format, "path": str(w.path)} for w in written]}

    # -- the library (docs/interface.md §8) ----------------------------------------------------

    def _library(self) -> Library:
        if self.components.library is None:
            raise _not_running("the library")
        return self.components.library

    async def library(
        self, *, state: str | None, pool: str | None, q: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        self._library()
        return await store_library.list_entries(
            self._store(), state=state, pool=pool, q=q, limit=limit, offset=offset
        )

    async def library_duplicates(self) -> dict[str, Any]:
        self._library()
        return {"items": await store_library.duplicate_groups(self._store())}

    async def library_adopt(self, paths: list[str], dry_run: bool) -> dict[str, Any]:
        return await self._library().adopt(paths, dry_run=dry_run)

    async def library_audit(self, full: bool) -> dict[str, Any]:
        return await self._library().audit(full=full)

    async def library_heal(self) -> dict[str, Any]:
        return await self._library().heal()

    async def library_state(self) -> dict[str, Any]:
        return await self._library().status()

    async def login_link(self) -> dict[str, Any]:
        if self.web is None:
            raise Conflict(self._web_problem)
        return {"url": self.web.login_link()}

    async def queue(self, pool: str) -> dict[str, Any]:
        self._pool(pool)
        if self.components.sync is None:
            raise _not_running("pool sync", "remote queues")
        return await self.components.sync.remote_queue(pool)

    async def queue_edit(self, pool: str, add: str | None, remove: str | None) -> dict[str, Any]:
        self._pool(pool)
        if self.components.sync is None:
            raise _not_running("pool sync", "remote queues")
        return await self.components.sync.queue_edit(pool, add=add, remove=remove)


# -- entry point -------------------------------------------------------------------------------


def _release_memory() -> None:
    """Give the heap that start-up freed (imports' schema builds, the config's parse) back to
    the OS: glibc keeps it otherwise, ~1.5 MiB of idle RSS (issue 13)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc (musl has no malloc_trim): nothing to give back this way


async def run(config: Config, *, env: Mapping[str, str] | None = None) -> int:
    """`pooldaemon run`: start, serve until SIGTERM/SIGINT, stop; the process exit code."""
    tune_gc()
    level = getattr(logging, config.daemon.log_level.upper(), logging.INFO)
    configure_logging(config.daemon.log_format, level=level)
    REDACTOR.add(config.secrets())
    daemon = Daemon(config, env=env)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    # Handlers first: a SIGTERM during start-up (systemd stopping a slow start) must still
    # end in a clean stop, not the default kill.
    for sig in signals:
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        try:
            await daemon.start()
        except PoolDaemonError as err:
            # Startup refusals (already running, unsafe socket, newer database) are the
            # user's to fix: one clear line, exit 1; a systemd start limit stops a loop.
            log.error(err.message, code=err.code)
            return 1
        except OSError as err:
            log.error(f"pooldaemon cannot start: {err}", code="os_error")
            return 1
        try:
            await daemon.wait()
        finally:
            await daemon.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0
