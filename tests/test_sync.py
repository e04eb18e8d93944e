"""PoolSync against the simulated CrateQ and a real state database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiohttp
import pytest
import structlog

from pooldaemon.config import CrateQConfig, DaemonConfig
from pooldaemon.downloader.engine import Engine
from pooldaemon.errors import AccountError, IncompleteAnswer, NotFound, ProtocolError
from pooldaemon.events import EventBus
from pooldaemon.models import CatalogPage, QueueItem, Request
from pooldaemon.offload import Offload
from pooldaemon.pools.crateq import CrateQ
from pooldaemon.pools.http import PoolHttp
from pooldaemon.search import search
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.store import catalog as mirror
from pooldaemon.store import pools as pool_rows
from pooldaemon.store import queue as remote_queue
from pooldaemon.store.db import Store
from pooldaemon.store.jobs import list_jobs
from pooldaemon.sync import PoolSync, SyncCoordinator, auto_download_jobs
from tests.conftest import crateq_adapter

RECORDS = 300


class RecordingBus(EventBus):
    """The real bus, keeping what was published for the test to read."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def publish(self, kind: str, **fields: Any) -> None:
        self.events.append({"type": kind, **fields})
        super().publish(kind, **fields)


@pytest.fixture
async def sim() -> AsyncIterator[CrateQSim]:
    async with CrateQSim(records=RECORDS, seed="sync") as server:
        yield server


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()


