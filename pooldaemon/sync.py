"""One pool's sync coordinator: adapter → store, last success/error, and the auto-download handoff.

The scheduler and the control socket both call in here; a lock per activity means a manual sync
and a scheduled one never run side by side. Errors are recorded (store/pools.py), published as
`sync` events and logged when a pool starts failing and when it recovers, not on every tick
– then raised to the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from pooldaemon.errors import AccountError, NotFound, PoolDaemonError, Unsupported
from pooldaemon.events import EventBus
from pooldaemon.log import get_logger, redact_text
from pooldaemon.models import CatalogPage, QueueItem, Request
from pooldaemon.offload import Offload
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.store import catalog
from pooldaemon.store import pools as pool_rows
from pooldaemon.store import queue as remote_queue
from pooldaemon.store.db import Store

log = get_logger(__name__)

NewItems = Callable[[list[QueueItem]], Awaitable[None]]


class Submit(Protocol):
    """The daemon's way to request a download (ports.SubmitFn): (request, origin) → job."""

    def __call__(
        self,
        request: Request,
        origin: str,
        *,
        title: str | None = None,
        artist: str | None = None,
        automatic: bool = False,
    ) -> Awaitable[dict[str, Any]]: ...


class CatalogWatch(Protocol):
    """Told when catalog passes start and end (the rules, docs/interface.md §7)."""

    def pass_started(self, pool: str) -> None: ...

    def pass_aborted(self, pool: str) -> None: ...

    async def pass_ended(self, pool: str, seen_at: float, back_catalog: bool) -> None:
        """A pass finished: its new tracks entered the mirror at `seen_at`; `back_catalog`:
        it was the pool's first, whose tracks are no news."""
        ...


T = TypeVar("T")

