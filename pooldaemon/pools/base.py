"""The one small interface every pool adapter implements.

Adapters hold only their pool's URLs, fields and token rules. They never touch the
store, the filesystem or the scheduler: the sync coordinator and the downloader call them and
record what they return. Anything an adapter must remember across restarts (a persistent login
token, a per-track token and when it was seen) it returns in `state` / `QueueItem.extra` and gets
back through `restore_state`.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol

from pydantic import SecretStr

from pooldaemon.errors import Unsupported
from pooldaemon.models import CatalogPage, DownloadPlan, OutboxCall, QueueItem, Request
from pooldaemon.offload import INLINE, Offload
from pooldaemon.pools.http import PoolHttp


class Capability(enum.StrEnum):
    """What a pool offers; the daemon asks before it calls."""

    CATALOG = "catalog"  # a browsable catalog to mirror
    INCREMENTAL = "incremental"  # the catalog can be read "changed since"
    LOOKUPS = "lookups"  # lookup tables (genres, …)
    QUEUE = "queue"  # a remote download queue to poll
    QUEUE_EDIT = "queue_edit"  # add/remove items of that queue
    REDOWNLOAD = "redownload"  # an endpoint that allows downloading again
    OUTBOX = "outbox"  # calls owed after a download (acknowledgements)


Clock = Callable[[], float]
#: Writes the adapter's `state()` to the store now (set by the sync coordinator).
Persist = Callable[[], Awaitable[None]]


class PoolSettings(Protocol):
    """What every pool's config section holds (config.py's pool models): read by sync and the
    scheduler. Each adapter names the rest it reads in its own protocol; `pools/` never imports
    config.py, which only has to provide these fields."""

    @property
    def type(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def auto_download(self) -> bool: ...
    @property
    def catalog_interval_s(self) -> float: ...
    @property
    def queue_interval_s(self) -> float: ...


def secret_text(value: SecretStr | None) -> str:
    """A configured secret as text; "" when absent (config.py requires each one in use)."""
    return "" if value is None else value.get_secret_value()


class PoolAdapter(ABC):
    """A pool account: sign in, read the catalog and queue, plan downloads."""

    #: The config `type` this adapter serves.
    type_name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    #: Request kinds (refs.KINDS) this pool can download.
    kinds: ClassVar[tuple[str, ...]] = ("track",)
    #: The catalog is a moving window (Harvest's latest albums), not the whole pool: a track
    #: missing from a full pass is not gone, so sync never marks it removed.
    catalog_window: ClassVar[bool] = False

    def __init__(
        self, name: str, config: PoolSettings, http: PoolHttp, clock: Clock = time.time
    ) -> None:
        self.name = name
        self.config: PoolSettings = config
        self.http = http
        self.clock = clock
        #: Set by the sync coordinator: an adapter that must not lose an answer (a call with a
        #: side effect) awaits it before going on. None: nothing is written (tests, one-offs).
        self.persist: Persist | None = None

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    # -- state kept across restarts ------------------------------------------------------------

    def restore_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Take back what `state()` returned last time (tokens that outlive a restart)."""

    def state(self) -> dict[str, Any]:
        """What to persist for `restore_state` (stored in the state database, mode 0600)."""
        return {}

    async def save_state(self) -> None:
        """Write `state()` now, when the daemon gave us a way to (see `persist`)."""
        if self.persist is not None:
            await self.persist()

    def notices(self) -> list[str]:
        """Features this pool lacks, learned at run time, in words for `poolctl status`."""
        return []

    # -- tokens -------------------------------------------------------------------------------

    @abstractmethod
    async def sign_in(self) -> None:
        """Get fresh account tokens, raising AuthError/AccountError with the pool's message."""

    def token_expires_at(self) -> float | None:
        """When the account token expires (unix time), for renewal ahead of expiry."""
        return None

    async def renew(self) -> None:
        """Renew account tokens; by default sign in again."""
        await self.sign_in()

    # -- catalog and queue --------------------------------------------------------------------

    async def lookups(self) -> dict[str, dict[str, Any]]:
        """Lookup tables: kind → {key: value} (CrateQ genres, categories, qualities, mixes)."""
        raise Unsupported(f"{self.name}: no lookup tables")

    def catalog(
        self, since: float | None = None, offload: Offload = INLINE
    ) -> AsyncIterator[CatalogPage]:
        """Page through the catalog: all of it, or what changed since `since` (unix time).

        `offload` may decode big pages in a worker process (a pass's, see offload.py)."""
        raise Unsupported(f"{self.name}: no catalog")

    async def remote_queue(self) -> list[QueueItem]:
        """The whole remote queue (every page); raise on anything short of a complete answer."""
        raise Unsupported(f"{self.name}: no remote queue")

    async def queue_add(self, item_id: str) -> str:
        """Add to the remote queue; returns what happened, in words for the user."""
        raise Unsupported(f"{self.name}: the remote queue cannot be edited")

    async def queue_remove(self, item_id: str) -> str:
        raise Unsupported(f"{self.name}: the remote queue cannot be edited")

    # -- downloads ----------------------------------------------------------------------------

    @abstractmethod
    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        """Turn a request into parts and sources. `known` is the queue entry we hold, if any."""

    async def renew_plan(self, plan: DownloadPlan, part_key: str | None = None) -> DownloadPlan:
        """Fresh sources/tokens for an expired or failing plan; part keys stay the same."""
        return await self.plan(Request(plan.pool, plan.item_id, plan.kind))

    async def redownload(self, item_ids: list[str], reason: str) -> str:
        """Ask the pool to allow downloading again (a scarce call: only on the user's word)."""
        raise Unsupported(f"{self.name}: no redownload request; a plain download is used")

    def after_download(self, plan: DownloadPlan) -> list[OutboxCall]:
        """Calls owed to the pool once a file is verified (go through the persistent outbox)."""
        return []

    async def deliver(self, call: OutboxCall) -> None:
        """Make one owed call; raise TransientError to have it retried later."""
        raise Unsupported(f"{self.name}: no outbox calls")
