"""What the control socket asks of the daemon: the one seam between the API and the components.

The server knows nothing of pools, stores or downloads; it validates the request, calls one of
these methods and sends back what it returns. Errors are raised as `pooldaemon.errors` classes
(each with a stable `code` and `http_status`); a feature not wired yet raises `Unsupported`.
"""

from __future__ import annotations

from typing import Any, Protocol

from pooldaemon.events import EventBus

#: `POST /v1/jobs/{id}/{action}` actions.
JOB_ACTIONS = ("retry", "cancel", "pause", "resume")


class Services(Protocol):
    """The daemon as the control socket sees it (docs/interface.md §4 answers, as plain JSON-able
    data)."""

    @property
    def events(self) -> EventBus:
        """The bus `GET /v1/events` streams from."""
        ...

    async def status(self) -> dict[str, Any]:
        """`{"version", "uptime_s", "pools": [...], "jobs": {state: n}, "rate_bps"}`."""
        ...

    async def pools(self) -> list[dict[str, Any]]:
        """Configured pools: name, type, enabled, schedules, capabilities."""
        ...

    async def sync(self, pool: str, full: bool) -> dict[str, Any]:
        """Sync one pool now and wait: `{"added", "updated", "removed", "queue_new"}`."""
        ...

    async def search(self, params: dict[str, str]) -> dict[str, Any]:
        """Offline catalog search (`GET /v1/catalog` query): `{"total", "items": [track…]}`."""
        ...

    async def list_jobs(
        self, state: str | None, pool: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        """One page of jobs, newest first, optionally filtered: `{"total", "items"}`."""
        ...

    async def get_job(self, job_id: int) -> dict[str, Any]:
        """One job; NotFound when there is none."""
        ...

    async def submit(
        self, refs: list[str], *, redownload: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        """Request downloads: `{"accepted": [{"ref", "job"}], "rejected": [{"ref", "reason"}]}`."""
        ...

    async def job_action(self, job_id: int, action: str) -> dict[str, Any]:
        """retry | cancel | pause | resume one job; returns the job."""
        ...

    async def pause_all(self) -> dict[str, Any]:
        """Stop starting and transferring downloads (the whole downloader)."""
        ...

    async def resume_all(self) -> dict[str, Any]:
        """Undo `pause_all`."""
        ...

    async def export(self) -> dict[str, Any]:
        """Write every enabled export now: `{"written": [{"format", "path"}]}`, once on disk."""
        ...

    async def queue(self, pool: str) -> dict[str, Any]:
        """The pool's remote download queue: `{"pool", "items": [...]}`."""
        ...

    async def queue_edit(self, pool: str, add: str | None, remove: str | None) -> dict[str, Any]:
        """Add one item to or remove one from the remote queue; returns the queue after."""
        ...

    async def library(
        self, *, state: str | None, pool: str | None, q: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        """`GET /v1/library`: `{"total", "items": [entry…]}` (docs/interface.md §8)."""
        ...

    async def library_duplicates(self) -> dict[str, Any]:
        """`GET /v1/library/duplicates`: `{"items": [{"song", "version", "items"}]}`."""
        ...

    async def library_adopt(self, paths: list[str], dry_run: bool) -> dict[str, Any]:
        """`POST /v1/library/adopt`: `{"scanned", "matched", "unmatched", "ambiguous",
        "problems"}`."""
        ...

    async def library_audit(self, full: bool) -> dict[str, Any]:
        """`POST /v1/library/audit`: `{"checked", "ok", "deleted", "lost"}`."""
        ...

    async def library_state(self) -> dict[str, Any]:
        """`GET /v1/library/audit`: `{"states", "last_audit", "last_adopt"}`."""
        ...

    async def library_heal(self) -> dict[str, Any]:
        """`POST /v1/library/heal`: `{"requested": [{"path", "job"}], "skipped": [...]}`."""
        ...

    async def rules(self) -> dict[str, Any]:
        """`GET /v1/rules`: `{"items": [{"name", "enabled", "matched", "queued", "skipped",
        "waiting", "last_match"}]}`."""
        ...

    async def rule_preview(self, name: str, limit: int, offset: int) -> dict[str, Any]:
        """`GET /v1/rules/{name}/preview`: `{"total", "items": [track…]}`, nothing downloaded."""
        ...

    async def rule_run(self, name: str, backfill: bool, since: str | None) -> dict[str, Any]:
        """`POST /v1/rules/{name}/run`: `{"queued", "skipped"}`."""
        ...

    async def login_link(self) -> dict[str, Any]:
        """A one-time dashboard login link: `{"url"}` (Conflict when the dashboard is off)."""
        ...
