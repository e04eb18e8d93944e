"""A big download across schedule changes: it slows down, pauses, resumes, and is byte-exact.

The governor is wired to the engine the way the daemon does it: each throttle change sets the
shared bucket's rate, and a pause or its end holds or releases the whole downloader.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pooldaemon.governor import Governor, Throttle
from pooldaemon.informed_config import GigConfig, ScheduleWindow
from pooldaemon.sim.media import MediaStore
from pooldaemon.store import jobs as store_jobs

from .conftest import MIB, EngineHarness, PartSpec, ServerFactory, make_config

BERLIN = ZoneInfo("Europe/Berlin")
SIZE = 256 * MIB
FAST = 64 * MIB
SLOW = 16 * MIB


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def bytes_done(harness: EngineHarness, job_id: int) -> int:
    return int((await store_jobs.get_job(harness.store, job_id))["bytes_done"])


async def until_bytes(harness: EngineHarness, job_id: int, at_least: int) -> float:
    start = time.monotonic()
    while await bytes_done(harness, job_id) < at_least:
        assert time.monotonic() - start < 60, "no progress"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_a_download_across_windows_slows_pauses_resumes_and_is_exact(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("big", "mp3", "big", SIZE)
    srv = await servers()
    harness.pool.add("1", [PartSpec("main", "big", [("s", srv)])])
    config = make_config(
        library, chunk_size_bytes=4 * MIB, bandwidth_limit_bps=FAST, stall_timeout_s=30.0
    )
    engine = await harness.start(config)
    night = ScheduleWindow.model_validate(
        {"from": "01:00", "to": "07:00", "bandwidth_limit": str(SLOW)}
    )
    evening = ScheduleWindow.model_validate({"from": "18:00", "to": "20:00", "downloads": False})
    clock = Clock(datetime(2026, 6, 3, 0, 59, tzinfo=BERLIN))
    governor = Governor(
        bandwidth_limit_bps=FAST,
        schedule=[night, evening],
        gig=GigConfig(apps=[]),
        clock=clock,
        tick_s=0.05,
    )
    holds: list[asyncio.Task[object]] = []

    def apply(throttle: Throttle) -> None:
        # The daemon's wiring: the rate at once; a pause or resume as an owned task.
        engine.bucket.set_rate(throttle.limit_bps or 0)
        if throttle.paused != engine.paused:
            holds.append(
                asyncio.create_task(engine.pause_all() if throttle.paused else engine.resume_all())
            )

    governor.subscribe(apply)
    governor.start()
    try:
        job_id = await harness.get("1", engine)
        await until_bytes(harness, job_id, 24 * MIB)

        clock.now = datetime(2026, 6, 3, 1, 0, tzinfo=BERLIN)  # into the night window
        while engine.bucket.rate_bps != SLOW:
            await asyncio.sleep(0.01)
        mark = await bytes_done(harness, job_id)
        took = await until_bytes(harness, job_id, mark + 24 * MIB)
        # 24 MiB at 64 MiB/s take 0.4 s; at 16 MiB/s 1.5 s, less what was already in flight
        # (a 4 MiB chunk per connection).
        assert took >= 0.9, took

        clock.now = datetime(2026, 6, 3, 18, 0, tzinfo=BERLIN)  # no downloads
        changed = time.monotonic()
        while not engine.paused:
            await asyncio.sleep(0.01)
        await asyncio.gather(*holds)
        assert time.monotonic() - changed < 5  # transfers stopped and checkpointed
        assert (await store_jobs.get_job(harness.store, job_id))["state"] == "queued"
        held = await bytes_done(harness, job_id)
        calls = srv.log.calls["download"]
        assert governor.status()["schedule"]["paused"] is True

        clock.now = datetime(2026, 6, 3, 20, 0, tzinfo=BERLIN)  # after the window
        job = await harness.wait(job_id, "done", "failed", timeout=60)
        assert job["state"] == "done", job["error"]
        assert srv.log.calls["download"] > calls
        assert held < SIZE
    finally:
        await governor.stop()
        await asyncio.gather(*holds)
    digest = hashlib.sha256()
    with Path(job["path"]).open("rb") as handle:
        while block := handle.read(4 * MIB):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(media.get("big")).hexdigest()
    assert job["attempts"] <= 1  # the pause cost no attempt
