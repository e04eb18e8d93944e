"""The ports: what the daemon asks of each component it wires (docs/architecture.md).

`Daemon` and `build_components` (wiring.py) speak to the sync coordinator and the download engine
through these small protocols, so a test can plug a stand-in and the daemon never reaches past
what a component offers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pooldaemon.models import Request
from pooldaemon.sync import Submit


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


#: `GET /v1/catalog`: the offline search over the store's catalog mirror.
SearchPort = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]
#: What the drop-folder watcher (and anything else) calls to request a download.
SubmitFn = Submit