class Handed:
    """An on_new_items callback that remembers what it was handed."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, items: list[QueueItem]) -> None:
        self.batches.append([item.item_id for item in items])


@pytest.fixture
def handed() -> Handed:
    return Handed()


@pytest.fixture
def syncer(
    sim: CrateQSim,
    session: aiohttp.ClientSession,
    store: Store,
    bus: RecordingBus,
    handed: Handed,
) -> PoolSync:
    return PoolSync("crateq", crateq_adapter(sim, session), store, bus, handed, clock=sim.clock)


async def live_ids(store: Store) -> set[str]:
    page = await search(store, {"limit": "500"})
    return {item["id"] for item in page["items"]}


async def row(store: Store, item_id: str) -> Any:
    return await store.fetchone(
        "SELECT title, first_seen, last_seen, downloaded, removed FROM tracks WHERE id = ?",
        (item_id,),
    )


# -- catalog ------------------------------------------------------------------------------------


async def test_first_sync_mirrors_everything_and_records_success(
    sim: CrateQSim, syncer: PoolSync, store: Store, bus: RecordingBus
) -> None:
    cache = (await store.fetchone("PRAGMA cache_size"))[0]
    result = await syncer.sync(full=False)  # no earlier pass: the first one is full anyway
    assert (await store.fetchone("PRAGMA cache_size"))[0] == cache  # the bulk load's is undone
    assert result == {"added": RECORDS, "updated": 0, "removed": 0, "queue_new": 0}
    assert await live_ids(store) == {str(i) for i in sim.catalog.ids()}
    status = (await pool_rows.pool_rows(store))["crateq"]
    assert status["last_catalog_sync"] and status["last_queue_sync"]
    assert status["last_error"] is None
    assert float(status["catalog_cursor"]) <= sim.clock()
    assert {"token", "expires_at", "user_id"} <= set(await pool_rows.load_state(store, "crateq"))
    catalog_events = [e for e in bus.events if e.get("what") == "catalog"]
    assert catalog_events == [
        {"type": "sync", "pool": "crateq", "what": "catalog", "full": True, "added": RECORDS,
         "updated": 0, "removed": 0}
    ]  # fmt: skip
    # The search indexes a bulk load dropped are back.
    names = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master")}
    assert {"tracks_live", "tracks_by_genre", "tracks_by_mix"} <= names


async def test_incremental_sync_touches_only_what_changed(
    sim: CrateQSim, syncer: PoolSync, store: Store
) -> None:
    await syncer.sync_catalog(full=True)
    ids = sim.catalog.select({}, "date", "desc")
    untouched = str(ids[50])
    before = await row(store, untouched)
    changed = [str(i) for i in ids[100:105]]
    await mirror.mark_downloaded(store, "crateq", changed[0])
    first_seen = (await row(store, changed[0]))["first_seen"]
    sim.advance(3600)
    sim.catalog.update([int(i) for i in changed], title="Remastered")
    new = sim.catalog.add(3)
    result = await syncer.sync_catalog(full=False)
    assert (result.added, result.updated, result.removed) == (3, 5, 0)
    days = sim.log.last("Content/Media")
    assert days is not None and days.query["days"] == "2"
    assert tuple(await row(store, untouched)) == tuple(before)  # not rewritten
    after = await row(store, changed[0])
    assert after["title"] == "Remastered"
    raw = await mirror.track_raw(store, "crateq", changed[0])
    assert raw is not None and raw["title"] == "Remastered" and "auth" not in raw
    assert raw["size"] == sim.catalog[int(changed[0])]["size"]  # as the pool wrote it
    assert after["downloaded"] == 1 and after["first_seen"] == first_seen
    hits = await search(store, {"q": "remaster"})
    assert {i["id"] for i in hits["items"]} == set(changed)
    assert {str(i) for i in new} <= await live_ids(store)


async def test_unchanged_full_pass_writes_nothing(
    sim: CrateQSim, syncer: PoolSync, store: Store
) -> None:
    await syncer.sync_catalog(full=True)
    query = (
        "SELECT t.id, t.title, t.last_seen, r.raw FROM tracks t "
        "JOIN tracks_raw r ON r.rowid = t.rowid ORDER BY t.id"
    )
    before = [tuple(r) for r in await store.fetchall(query)]
    assert len(before) == RECORDS
    result = await syncer.sync_catalog(full=True)
    assert (result.added, result.updated, result.removed) == (0, 0, 0)
    assert [tuple(r) for r in await store.fetchall(query)] == before


async def test_full_sync_marks_tracks_gone_from_the_pool_as_removed(
    sim: CrateQSim, syncer: PoolSync, store: Store
) -> None:
    await syncer.sync_catalog(full=True)
    gone = sim.catalog.ids()[:10]
    sim.catalog.remove(gone)
    incremental = await syncer.sync_catalog(full=False)
    assert incremental.removed == 0  # only a full pass can tell
    result = await syncer.sync_catalog(full=True)
    assert result.removed == 10
    assert not {str(i) for i in gone} & await live_ids(store)
    track = await mirror.get_track(store, "crateq", str(gone[0]))
    assert track is not None and track["removed"] is True
    # A track marked removed that the pool lists again is live again.
    present = str(sim.catalog.ids()[0])
    await mirror.mark_removed(store, "crateq", [present])
    back = await syncer.sync_catalog(full=True)
    assert (back.updated, back.removed) == (1, 0)
    assert present in await live_ids(store)


@pytest.mark.parametrize("fault", ["timeout_empty", "malformed_json", "truncated_json"])
async def test_a_pass_cut_short_removes_nothing_and_keeps_its_pages(
    sim: CrateQSim, syncer: PoolSync, store: Store, bus: RecordingBus, fault: str
) -> None:
    """docs/reliability.md M2: a failed answer mid-pass is never read as "the rest is gone"."""
    await syncer.sync_catalog(full=True)
    sim.catalog.remove(sim.catalog.ids()[:5])
    sim.catalog.update([sim.catalog.select({}, "date", "desc")[0]], title="New On Page One")
    getattr(sim.faults, fault)(count=None, match="Content/Media", skip=1)
    with pytest.raises(ProtocolError):
        await syncer.sync_catalog(full=True)
    assert len(await live_ids(store)) == RECORDS
    assert (await search(store, {"q": "new on page one"}))["total"] == 1  # page 1 committed
    status = (await pool_rows.pool_rows(store))["crateq"]
    assert status["last_error"].startswith("catalog: crateq: Content/Media page 2")
    assert bus.events[-1]["error"]["code"] in ("incomplete", "protocol")
    sim.faults.clear()
    result = await syncer.sync_catalog(full=True)
    assert result.removed == 5
    assert (await pool_rows.pool_rows(store))["crateq"]["last_error"] is None


async def test_a_drop_to_zero_needs_an_explicit_envelope_and_two_reads(
    sim: CrateQSim, syncer: PoolSync, store: Store
) -> None:
    await syncer.sync_catalog(full=True)
    sim.faults.timeout_empty(count=None, match="Content/Media")
    with pytest.raises(IncompleteAnswer):
        await syncer.sync_catalog(full=True)
    sim.faults.clear()
    sim.catalog.remove(sim.catalog.ids())  # the pool now answers "records":0 explicitly
    first = await syncer.sync_catalog(full=True)
    assert first.removed == 0  # held: one read is not enough for a mass removal
    assert len(await live_ids(store)) == RECORDS
    second = await syncer.sync_catalog(full=True)
    assert second.removed == RECORDS
    assert await live_ids(store) == set()


async def test_a_mass_removal_that_is_not_confirmed_is_dropped(
    sim: CrateQSim, syncer: PoolSync, store: Store
) -> None:
    await syncer.sync_catalog(full=True)
    ids = sim.catalog.ids()
    sim.catalog.remove(ids[:200])
    assert (await syncer.sync_catalog(full=True)).removed == 0
    sim.catalog.remove(ids[200:210])  # a different picture on the second read: hold again
    assert (await syncer.sync_catalog(full=True)).removed == 0
    assert (await syncer.sync_catalog(full=True)).removed == 210


async def test_a_quarantined_record_is_not_removed(
    sim: CrateQSim, syncer: PoolSync, store: Store
) -> None:
    await syncer.sync_catalog(full=True)
    ids = sim.catalog.ids()
    broken, gone = ids[3], ids[4]
    title = (await row(store, str(broken)))["title"]
    sim.catalog.update([broken], bpm="not a number", title="Broken Update")
    sim.catalog.remove([gone])
    result = await syncer.sync_catalog(full=True)
    assert result.removed == 1
    kept = await row(store, str(broken))
    assert (kept["removed"], kept["title"]) == (0, title)
    assert (await row(store, str(gone)))["removed"] == 1


async def test_a_pass_whose_count_does_not_add_up_removes_nothing(
    store: Store, bus: RecordingBus
) -> None:
    """The pool's record count changed between pages: the picture is not consistent."""

    class Shifting(CrateQ):
        pages: ClassVar[list[CatalogPage]] = []

        async def catalog(self, since: float | None = None, offload: Any = None) -> Any:  # type: ignore[override]
            for page in self.pages:
                yield page

    async with aiohttp.ClientSession() as session:
        cfg = CrateQConfig.model_validate(
            {"type": "crateq", "api_key": "k" * 8, "username": "u", "password": "p" * 8}
        )
        adapter = Shifting("crateq", cfg, PoolHttp(session, "crateq"))
        sync = PoolSync("crateq", adapter, store, bus)
        track = CrateQ.track
        make = [track(adapter, {"mediaId": n, "title": f"T{n}"}) for n in range(1, 5)]
        adapter.pages = [CatalogPage(make, 1, 1, 4)]
        await sync.sync_catalog(full=True)
        adapter.pages = [CatalogPage(make[:1], 1, 2, 3), CatalogPage(make[1:2], 2, 2, 2)]
        assert (await sync.sync_catalog(full=True)).removed == 0
        adapter.pages = [CatalogPage(make[:2], 1, 1, 3)]  # says 3, lists 2
        assert (await sync.sync_catalog(full=True)).removed == 0
        assert len(await live_ids(store)) == 4