#: docs/reliability.md M2: removing more than this share of a pool's tracks needs two consistent
#: reads.
MASS_REMOVAL_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What a catalog pass changed in the mirror."""

    added: int = 0
    updated: int = 0
    removed: int = 0


def auto_download_jobs(submit: Submit) -> NewItems:
    """The hand-off: each new queue item is submitted as a download (origin "auto"); the engine
    de-duplicates (docs/interface.md §3), and what the queue says of the track is its title."""

    async def hand_over(items: list[QueueItem]) -> None:
        for item in items:
            track = item.track
            await submit(
                Request(item.pool, item.item_id, item.kind),
                "auto",
                title=track.title if track else None,
                artist=track.artist if track else None,
                automatic=fetched_automatically(item),
            )

    return hand_over


def fetched_automatically(item: QueueItem) -> bool:
    """docs/interface.md §8: a queue item only from a pool's "latest" list is fetched
    automatically; one the user put in a queue, favourites or a playlist was asked for by name."""
    return item.extra.get("sources") == ["latest"]


def queue_item_dict(item: QueueItem) -> dict[str, Any]:
    """A remote queue entry for the socket API (tokens left out)."""
    track = item.track
    ref = Request(item.pool, item.item_id, item.kind).ref
    return {
        "ref": ref,
        "pool": item.pool,
        "id": item.item_id,
        "kind": item.kind,
        "queue_id": item.queue_id,
        "queued_at": item.queued_at,
        "artist": track.artist if track else None,
        "title": track.title if track else None,
        "genre": track.genre if track else None,
        "bpm": track.bpm if track else None,
        "mix": track.mix if track else None,
        "video": track.video if track else None,
    }


class PoolSync:
    """Keeps one pool's mirror, queue, lookups and tokens up to date."""

    def __init__(
        self,
        name: str,
        adapter: PoolAdapter,
        store: Store,
        events: EventBus,
        on_new_items: NewItems | None = None,
        *,
        auto_download: bool | None = None,
        clock: Callable[[], float] = time.time,
        offload: Callable[[], Offload] = Offload,
        catalog_watch: CatalogWatch | None = None,
    ) -> None:
        self.name = name
        self.catalog_watch = catalog_watch
        #: (when, first pass) of the last catalog pass that finished.
        self._last_pass: tuple[float, bool] = (0.0, False)
        self.adapter = adapter
        #: Makes each catalog pass's page decoder (a worker process, started if it is needed).
        self.offload = offload
        self.store = store
        self.events = events
        self.on_new_items = on_new_items
        self.auto_download = (
            adapter.config.auto_download if auto_download is None else auto_download
        )
        self.clock = clock
        self._catalog_lock = asyncio.Lock()
        self._queue_lock = asyncio.Lock()
        self._ready = False
        self._saved_state: dict[str, Any] | None = None
        #: (records, digest of the ids) of a mass removal seen once and held (docs/reliability.md
        #: M2).
        self._held_removal: str | None = None
        self._blocked_reason: str | None = None
        #: The queue as last read from the pool (with tracks), for `queue()` answers.
        self._live_queue: list[QueueItem] | None = None

    # -- set-up and tokens ----------------------------------------------------------------------

    async def restore(self) -> None:
        """Make sure the pool has its row and give the adapter back its saved tokens."""
        if self._ready:
            return
        await pool_rows.ensure_pools(self.store, {self.name: self.adapter.type_name})
        state = await pool_rows.load_state(self.store, self.name)
        self._saved_state = state
        if state:
            self.adapter.restore_state(state)
        # An answer to a call with a side effect is written before the adapter goes on.
        self.adapter.persist = self._save_state
        self._ready = True

    async def renew_token(self) -> None:
        """Renew the account token ahead of its expiry (the scheduler's renewal job)."""
        await self.restore()
        await self._guarded("token", self.adapter.renew)

    async def _save_state(self) -> None:
        state = self.adapter.state()
        if state != self._saved_state:
            await pool_rows.save_state(self.store, self.name, state)
            self._saved_state = state

    # -- the pieces -----------------------------------------------------------------------------

    async def sync(self, full: bool = False) -> dict[str, int]:
        """Catalog, then queue: `{"added", "updated", "removed", "queue_new"}` (docs/interface.md
        §4)."""
        result = await self.sync_catalog(full)
        queue_new = await self.sync_queue()
        return {**asdict(result), "queue_new": queue_new}

    async def sync_catalog(self, full: bool = False) -> SyncResult:
        """A catalog pass: incremental when the pool allows and we have a point to start from."""
        if not self.adapter.supports(Capability.CATALOG):
            return SyncResult()
        await self.restore()
        watch = self.catalog_watch
        async with self._catalog_lock:
            if watch is not None:
                watch.pass_started(self.name)
            try:
                result = await self._guarded("catalog", lambda: self._catalog(full))
            except BaseException:
                if watch is not None:
                    watch.pass_aborted(self.name)
                raise
        if watch is not None:
            # Outside the lock: the rules wait for other pools' passes, never for this one's.
            await watch.pass_ended(self.name, *self._last_pass)
        return result

    async def sync_queue(self) -> int:
        """Read the remote queue; new items go to `on_new_items` when auto_download is on."""
        if not self.adapter.supports(Capability.QUEUE):
            return 0
        await self.restore()
        async with self._queue_lock:
            items = await self._guarded("queue", self._queue)
        return len(items)

    async def queue(self) -> dict[str, Any]:
        """The remote queue as the pool lists it now (`poolctl queue POOL`)."""
        if not self.adapter.supports(Capability.QUEUE):
            raise self._unsupported("a remote queue")
        await self.restore()
        async with self._queue_lock:
            await self._guarded("queue", self._queue)
        return await self._queue_answer()

    async def queue_edit(self, add: str | None, remove: str | None) -> dict[str, Any]:
        """Add or remove one queue item, say what happened, and return the queue after."""
        if not self.adapter.supports(Capability.QUEUE_EDIT):
            raise self._unsupported("an editable remote queue")
        await self.restore()
        async with self._queue_lock:
            if add is not None:
                message = await self._guarded("queue", lambda: self.adapter.queue_add(add))
            elif remove is not None:
                message = await self._guarded("queue", lambda: self.adapter.queue_remove(remove))
            else:
                message = ""
            await self._guarded("queue", self._queue)
        answer = await self._queue_answer()
        answer["message"] = message
        return answer

    async def sync_lookups(self) -> int:
        """Refresh the lookup tables; returns how many entries were stored."""
        if not self.adapter.supports(Capability.LOOKUPS):
            return 0
        await self.restore()
        return await self._guarded("lookups", self._lookups)

    # -- work -----------------------------------------------------------------------------------

    async def _catalog(self, full: bool) -> SyncResult:
        rows = (await pool_rows.pool_rows(self.store)).get(self.name, {})
        cursor = rows.get("catalog_cursor")
        since: float | None = None
        if not full and cursor and self.adapter.supports(Capability.INCREMENTAL):
            try:
                since = float(cursor)
            except ValueError:
                since = None
        full = since is None
        started = self.clock()
        # Cheap when all is well; repairs what a bulk load cut short by a crash left out.
        await catalog.ensure_search_indexes(self.store)
        if not await catalog.words_complete(self.store):
            log.warning("word index incomplete, rebuilding it", pool=self.name)
            await catalog.rebuild_words(self.store)
        # A first sync into an empty mirror is a bulk load: the word index and the per-column
        # search indexes are built once at the end, not row by row (schema migration 5).
        # Only into an empty mirror: the indexes are shared by every pool, and other pools'
        # searches must not lose them while this one loads.
        bulk = full and not await catalog.any_tracks(self.store)
        if bulk:
            async with catalog.bulk_load(self.store):
                result = await self._apply_pages(since, started, full, bulk)
        elif full:
            await catalog.begin_pass(self.store, self.name)
            try:
                result = await self._apply_pages(since, started, full, bulk)
            finally:
                await catalog.end_pass(self.store, self.name)
        else:
            result = await self._apply_pages(since, started, full, bulk)
        await pool_rows.record_success(self.store, self.name, "catalog", cursor=repr(started))
        # docs/interface.md §7: a pool's first pass (no cursor yet) is its back catalog.
        self._last_pass = (started, not cursor)
        self.events.publish("sync", pool=self.name, what="catalog", full=full, **asdict(result))
        return result

    async def _apply_pages(
        self, since: float | None, seen_at: float, full: bool, bulk: bool
    ) -> SyncResult:
        """Write pages as they come; the next page is read while SQLite writes this one."""
        pages: asyncio.Queue[CatalogPage | Exception | None] = asyncio.Queue(maxsize=2)

        # A big catalog's pages are decoded in a worker process, for this pass only.
        offload = self.offload()

        async def read() -> None:
            source = self.adapter.catalog(since, offload)
            try:
                async for page in source:
                    await pages.put(page)
            except Exception as err:  # handed to the writer, which raises it
                await pages.put(err)
                return
            finally:
                # Cancelled mid-pass: close the pages at once (an adapter may read ahead).
                close = getattr(source, "aclose", None)
                if close is not None:
                    await close()
            await pages.put(None)

        reader = asyncio.create_task(read(), name=f"{self.name}: catalog pages")
        total: int | None = None
        consistent = True
        added = updated = 0
        quarantined: set[str] = set()
        try:
            while (page := await pages.get()) is not None:
                if isinstance(page, Exception):
                    raise page
                if total is None:
                    total = page.total
                elif page.total != total:
                    consistent = False  # the catalog changed during the pass
                applied = await catalog.apply_page(
                    self.store,
                    self.name,
                    page.tracks,
                    seen_at=seen_at,
                    in_pass=full and not bulk,
                    bulk=bulk,
                )
                if page.quarantined:
                    quarantined.update(page.quarantined)
                    if full and not bulk:
                        await catalog.mark_seen(self.store, self.name, page.quarantined)
                added += applied.added
                updated += applied.updated
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await offload.close()
        # A bulk load started from nothing: there is nothing it could remove. A pool whose
        # "catalog" is a moving window (Harvest's latest albums) never says a track is gone.
        removed = (
            await self._remove_gone(total, consistent, quarantined)
            if full and not bulk and not self.adapter.catalog_window
            else 0
        )
        return SyncResult(added=added, updated=updated, removed=removed)

    async def _remove_gone(self, total: int | None, consistent: bool, quarantined: set[str]) -> int:
        """docs/reliability.md M2: remove only after a complete pass whose count matches the
        pool's."""
        if total is None or not consistent or "" in quarantined:
            reason = (
                "no pages"
                if total is None
                else "the record count changed during the pass"
                if not consistent
                else "a record without an id was skipped"
            )
            log.warning("catalog pass incomplete, nothing removed", pool=self.name, reason=reason)
            return 0
        seen = await catalog.pass_seen_count(self.store, self.name)
        if seen != total:
            log.warning(
                "catalog pass incomplete, nothing removed",
                pool=self.name,
                seen=seen,
                records=total,
            )
            return 0
        gone = await catalog.removal_candidates(self.store, self.name)
        if not gone:
            self._held_removal = None
            return 0
        active = await catalog.active_count(self.store, self.name)
        if len(gone) > MASS_REMOVAL_SHARE * active:
            # A sudden drop needs a second, consistent read before it is believed.
            digest = hashlib.sha256(f"{total}:{','.join(gone)}".encode()).hexdigest()
            if self._held_removal != digest:
                self._held_removal = digest
                log.warning(
                    "mass removal held until the next full pass confirms it",
                    pool=self.name,
                    gone=len(gone),
                    tracks=active,
                    records=total,
                )
                return 0
        self._held_removal = None
        removed = await catalog.mark_removed(self.store, self.name, gone)
        log.info("tracks removed by the pool", pool=self.name, removed=removed)
        return removed

    async def _queue(self) -> list[QueueItem]:
        items = await self.adapter.remote_queue()
        seen_at = self.clock()
        known = await remote_queue.queue_keys(self.store, self.name)
        new = [item for item in items if (item.kind, item.item_id) not in known]
        if new and self.auto_download and self.on_new_items is not None:
            # Handed over before the queue is saved: if this fails they are new again next
            # time, and the job store de-duplicates a second hand-over (docs/interface.md §3).
            await self.on_new_items(new)
        await remote_queue.save_queue(self.store, self.name, items, seen_at=seen_at)
        self._live_queue = items
        await pool_rows.record_success(self.store, self.name, "queue")
        self.events.publish(
            "sync", pool=self.name, what="queue", items=len(items), queue_new=len(new)
        )
        return new

    async def _queue_answer(self) -> dict[str, Any]:
        items = self._live_queue
        if items is None:
            items = await remote_queue.queue_items(self.store, self.name)
        answer: dict[str, Any] = {
            "pool": self.name,
            "items": [queue_item_dict(item) for item in items],
        }
        notices = self.adapter.notices()
        if notices:
            answer["notice"] = "; ".join(notices)
        return answer

    async def _lookups(self) -> int:
        tables = await self.adapter.lookups()
        count = await catalog.save_lookups(self.store, self.name, tables)
        self.events.publish("sync", pool=self.name, what="lookups", entries=count)
        return count

    # -- bookkeeping ----------------------------------------------------------------------------

    async def _guarded(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run one piece of work, recording success/failure and the adapter's tokens.

        `work` is started only after the failing state is read, so a cancellation in between
        leaves no coroutine that was never awaited."""
        failing_before = await self._failing()
        try:
            result = await work()
        except PoolDaemonError as err:
            await self._failed(what, err)
            raise
        except Exception as err:  # a bug or an unmapped library error: recorded, then raised
            await self._failed(what, PoolDaemonError(f"{type(err).__name__}: {err}"))
            raise
        finally:
            await self._save_state()
        if failing_before and not await self._failing():
            log.info("pool recovered", pool=self.name, what=what)
            self.events.publish("pool.recovered", pool=self.name, what=what)
        if self._blocked_reason is not None:
            await pool_rows.set_blocked(self.store, self.name, None)
            self._blocked_reason = None
        return result

    async def _failing(self) -> bool:
        return await self._failing_since() is not None

    async def _failing_since(self) -> float | None:
        row = (await pool_rows.pool_rows(self.store)).get(self.name, {})
        since = row.get("failing_since")
        return float(since) if since is not None else None

    async def _failed(self, what: str, err: PoolDaemonError) -> None:
        message = redact_text(err.message)
        started = await pool_rows.record_error(self.store, self.name, f"{what}: {message}")
        if started:
            log.warning("pool failing", pool=self.name, what=what, code=err.code, error=message)
        # Published on every failure, not only the first: `since` lets the notifier tell an
        # account problem at once and a pool failing for hours once it has (informed.py).
        self.events.publish(
            "pool.failing",
            pool=self.name,
            what=what,
            code=err.code,
            error=message,
            since=await self._failing_since(),
            started=started,
        )
        if isinstance(err, AccountError):
            # docs/reliability.md T4: the pool's own message is shown and its downloads wait.
            await pool_rows.set_blocked(self.store, self.name, message)
            self._blocked_reason = message
        self.events.publish(
            "sync", pool=self.name, what=what, error={"code": err.code, "message": message}
        )

    def _unsupported(self, what: str) -> PoolDaemonError:
        return Unsupported(f"{self.name} has no {what}")


class SyncCoordinator:
    """Every enabled pool's PoolSync, behind the daemon's `SyncPort` (ports.py)."""

    def __init__(
        self,
        adapters: Mapping[str, PoolAdapter],
        store: Store,
        events: EventBus,
        submit: Submit,
        *,
        clock: Callable[[], float] = time.time,
        catalog_watch: CatalogWatch | None = None,
    ) -> None:
        hand_over = auto_download_jobs(submit)
        self.pools: dict[str, PoolSync] = {
            name: PoolSync(
                name, adapter, store, events, hand_over, clock=clock, catalog_watch=catalog_watch
            )
            for name, adapter in adapters.items()
        }

    def get(self, pool: str) -> PoolSync:
        sync = self.pools.get(pool)
        if sync is None:
            known = ", ".join(sorted(self.pools)) or "none enabled"
            raise NotFound(f"no enabled pool {pool!r} (pools: {known})")
        return sync

    async def start(self) -> None:
        """Give each adapter back the tokens saved last time (no network)."""
        for sync in self.pools.values():
            await sync.restore()

    async def stop(self) -> None:
        """Nothing of its own runs in the background (the scheduler owns the ticks)."""

    async def sync_now(self, pool: str, *, full: bool) -> dict[str, Any]:
        """`POST /v1/pools/{pool}/sync`: `{"added", "updated", "removed", "queue_new"}`."""
        return dict(await self.get(pool).sync(full))

    async def remote_queue(self, pool: str) -> dict[str, Any]:
        """`GET /v1/pools/{pool}/queue`: `{"pool", "items"}` as the pool lists them now."""
        return await self.get(pool).queue()

    async def queue_edit(self, pool: str, *, add: str | None, remove: str | None) -> dict[str, Any]:
        """`POST /v1/pools/{pool}/queue`: `{"pool", "items", "message"}`."""
        return await self.get(pool).queue_edit(add, remove)
