"""The daemon's lifecycle: the only module that sees everything.

config → lock → store → one shared HTTP session → components (wiring.py) → control socket →
READY=1. SIGTERM/SIGINT: STOPPING=1, close the socket, stop the components in reverse order
within a bounded time, close the session and the store, exit 0 (docs/interface.md §1: within
10 s). The answers the socket asks for are `DaemonServices` (daemon_services.py), which `Daemon`
extends; the components are built by `build_components` (wiring.py), through the ports of
ports.py.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from pooldaemon import __version__, heap
from pooldaemon.alerts import Timing
from pooldaemon.config import Config
from pooldaemon.control.server import ControlServer
from pooldaemon.daemon_services import DaemonServices
from pooldaemon.errors import PoolDaemonError
from pooldaemon.events import EventBus
from pooldaemon.lock import InstanceLock
from pooldaemon.log import REDACTOR, configure_logging, get_logger, redact_text
from pooldaemon.notify import Notifier
from pooldaemon.offload import tune_gc
from pooldaemon.ports import Lifecycle
from pooldaemon.store import Store
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import pools as store_pools
from pooldaemon.wiring import Components, Wiring, build_components

if TYPE_CHECKING:
    from pooldaemon.web.app import WebServer

log = get_logger(__name__)

#: docs/interface.md §1 allows 10 s from SIGTERM to exit; components share most of it, the rest is
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


class Daemon(DaemonServices):
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
        # The dashboard's code is loaded only when it is on (issue 13: idle RSS).
        from pooldaemon.web.app import WebServer, WebSetupError, settings_answer

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


# -- entry point -------------------------------------------------------------------------------


def _release_memory() -> None:
    """Give the heap that start-up freed (imports' schema builds, the config's parse) back to
    the OS: glibc keeps it otherwise, ~1.5 MiB of idle RSS (issue 13)."""
    gc.collect()
    heap.trim()


async def run(config: Config, *, env: Mapping[str, str] | None = None) -> int:
    """`pooldaemon run`: start, serve until SIGTERM/SIGINT, stop; the process exit code."""
    tune_gc()
    heap.tune_malloc()
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