# -- queue --------------------------------------------------------------------------------------


async def test_new_queue_items_are_handed_over_once(
    sim: CrateQSim, syncer: PoolSync, store: Store, handed: Handed
) -> None:
    ids = sim.catalog.ids()[:3]
    sim.add_to_queue(ids)
    assert await syncer.sync_queue() == 3
    assert await syncer.sync_queue() == 0
    sim.add_to_queue([sim.catalog.ids()[10]])
    assert await syncer.sync_queue() == 1
    assert len(handed.batches) == 2
    assert sorted(handed.batches[0]) == sorted(str(i) for i in ids)
    assert handed.batches[1] == [str(sim.catalog.ids()[10])]
    stored = await remote_queue.queue_items(store, "crateq")
    assert {i.item_id for i in stored} == {str(i) for i in [*ids, sim.catalog.ids()[10]]}
    assert all(len(i.extra["auth"]) == 40 for i in stored)
    sim.remove_from_queue(ids[:1])
    await syncer.sync_queue()
    assert str(ids[0]) not in {i.item_id for i in await remote_queue.queue_items(store, "crateq")}


async def test_without_auto_download_nothing_is_handed_over(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, bus: RecordingBus
) -> None:
    handed = Handed()
    adapter = crateq_adapter(sim, session, auto_download=False)
    sync = PoolSync("crateq", adapter, store, bus, handed, clock=sim.clock)
    sim.add_to_queue(sim.catalog.ids()[:2])
    assert await sync.sync_queue() == 2
    assert handed.batches == []


