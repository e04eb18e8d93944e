"""PoolScheduler: which jobs exist, how their triggers fire, and what a job does when called.

Nothing here sleeps: jobs are called directly and triggers are asked for their next fire time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pooldaemon.events import EventBus
from pooldaemon.scheduler import PoolScheduler, jitter_for
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.store import pools as pool_rows
from pooldaemon.store.db import Store
from pooldaemon.sync import PoolSync
from tests.conftest import crateq_adapter


@pytest.fixture
async def sim() -> AsyncIterator[CrateQSim]:
    async with CrateQSim(records=120, seed="scheduler") as server:
        yield server


def make_sync(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, name: str = "crateq", **cfg: Any
) -> PoolSync:
    cfg = {"catalog_interval": "6h", "queue_interval": "2m", **cfg}
    adapter = crateq_adapter(sim, session, name, **cfg)
    return PoolSync(name, adapter, store, EventBus(), clock=sim.clock)


@pytest.fixture
async def scheduler(sim: CrateQSim) -> AsyncIterator[PoolScheduler]:
    sched = PoolScheduler(clock=sim.clock, renew_margin_s=300)
    await sched.start(paused=True)  # triggers are computed, nothing runs
    yield sched
    await sched.stop()


def jobs_by_id(scheduler: PoolScheduler) -> dict[str, Any]:
    return {job.id: job for job in scheduler.get_jobs()}


async def test_each_enabled_pool_gets_its_jobs_with_coalesce_and_one_instance(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    scheduler.add_pool(make_sync(sim, session, store))
    scheduler.add_pool(make_sync(sim, session, store, name="off", enabled=False))
    jobs = jobs_by_id(scheduler)
    assert set(jobs) == {"crateq:catalog", "crateq:full", "crateq:queue", "crateq:lookups"}
    expected = {
        "crateq:catalog": 6 * 3600,
        "crateq:full": 86400,
        "crateq:queue": 120,
        "crateq:lookups": 86400,
    }
    for job_id, every in expected.items():
        job = jobs[job_id]
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(seconds=every)
        assert job.trigger.jitter == jitter_for(every) > 0
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == every
        assert job.args == ("crateq",)


async def test_catalog_and_queue_start_soon_then_follow_their_interval_with_jitter(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    now = datetime.fromtimestamp(sim.clock(), UTC)
    scheduler.add_pool(make_sync(sim, session, store))
    jobs = jobs_by_id(scheduler)
    for job_id in ("crateq:catalog", "crateq:queue", "crateq:lookups"):
        first = jobs[job_id].next_run_time
        assert now <= first <= now + timedelta(seconds=2 * scheduler.start_delay_s + 1)
    # The daily full pass waits a day.
    assert jobs["crateq:full"].next_run_time >= now + timedelta(hours=23)
    queue = jobs["crateq:queue"].trigger
    fired = datetime(2030, 1, 1, tzinfo=UTC)
    for _ in range(20):
        later = queue.get_next_fire_time(fired, fired)
        assert fired + timedelta(seconds=120) <= later <= fired + timedelta(seconds=132)


async def test_intervals_below_the_floor_are_raised(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    scheduler.add_pool(make_sync(sim, session, store), catalog_interval_s=60, queue_interval_s=5)
    jobs = jobs_by_id(scheduler)
    assert jobs["crateq:catalog"].trigger.interval == timedelta(minutes=15)
    assert jobs["crateq:queue"].trigger.interval == timedelta(seconds=60)


async def test_jobs_do_the_work_when_called(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    scheduler.add_pool(make_sync(sim, session, store))
    sim.add_to_queue(sim.catalog.ids()[:2])
    await scheduler.catalog_job("crateq")
    await scheduler.queue_job("crateq")
    await scheduler.lookups_job("crateq")
    count = await store.fetchone("SELECT COUNT(*) FROM tracks")
    assert count[0] == 120
    assert len(await store.fetchall("SELECT * FROM remote_queue")) == 2
    assert len(await store.fetchall("SELECT * FROM lookups")) > 40
    status = (await pool_rows.pool_rows(store))["crateq"]
    assert status["last_catalog_sync"] and status["last_queue_sync"]
    sim.catalog.remove(sim.catalog.ids()[:3])
    await scheduler.full_catalog_job("crateq")
    removed = await store.fetchone("SELECT COUNT(*) FROM tracks WHERE removed = 1")
    assert removed[0] == 3


async def test_a_failing_job_never_raises_and_its_error_is_recorded(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    scheduler.add_pool(make_sync(sim, session, store))
    sim.faults.fail(500, count=None, message="maintenance")
    await scheduler.catalog_job("crateq")
    await scheduler.queue_job("crateq")
    await scheduler.lookups_job("crateq")
    status = (await pool_rows.pool_rows(store))["crateq"]
    assert "maintenance" in status["last_error"]
    assert status["failing_since"] is not None
    assert scheduler.scheduler.running
    await scheduler.catalog_job("unknown-pool")  # a pool removed meanwhile: nothing happens


async def test_token_renewal_is_planned_ahead_of_exp(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    sync = make_sync(sim, session, store)
    scheduler.add_pool(sync)
    assert scheduler.scheduler.get_job("crateq:renew") is None  # no token yet
    await scheduler.queue_job("crateq")  # signs in
    expires_at = sync.adapter.token_expires_at()
    assert expires_at is not None
    job = scheduler.scheduler.get_job("crateq:renew")
    assert isinstance(job.trigger, DateTrigger)
    assert job.next_run_time == datetime.fromtimestamp(expires_at - 300, UTC)
    assert job.misfire_grace_time is None and job.coalesce is True
    sim.advance(3600 - 300)
    await scheduler.renew_job("crateq")
    assert sim.calls["Auth/Login"] == 2
    renewed = sync.adapter.token_expires_at()
    assert renewed is not None and renewed > expires_at
    job = scheduler.scheduler.get_job("crateq:renew")
    assert job.next_run_time == datetime.fromtimestamp(renewed - 300, UTC)


async def test_a_short_lived_token_is_renewed_late_in_its_life(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    sim.jwt_lifetime_s = 300  # five minutes, like Promo Only's tokens
    sync = make_sync(sim, session, store)
    scheduler.add_pool(sync)
    await scheduler.queue_job("crateq")
    expires_at = sync.adapter.token_expires_at()
    assert expires_at is not None
    when = scheduler.renewal_time("crateq")
    assert when is not None
    assert expires_at - 61 <= when <= expires_at - 59  # a fifth of its life before exp


async def test_failed_renewals_back_off_in_minutes(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store, scheduler: PoolScheduler
) -> None:
    scheduler.add_pool(make_sync(sim, session, store))
    await scheduler.queue_job("crateq")
    sim.account_status = "expired"
    delays = []
    for _ in range(3):
        before = sim.clock()
        await scheduler.renew_job("crateq")
        job = scheduler.scheduler.get_job("crateq:renew")
        delays.append(round(job.next_run_time.timestamp() - before))
    assert delays == [60, 120, 240]
    status = (await pool_rows.pool_rows(store))["crateq"]
    assert status["blocked_reason"] == "crateq: account is expired"
    sim.account_status = "active"
    await scheduler.renew_job("crateq")
    job = scheduler.scheduler.get_job("crateq:renew")
    assert job.next_run_time.timestamp() > sim.clock() + 3000


async def test_pools_given_before_start_are_scheduled_when_it_starts(
    sim: CrateQSim, session: aiohttp.ClientSession, store: Store
) -> None:
    sched = PoolScheduler(clock=sim.clock, syncs=[make_sync(sim, session, store)])
    await sched.start(paused=True)
    try:
        now = datetime.fromtimestamp(sim.clock(), UTC)
        jobs = jobs_by_id(sched)
        assert set(jobs) == {"crateq:catalog", "crateq:full", "crateq:queue", "crateq:lookups"}
        assert jobs["crateq:queue"].next_run_time <= now + timedelta(seconds=11)
    finally:
        await sched.stop()
