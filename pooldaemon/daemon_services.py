"""What the control socket asks of the daemon, answered from the wired components.

`DaemonServices` implements `control.services.Services`: status, pools and sync, the catalog
search, jobs and submitting, pause and resume, exports, the library, rules and remote queues.
`Daemon` (daemon.py) is this plus the lifecycle that opens the store, builds `components` and
binds the dashboard; these methods only use them. Until a component is wired, its methods
raise `Unsupported` naming what is missing.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from pooldaemon import __version__
from pooldaemon.config import Config
from pooldaemon.drop import SubmitOutcome
from pooldaemon.errors import BadRequest, Conflict, NotFound, PoolDaemonError, Unsupported
from pooldaemon.events import EventBus
from pooldaemon.library.keeper import Library
from pooldaemon.models import JobState, Request
from pooldaemon.refs import parse_ref
from pooldaemon.store import Store, job_pages
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store import pools as store_pools
from pooldaemon.wiring import Components

if TYPE_CHECKING:
    from pooldaemon.rules import Rules
    from pooldaemon.web.app import WebServer


def _not_running(part: str, wanted: str | None = None) -> Unsupported:
    """The answer when a request needs a part this daemon was built without."""
    head = f"{wanted}: " if wanted else ""
    return Unsupported(f"{head}{part} is not running in this daemon")


class DaemonServices:
    """The socket's answers (`control.services.Services`), over what `Daemon` owns."""

    config: Config
    events: EventBus
    components: Components
    store: Store | None
    web: WebServer | None
    _web_problem: str
    _started_at: float

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
        points at the jobs the first call made and creates none (docs/reliability.md C5)."""
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