async def test_the_default_hand_over_creates_auto_jobs_without_duplicates(
    sim: CrateQSim,
    session: aiohttp.ClientSession,
    store: Store,
    bus: RecordingBus,
    tmp_path: Path,
) -> None:
    adapter = crateq_adapter(sim, session)
    # Every job goes through the engine (not started: only its submit is used here).
    config = DaemonConfig.model_validate({"download_dir": str(tmp_path / "library")})
    engine = Engine(store, session, {"crateq": adapter}, config, bus)

    async def submit(request: Request, origin: str, **known: str | None) -> dict[str, Any]:
        job, _created = await engine.submit(request, origin, **known)
        return job

    sync = PoolSync("crateq", adapter, store, bus, auto_download_jobs(submit))
    ids = sim.catalog.ids()[:2]
    sim.add_to_queue(ids)
    await sync.sync_queue()
    jobs = await list_jobs(store, pool="crateq")
    assert {(j["ref"], j["origin"], j["state"]) for j in jobs} == {
        (f"crateq:{i}", "auto", "queued") for i in ids
    }
    assert {j["title"] for j in jobs} == {sim.catalog[i]["title"] for i in ids}
    # Forgetting the queue makes the items "new" again: still one job each.
    await store.execute("DELETE FROM remote_queue")
    await sync.sync_queue()
    assert len(await list_jobs(store, pool="crateq")) == 2


async def test_a_failed_hand_over_is_retried_next_time(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, bus: RecordingBus
) -> None:
    calls: list[int] = []

    async def flaky(items: list[QueueItem]) -> None:
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("engine not ready")

    sync = PoolSync("crateq", crateq_adapter(sim, session), store, bus, flaky)
    sim.add_to_queue(sim.catalog.ids()[:2])
    with pytest.raises(RuntimeError):
        await sync.sync_queue()
    assert await sync.sync_queue() == 2
    assert calls == [2, 2]


async def test_queue_view_and_edit(sim: CrateQSim, syncer: PoolSync, handed: Handed) -> None:
    media_id = sim.catalog.ids()[20]
    added = await syncer.queue_edit(add=str(media_id), remove=None)
    assert added["message"] == "Media added to queue."
    assert [i["id"] for i in added["items"]] == [str(media_id)]
    assert added["items"][0]["title"] == sim.catalog[media_id]["title"]
    assert "auth" not in added["items"][0]
    again = await syncer.queue_edit(add=str(media_id), remove=None)
    assert again["message"] == f"{media_id} is already in the crateq queue"
    assert [e["mediaId"] for e in sim.queue_for()] == [media_id]
    view = await syncer.queue()
    assert view["pool"] == "crateq" and len(view["items"]) == 1
    removed = await syncer.queue_edit(add=None, remove=str(media_id))
    assert removed["message"] == "Media removed from queue."
    assert removed["items"] == []
    assert handed.batches == [[str(media_id)]]


