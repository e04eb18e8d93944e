"""What the downloader needs of a pool: plans, renewed plans, redownloads, owed calls.

The downloader sees pools only through this protocol, so it never imports `pools/` (the
adapters satisfy it as they are; `pools.base.PoolAdapter` is the one implementation).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

from pooldaemon.models import DownloadPlan, OutboxCall, QueueItem, Request

#: The capability a pool declares when it has a redownload endpoint (pools.base.Capability).
REDOWNLOAD = "redownload"


class DownloadPool(Protocol):
    """A pool as the downloader uses it."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """Request kinds this pool can download."""
        ...

    @property
    def capabilities(self) -> Set[str]:
        """What the pool offers (`REDOWNLOAD` among them when it has that endpoint)."""
        ...

    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        """Turn a request into parts and sources (`known`: the queue entry we hold)."""
        ...

    async def renew_plan(self, plan: DownloadPlan, part_key: str | None = None) -> DownloadPlan:
        """Fresh sources and tokens for an expired or failing plan; part keys stay the same."""
        ...

    async def redownload(self, item_ids: list[str], reason: str) -> str:
        """Ask the pool to allow downloading again."""
        ...

    def after_download(self, plan: DownloadPlan) -> list[OutboxCall]:
        """Calls owed to the pool once a file is verified."""
        ...
