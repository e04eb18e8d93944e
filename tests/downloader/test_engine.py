"""The engine end to end: jobs, states, events, pause/resume/cancel/retry, library, outbox."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import mutagen.id3
import pytest

from pooldaemon.errors import Conflict, NotFound, Unsupported
from pooldaemon.models import JobState, Request
from pooldaemon.sim.media import MediaStore
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store import outbox as store_outbox
from pooldaemon.store import parts as store_parts
from tests.conftest import eventually

from .conftest import (
    CHUNK,
    KIB,
    MIB,
    EngineHarness,
    PartSpec,
    ServerFactory,
    bytes_requested,
    library_checksum,
    library_files,
    make_config,
    scheduler_ran,
    wait_bytes,
)

SIZE = 6 * CHUNK + 321


async def add_track(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    item: str = "1",
    *,
    key: str | None = None,
    size: int = SIZE,
) -> Any:
    key = key or f"m{item}"
    media.add_generated(key, "mp3", key, size)
    srv = await servers()
    harness.pool.add(item, [PartSpec("main", key, [("s", srv)])])
    return srv


async def test_downloads_a_track_into_the_library(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    await add_track(harness, servers, media)
    engine = await harness.start()
    job = await harness.wait(await harness.get("1", engine))
    assert job["state"] == "done", job["error"]
    files = library_files(library)
    assert [p.relative_to(library).as_posix() for p in files] == ["testpool/Artist - Track 1.mp3"]
    assert files[0].read_bytes() == media.get("m1")
    assert job["path"] == str(files[0]) and job["bytes_done"] == job["bytes_total"] == SIZE
    entries = await store_library.entries_for_item(harness.store, "testpool", "1")
    assert len(entries) == 1 and entries[0]["state"] == "downloaded"
    assert entries[0]["sha256"] == library_checksum(media.get("m1"))
    # The work folder goes once the file is in place, just after "done" is recorded.
    work = library / ".pooldaemon" / f"job-{job['id']}"
    await eventually(lambda: not work.exists())


async def test_a_request_for_a_known_item_points_at_its_job(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    srv = await add_track(harness, servers, media)
    engine = await harness.start()
    first, created = await engine.submit(Request("testpool", "1"), "request")
    again, created_again = await engine.submit(Request("testpool", "1"), "drop")
    assert created and not created_again and again["id"] == first["id"]
    await harness.wait(first["id"])
    later, created_later = await engine.submit(Request("testpool", "1"), "auto")
    assert not created_later and later["id"] == first["id"] and later["state"] == "done"
    assert srv.log.calls["download"] == 7
    assert harness.pool.plan_calls["1"] == 1


async def test_unknown_pools_and_kinds_are_refused(harness: EngineHarness) -> None:
    engine = await harness.start()
    with pytest.raises(NotFound):
        await engine.submit(Request("nosuch", "1"), "request")
    with pytest.raises(Unsupported):
        await engine.submit(Request("testpool", "9", kind="playlist"), "request")


async def test_redownload_asks_the_pool_then_downloads_again(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    await add_track(harness, servers, media)
    engine = await harness.start()
    first = await harness.wait(await harness.get("1", engine))
    request = Request("testpool", "1", redownload=True, reason="file was corrupt")
    job, created = await engine.submit(request, "request")
    assert created and job["id"] != first["id"] and job["origin"] == "redownload"
    assert harness.pool.redownloads == [(["1"], "file was corrupt")]
    second = await harness.wait(job["id"])
    assert second["state"] == "done", second["error"]
    # The same bytes at the same name: adopted, not a " (2)" copy.
    assert second["path"] == first["path"]
    assert len(library_files(library)) == 1


async def test_redownload_of_a_job_still_on_its_way_spends_no_pool_call(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    await add_track(harness, servers, media)
    engine = await harness.start()
    await engine.pause_all()
    first, _ = await engine.submit(Request("testpool", "1"), "request")
    again, created = await engine.submit(
        Request("testpool", "1", redownload=True, reason="x"), "request"
    )
    assert not created and again["id"] == first["id"]
    assert harness.pool.redownloads == []


async def test_a_name_taken_by_another_file_gets_a_number(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    await add_track(harness, servers, media)
    (library / "testpool").mkdir()
    other = library / "testpool" / "Artist - Track 1.mp3"
    other.write_bytes(b"someone else's file")
    engine = await harness.start()
    job = await harness.wait(await harness.get("1", engine))
    assert Path(job["path"]).name == "Artist - Track 1 (2).mp3"
    assert other.read_bytes() == b"someone else's file"


async def test_tags_are_merged_into_a_copy_never_clobbered(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    library: Path,
    tmp_path: Path,
) -> None:
    media.add_generated("raw", "mp3", "raw", 300 * KIB)
    source = tmp_path / "source.mp3"
    source.write_bytes(media.get("raw"))
    tags = mutagen.id3.ID3()
    tags.add(mutagen.id3.TIT2(encoding=3, text=["Title The Pool Wrote"]))
    tags.save(source)
    media.add_bytes("tagged", source.read_bytes(), content_type="audio/mpeg")
    srv = await servers()
    harness.pool.add(
        "1",
        [PartSpec("main", "tagged", [("s", srv)])],
        meta={"artist": "Catalog Artist", "title": "Catalog Title", "bpm": 128},
    )
    engine = await harness.start(make_config(library, write_tags=True))
    job = await harness.wait(await harness.get("1", engine))
    assert job["state"] == "done", job["error"]
    written = mutagen.id3.ID3(job["path"])
    assert written["TIT2"].text == ["Title The Pool Wrote"]  # kept
    assert written["TPE1"].text == ["Catalog Artist"]  # added
    assert written["TBPM"].text == ["128"]
    # The audio after the tag is what the pool served.
    served = media.get("tagged")
    assert Path(job["path"]).read_bytes().endswith(served[-200 * KIB :])
    entries = await store_library.entries_for_item(harness.store, "testpool", "1")
    assert entries[0]["sha256"] == library_checksum(Path(job["path"]).read_bytes())


async def test_every_state_change_and_progress_is_an_event(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    srv = await add_track(harness, servers, media, size=4 * MIB)
    srv.faults.throttle_bps = 8 * MIB
    engine = await harness.start()
    events: list[dict[str, Any]] = []

    async def collect() -> None:
        async with harness.events.subscribe() as stream:
            async for event in stream:
                events.append(event)

    collector = asyncio.create_task(collect())
    async with asyncio.timeout(10):
        while not harness.events.subscribers:
            await asyncio.sleep(0.005)
    job_id = await harness.get("1", engine)
    await harness.wait(job_id)
    async with asyncio.timeout(10):  # the bus delivers after the store says done
        while not [e for e in events if e["type"] == "job.state" and e["job"]["state"] == "done"]:
            await asyncio.sleep(0.005)
    collector.cancel()
    states = [e["job"]["state"] for e in events if e["type"] == "job.state"]
    assert states == ["queued", "resolving", "downloading", "verifying", "done"]
    progress = [e for e in events if e["type"] == "job.progress"]
    assert progress and all(e["job"] == job_id and e["bytes_total"] == 4 * MIB for e in progress)
    done = [e["bytes_done"] for e in progress]
    assert done == sorted(done) and 0 < done[-1] <= 4 * MIB


async def test_pause_keeps_checkpoints_and_resume_finishes(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    srv = await add_track(harness, servers, media, size=16 * CHUNK)
    srv.faults.throttle_bps = 4 * MIB
    engine = await harness.start(make_config(library, connections_per_download=2))
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, 4 * CHUNK)
    paused = await engine.pause(job_id)
    assert paused["state"] == "paused"
    durable = (await store_jobs.get_job(harness.store, job_id))["bytes_done"]
    assert durable >= 3 * CHUNK
    before = bytes_requested([srv], 16 * CHUNK)
    calls = srv.log.calls["download"]
    await scheduler_ran(engine)
    assert srv.log.calls["download"] == calls  # paused means no requests
    assert (await store_jobs.get_job(harness.store, job_id))["state"] == "paused"
    srv.faults.throttle_bps = None
    resumed = await engine.resume(job_id)
    assert resumed["state"] == "queued"
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert Path(job["path"]).read_bytes() == media.get("m1")
    # What was fetched after resuming is what was not durable.
    assert bytes_requested([srv], 16 * CHUNK) - before == 16 * CHUNK - durable


async def test_cancel_forgets_the_partial_and_retry_starts_over(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    srv = await add_track(harness, servers, media, size=16 * CHUNK)
    srv.faults.throttle_bps = 4 * MIB
    engine = await harness.start()
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, 2 * CHUNK)
    cancelled = await engine.cancel(job_id)
    assert cancelled["state"] == "cancelled"
    assert not (library / ".pooldaemon" / f"job-{job_id}").exists()
    assert await store_parts.load_parts(harness.store, job_id) == {}
    assert library_files(library) == []
    with pytest.raises(Conflict):
        await engine.resume(job_id)
    srv.faults.throttle_bps = None
    retried = await engine.retry(job_id)
    assert retried["state"] == "queued" and retried["attempts"] == 0
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert Path(job["path"]).read_bytes() == media.get("m1")


async def test_pause_all_holds_every_job_until_resume_all(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    srv = await add_track(harness, servers, media, size=16 * CHUNK)
    srv.faults.throttle_bps = 4 * MIB
    engine = await harness.start()
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, CHUNK)
    await engine.pause_all()
    assert engine.paused
    job = await store_jobs.get_job(harness.store, job_id)
    assert job["state"] == "queued"  # back in the queue, checkpointed, not started
    await scheduler_ran(engine)
    assert (await store_jobs.get_job(harness.store, job_id))["state"] == "queued"
    srv.faults.throttle_bps = None
    await engine.resume_all()
    assert (await harness.wait(job_id))["state"] == "done"


async def test_no_more_than_max_active_downloads_at_once(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    for item in ("1", "2", "3"):
        srv = await add_track(harness, servers, media, item, size=2 * CHUNK)
        srv.faults.throttle_bps = 8 * MIB
    engine = await harness.start(make_config(library, max_active_downloads=2))
    active: set[int] = set()
    most = 0

    async def watch() -> None:
        nonlocal most
        async with harness.events.subscribe() as stream:
            async for event in stream:
                if event["type"] != "job.state":
                    continue
                job = event["job"]
                if job["state"] in ("resolving", "downloading", "verifying"):
                    active.add(job["id"])
                else:
                    active.discard(job["id"])
                most = max(most, len(active))

    watcher = asyncio.create_task(watch())
    async with asyncio.timeout(10):
        while not harness.events.subscribers:
            await asyncio.sleep(0.005)
    ids = [await harness.get(item, engine) for item in ("1", "2", "3")]
    for job_id in ids:
        assert (await harness.wait(job_id))["state"] == "done"
    watcher.cancel()
    assert most == 2


async def test_a_failing_job_fails_by_name_and_retry_recovers(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    srv = await servers()
    harness.pool.add("1", [PartSpec("main", "late", [("dc03", srv)], size=None)])
    engine = await harness.start()
    job = await harness.wait(await harness.get("1", engine))
    assert job["state"] == "failed"
    assert job["attempts"] == 3
    assert job["error"] == (
        "after 3 attempts: part main: every server failed; last: dc03: HTTP 404"
    )
    # Renewed once per attempt before giving up the attempt; no tight loop.
    assert harness.pool.renew_calls["1"] == 3
    assert srv.log.calls["download"] == 6
    media.add_generated("late", "mp3", "late", SIZE)
    retried = await engine.retry(job["id"])
    assert retried["attempts"] == 0 and retried["error"] is None
    job = await harness.wait(job["id"])
    assert job["state"] == "done", job["error"]


async def test_a_checksum_mismatch_is_never_finished(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("a", "mp3", "a", SIZE)
    srv = await servers()
    harness.pool.add("1", [PartSpec("main", "a", [("s", srv)], sha256="0" * 64)])
    harness.pool.add(
        "2", [PartSpec("main", "a", [("s", srv)], md5=hashlib.md5(media.get("a")).hexdigest())]
    )
    harness.pool.add("3", [PartSpec("main", "a", [("s", srv)], md5="0" * 32)])
    engine = await harness.start()
    bad = await harness.wait(await harness.get("1", engine))
    assert bad["state"] == "failed" and "SHA-256" in bad["error"]
    bad_md5 = await harness.wait(await harness.get("3", engine))
    assert bad_md5["state"] == "failed" and "MD5" in bad_md5["error"]
    assert library_files(library) == []
    good = await harness.wait(await harness.get("2", engine))
    assert good["state"] == "done", good["error"]


async def test_content_that_is_not_what_it_claims_is_refused(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("wav", "wav", "w", SIZE)
    srv = await servers()
    harness.pool.add("1", [PartSpec("main", "wav", [("s", srv)], extension="mp3")])
    engine = await harness.start()
    job = await harness.wait(await harness.get("1", engine))
    assert job["state"] == "failed" and "is wav, not .mp3" in job["error"]
    assert library_files(library) == []


async def test_owed_calls_are_delivered_until_acknowledged(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    await add_track(harness, servers, media)
    harness.pool.outbox = True
    harness.pool.fail_deliveries = 2
    engine = await harness.start()
    job = await harness.wait(await harness.get("1", engine))
    assert job["state"] == "done"
    deadline = time.monotonic() + 10
    # Delivered (the pool saw it) and then acknowledged in the store: two steps, wait for both.
    while not harness.pool.delivered or await store_outbox.owed(harness.store):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert [c.payload for c in harness.pool.delivered] == [{"item": "1", "dl_token": "t0"}]
    assert await store_outbox.owed(harness.store) == []
    row = await harness.store.fetchone("SELECT attempts, done_at FROM outbox")
    assert row["attempts"] == 2 and row["done_at"] is not None


async def test_owed_calls_survive_a_restart(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    await add_track(harness, servers, media)
    harness.pool.outbox = True
    harness.pool.fail_deliveries = 10**6
    engine = await harness.start()
    await harness.wait(await harness.get("1", engine))
    # The call was recorded with the job's "done" (one transaction).
    assert len(await store_outbox.owed(harness.store)) == 1
    await engine.stop()
    harness.pool.fail_deliveries = 0
    await harness.start()
    deadline = time.monotonic() + 10
    while not harness.pool.delivered:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert len(harness.pool.delivered) == 1


async def test_stop_checkpoints_and_a_new_engine_finishes(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    srv = await add_track(harness, servers, media, size=16 * CHUNK)
    srv.faults.throttle_bps = 4 * MIB
    config = make_config(library, connections_per_download=2)
    engine = await harness.start(config)
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, 3 * CHUNK)
    await engine.stop(5.0)
    job = await store_jobs.get_job(harness.store, job_id)
    assert job["state"] == "queued"
    durable = job["bytes_done"]
    before = bytes_requested([srv], 16 * CHUNK)
    srv.faults.throttle_bps = None
    await harness.start(config)
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert Path(job["path"]).read_bytes() == media.get("m1")
    assert bytes_requested([srv], 16 * CHUNK) - before == 16 * CHUNK - durable


async def test_jobs_interrupted_by_a_crash_go_back_to_the_queue(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    await add_track(harness, servers, media)
    job, _ = await store_jobs.create_job(harness.store, Request("testpool", "1"), origin="request")
    for state in (JobState.RESOLVING, JobState.DOWNLOADING):
        await store_jobs.transition(harness.store, job["id"], state)
    await harness.start()
    assert (await harness.wait(job["id"]))["state"] == "done"


async def test_a_recently_finished_file_that_vanished_is_downloaded_again(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    await add_track(harness, servers, media)
    engine = await harness.start()
    job = await harness.wait(await harness.get("1", engine))
    await engine.stop()
    Path(job["path"]).unlink()  # the rename's directory entry never reached the disk
    await harness.start()
    entries = await store_library.entries_for_item(harness.store, "testpool", "1")
    assert entries[0]["state"] == "lost"
    again = await harness.wait(job["id"], "done", "failed")
    assert again["state"] == "done"
    assert Path(again["path"]).read_bytes() == media.get("m1")


async def test_free_space_is_checked_before_a_job_starts(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    srv = await add_track(harness, servers, media)
    engine = await harness.start(make_config(library, min_free_space_bytes=10**15))
    job = await harness.wait(await harness.get("1", engine))
    assert job["state"] == "paused" and job["error_code"] == "disk_full"
    assert job["error"].startswith("disk full: need ") and " on /" in job["error"]
    assert srv.log.calls["download"] == 0
    assert await engine.check_disk_space() == []  # still no room: stays paused


async def test_a_download_sent_by_email_is_done_without_a_file(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    await add_track(harness, servers, media)
    factory = harness.pool.items["1"]
    harness.pool.items["1"] = lambda n: replace(factory(n), parts=[], sent_by_email=True)
    engine = await harness.start()
    job = await harness.wait(await harness.get("1", engine))
    assert job["state"] == "done" and job["error"] == "the pool sent this download by e-mail"
    assert library_files(library) == []


async def test_live_progress_and_rate_while_downloading(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore
) -> None:
    srv = await add_track(harness, servers, media, size=16 * CHUNK)
    srv.faults.throttle_bps = 2 * MIB
    engine = await harness.start()
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, CHUNK)
    live = await engine.get_job(job_id)
    assert live["state"] == "downloading" and live["bytes_total"] == 16 * CHUNK
    assert live["bytes_done"] >= CHUNK
    deadline = time.monotonic() + 5
    while engine.rate_bps() == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert engine.job_rate(job_id) > 0
    srv.faults.throttle_bps = None
    await harness.wait(job_id)
    assert engine.rate_bps() == 0