# -- lookups, tokens, failures ------------------------------------------------------------------


async def test_lookups_are_stored(syncer: PoolSync, store: Store) -> None:
    count = await syncer.sync_lookups()
    tables = await mirror.get_lookups(store, "crateq")
    assert count == sum(len(t) for t in tables.values()) > 40
    assert tables["genres"]["161"]["title"] == "Classic Dance"


async def test_saved_tokens_are_used_after_a_restart(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, bus: RecordingBus
) -> None:
    await PoolSync("crateq", crateq_adapter(sim, session), store, bus).sync_queue()
    assert sim.calls["Auth/Login"] == 1
    restarted = PoolSync("crateq", crateq_adapter(sim, session), store, bus)
    await restarted.sync_queue()
    assert sim.calls["Auth/Login"] == 1
    await restarted.renew_token()
    assert sim.calls["Auth/Login"] == 2
    state = await pool_rows.load_state(store, "crateq")
    assert state["token"] == restarted.adapter.state()["token"]


async def test_failing_is_logged_when_it_starts_and_when_it_recovers(
    sim: CrateQSim, syncer: PoolSync, store: Store
) -> None:
    logs = structlog.testing.LogCapture()
    structlog.configure(processors=[logs])
    try:
        sim.faults.fail(500, count=None, match="Content/Queue", message="database down")
        for _ in range(3):
            with pytest.raises(Exception, match="database down"):
                await syncer.sync_queue()
        sim.faults.clear()
        await syncer.sync_queue()
        await syncer.sync_queue()
    finally:
        structlog.reset_defaults()
    events = [e["event"] for e in logs.entries if e["event"] in ("pool failing", "pool recovered")]
    assert events == ["pool failing", "pool recovered"]


async def test_every_failed_pass_is_published_with_when_failing_began(
    sim: CrateQSim, syncer: PoolSync, bus: RecordingBus
) -> None:
    # The notifier reads these: an account problem is told at once, a long failure after hours.
    sim.faults.fail(500, count=None, match="Content/Queue", message="database down")
    for _ in range(2):
        with pytest.raises(Exception, match="database down"):
            await syncer.sync_queue()
    sim.faults.clear()
    await syncer.sync_queue()
    failing = [e for e in bus.events if e["type"] == "pool.failing"]
    assert [(e["pool"], e["what"], e["started"]) for e in failing] == [
        ("crateq", "queue", True),
        ("crateq", "queue", False),
    ]
    assert failing[0]["since"] == failing[1]["since"] is not None
    assert "database down" in failing[0]["error"] and failing[0]["code"] == "transient"
    assert [e["type"] for e in bus.events if e["type"].startswith("pool.")][-1] == "pool.recovered"


async def test_an_account_problem_blocks_the_pool_with_its_message(
    sim: CrateQSim, syncer: PoolSync, store: Store, bus: RecordingBus
) -> None:
    sim.account_status = "suspended"
    sim.account_msg = "Payment declined."
    with pytest.raises(AccountError):
        await syncer.sync_queue()
    status = (await pool_rows.pool_rows(store))["crateq"]
    assert status["blocked_reason"] == "crateq: account is suspended: Payment declined."
    assert status["last_error"] == "queue: crateq: account is suspended: Payment declined."
    assert bus.events[-1]["error"] == {
        "code": "account",
        "message": "crateq: account is suspended: Payment declined.",
    }
    sim.account_status = "active"
    await syncer.sync_queue()
    status = (await pool_rows.pool_rows(store))["crateq"]
    assert status["blocked_reason"] is None and status["last_error"] is None


# -- the daemon's facade ------------------------------------------------------------------------


