"""A big download across schedule changes: it slows down, pauses, resumes, and is byte-exact.

The governor is wired to the engine by the daemon's own `GovernedDownloads`: each throttle change
sets the shared bucket's rate, and a pause or its end holds or releases the whole downloader, apart
from the user's own pause.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pooldaemon.bridges import GovernedDownloads
from pooldaemon.downloader.engine import Engine
from pooldaemon.governor import Governor
from pooldaemon.informed_config import GigConfig, ScheduleWindow
from pooldaemon.sim.media import MediaStore
from pooldaemon.store import jobs as store_jobs
from tests.conftest import eventually

from .conftest import (
    CHUNK,
    MIB,
    EngineHarness,
    HeldThreads,
    PartSpec,
    ServerFactory,
    make_config,
    requested_ranges,
)

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


async def until_received(engine: Engine, job_id: int, at_least: int) -> float:
    """Seconds until the engine's live count (bytes received, not yet checkpointed) reaches
    `at_least`: the store's count moves only once a second, at the checkpoint timer's tick."""
    start = time.monotonic()
    while (await engine.get_job(job_id))["bytes_done"] < at_least:
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
    governed = GovernedDownloads(governor, engine, harness.events)
    await governed.start()
    try:
        job_id = await harness.get("1", engine)
        await until_bytes(harness, job_id, 24 * MIB)

        clock.now = datetime(2026, 6, 3, 1, 0, tzinfo=BERLIN)  # into the night window
        while engine.bucket.rate_bps != SLOW:
            await asyncio.sleep(0.01)
        mark = (await engine.get_job(job_id))["bytes_done"]
        took = await until_received(engine, job_id, mark + 24 * MIB)
        # 24 MiB at 64 MiB/s take 0.4 s; at 16 MiB/s 1.5 s, less what was already in flight
        # (a 4 MiB chunk per connection).
        assert took >= 0.9, took

        clock.now = datetime(2026, 6, 3, 18, 0, tzinfo=BERLIN)  # no downloads
        changed = time.monotonic()
        while engine.held is None:
            await asyncio.sleep(0.01)
        await harness.wait(job_id, "queued", timeout=5)
        assert time.monotonic() - changed < 5  # transfers stopped and checkpointed
        assert (await store_jobs.get_job(harness.store, job_id))["state"] == "queued"
        assert not engine.paused  # the user's pause is theirs alone
        held = await bytes_done(harness, job_id)
        calls = srv.log.calls["download"]
        assert governor.status()["schedule"]["paused"] is True

        clock.now = datetime(2026, 6, 3, 20, 0, tzinfo=BERLIN)  # after the window
        job = await harness.wait(job_id, "done", "failed", timeout=60)
        assert job["state"] == "done", job["error"]
        assert srv.log.calls["download"] > calls
        assert held < SIZE
    finally:
        await governed.stop()
    digest = hashlib.sha256()
    with Path(job["path"]).open("rb") as handle:
        while block := handle.read(4 * MIB):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(media.get("big")).hexdigest()
    assert job["attempts"] <= 1  # the pause cost no attempt


async def test_a_hold_and_the_users_pause_do_not_undo_each_other(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("small", "mp3", "small", 2 * MIB)
    srv = await servers()
    harness.pool.add("1", [PartSpec("main", "small", [("s", srv)])])
    harness.pool.add("2", [PartSpec("main", "small", [("s", srv)])])
    engine = await harness.start(make_config(library))

    # A window with no downloads: the user's resume does not start the job.
    await engine.hold("schedule every day 18:00-20:00")
    first = await harness.get("1", engine)
    await engine.pause_all()
    await engine.resume_all()
    assert engine.held == "schedule every day 18:00-20:00"
    assert engine.waiting_reason() == "schedule every day 18:00-20:00"
    # Half a second of scheduler passes (the resume woke it): the job stays queued.
    for _ in range(50):
        await asyncio.sleep(0.01)
        assert (await store_jobs.get_job(harness.store, first))["state"] == "queued"
    assert srv.log.calls["download"] == 0
    engine.release()
    assert (await harness.wait(first, "done", "failed"))["state"] == "done"

    # The user paused: the end of a window does not start anything.
    await engine.pause_all()
    await engine.hold("gig: rekordbox")
    second = await harness.get("2", engine)
    engine.release()
    assert engine.waiting_reason() == "downloads paused (poolctl resume)"
    for _ in range(50):
        await asyncio.sleep(0.01)
        assert (await store_jobs.get_job(harness.store, second))["state"] == "queued"
    await engine.resume_all()
    assert (await harness.wait(second, "done", "failed"))["state"] == "done"


async def test_a_hold_while_a_chunks_last_write_waits_for_a_thread_keeps_its_bytes(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    # What a loaded machine did by chance: the last bytes of a chunk all arrived, their write
    # waited for a free thread, and the hold stopped the connection there. The hold's checkpoint
    # must claim those bytes only once they are in the file; the resumed job then finishes
    # without asking for them again, byte-exact.
    size = 2 * CHUNK + 1000  # the last chunk is a 1000-byte tail, written when the body ends
    media.add_generated("tail", "mp3", "tail", size)
    srv = await servers()
    srv.faults.stall(after_bytes=0, skip=2, count=1)  # the tail's answer waits after its headers
    harness.pool.add("1", [PartSpec("main", "tail", [("s", srv)])])
    config = make_config(library, connections_per_download=1, stall_timeout_s=30.0)
    engine = await harness.start(config)
    threads = HeldThreads(workers=2)
    asyncio.get_running_loop().set_default_executor(threads)
    tail = f"bytes={2 * CHUNK}-{size - 1}"
    job_id = await harness.get("1", engine)
    try:
        await eventually(
            lambda: requested_ranges(srv)[-1:] == [tail] and engine.checkpointer.streaming == 1,
            deadline_s=20,
        )
        await threads.hold()
        srv.faults.release_stalls()
        await eventually(lambda: threads.queued >= 1)  # the tail's write waits for a thread
        hold = asyncio.ensure_future(engine.hold("gig: rekordbox"))
        await eventually(lambda: engine.checkpointer.streaming == 0)  # the stop reached it
    finally:
        threads.release()
    assert await hold == [job_id]
    engine.release()
    job = await harness.wait(job_id, "done", "failed", timeout=60)
    assert job["state"] == "done", job["error"]
    assert Path(job["path"]).read_bytes() == media.get("tail")
    assert requested_ranges(srv).count(tail) == 1


async def test_a_hold_that_lands_as_chunks_complete_resumes_with_ranges(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    # Lifting the limit and holding at once lets every connection read to the end of its chunk
    # as it is stopped: the checkpoint then holds whole chunks, which must not be asked for
    # again with a Range starting past their end (a server answers that with 200).
    media.add_generated("mid", "mp3", "mid", 8 * MIB)
    srv = await servers()
    harness.pool.add("1", [PartSpec("main", "mid", [("s", srv)])])
    config = make_config(library, chunk_size_bytes=256 * 1024, bandwidth_limit_bps=2 * MIB)
    engine = await harness.start(config)
    job_id = await harness.get("1", engine)
    await until_bytes(harness, job_id, MIB)
    engine.set_rate(0)
    await engine.hold("gig: rekordbox")
    assert (await store_jobs.get_job(harness.store, job_id))["state"] == "queued"
    engine.set_rate(2 * MIB)
    engine.release()
    job = await harness.wait(job_id, "done", "failed", timeout=60)
    assert job["state"] == "done", job["error"]
    assert job["attempts"] == 0, job["error"]
    assert (
        hashlib.sha256(Path(job["path"]).read_bytes()).hexdigest()
        == hashlib.sha256(media.get("mid")).hexdigest()
    )