async def test_coordinator_serves_the_daemons_sync_port(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, bus: RecordingBus
) -> None:
    submitted: list[tuple[str, str]] = []

    async def submit(request: Request, origin: str, **known: str | None) -> dict[str, Any]:
        submitted.append((request.ref, origin))
        return {"id": len(submitted)}

    coordinator = SyncCoordinator({"crateq": crateq_adapter(sim, session)}, store, bus, submit)
    await coordinator.start()
    media_id = sim.catalog.ids()[30]
    sim.add_to_queue([media_id])
    result = await coordinator.sync_now("crateq", full=False)
    assert result == {"added": RECORDS, "updated": 0, "removed": 0, "queue_new": 1}
    assert submitted == [(f"crateq:{media_id}", "auto")]
    view = await coordinator.remote_queue("crateq")
    assert [item["ref"] for item in view["items"]] == [f"crateq:{media_id}"]
    edited = await coordinator.queue_edit("crateq", add=None, remove=str(media_id))
    assert (edited["message"], edited["items"]) == ("Media removed from queue.", [])
    with pytest.raises(NotFound, match="no enabled pool 'nosuch' \\(pools: crateq\\)"):
        await coordinator.sync_now("nosuch", full=True)
    await coordinator.stop()


T = TypeVar("T")


class EagerOffload(Offload):
    """Every page the adapter hands over is decoded in the worker, which is started for it."""

    workers: ClassVar[list[int]] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        assert await self.start(fn.__module__)
        EagerOffload.workers.append(await super().run(os.getpid))
        return await super().run(fn, *args)


async def test_a_sync_decoded_in_a_worker_process_mirrors_the_pool_the_same(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, bus: RecordingBus
) -> None:
    adapter = crateq_adapter(sim, session)
    adapter.offload_after = 1
    sync = PoolSync("crateq", adapter, store, bus, clock=sim.clock, offload=EagerOffload)
    EagerOffload.workers = []
    assert (await sync.sync_catalog(full=True)).added == RECORDS  # a bulk load
    first = set(EagerOffload.workers)
    assert len(EagerOffload.workers) == 2 and os.getpid() not in first  # pages 2 and 3
    ids = sim.catalog.select({}, "date", "desc")
    sim.catalog.update([ids[-1]], title="Renamed in the pool")
    result = await sync.sync_catalog(full=True)  # a pass over a mirror that has them
    assert (result.added, result.updated, result.removed) == (0, 1, 0)
    assert set(EagerOffload.workers) - first  # a worker per pass
    for worker in EagerOffload.workers:  # each stopped with its pass
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)
    assert await live_ids(store) == {str(i) for i in sim.catalog.ids()}
    assert (await row(store, str(ids[-1])))[0] == "Renamed in the pool"
    for item_id in map(str, ids[::37]):
        mirrored = await mirror.get_track(store, "crateq", item_id)
        truth = sim.catalog.get(int(item_id))
        assert mirrored is not None and truth is not None
        assert (mirrored["artist"], mirrored["title"], mirrored["bpm"]) == (
            truth["artist"],
            truth["title"],
            truth["bpm"] or None,
        )


async def test_a_pass_cancelled_while_its_worker_decodes_stops_the_worker_and_loses_nothing(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, bus: RecordingBus
) -> None:
    """The daemon stops (or a user's sync is cancelled) in the middle of a pass."""
    busy = asyncio.Event()

    class Stuck(Offload):
        async def run(self, fn: Callable[..., T], *args: Any) -> T:
            assert await self.start(fn.__module__)
            EagerOffload.workers.append(await super().run(os.getpid))
            if args[3] == 3:  # the last page never comes back
                busy.set()
                await asyncio.Event().wait()
            return await super().run(fn, *args)

    adapter = crateq_adapter(sim, session)
    adapter.offload_after = 1
    sync = PoolSync("crateq", adapter, store, bus, clock=sim.clock, offload=Stuck)
    EagerOffload.workers = []
    task = asyncio.ensure_future(sync.sync_catalog(full=True))
    await busy.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert EagerOffload.workers
    for worker in EagerOffload.workers:
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)
    kept = len(await live_ids(store))
    assert kept < RECORDS  # what was written stays written, once
    sync.offload = EagerOffload
    assert (await sync.sync_catalog(full=True)).added == RECORDS - kept
    assert await live_ids(store) == {str(i) for i in sim.catalog.ids()}
