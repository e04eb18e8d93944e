"""docs/reliability.md §2 through the engine: HTTP faults, tokens, disk, names and archives.

Each test runs real download servers with switched-on faults and checks the oracle: the file in
the library is byte-identical to the source (or there is none, with a clear reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pooldaemon.models import DownloadPlan
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.media import MediaStore, mp3_bytes, zip_bytes
from pooldaemon.store import health as store_health
from pooldaemon.store import jobs as store_jobs

from .conftest import (
    CHUNK,
    KIB,
    MIB,
    EngineHarness,
    PartSpec,
    ServerFactory,
    TokenCheck,
    bytes_requested,
    library_files,
    make_config,
    requested_ranges,
    scheduler_ran,
    wait_bytes,
)

SIZE = 6 * CHUNK + 999


async def setup_track(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    names: tuple[str, ...] = ("s",),
    *,
    size: int | str | None = "auto",
    item: str = "1",
) -> list[DownloadServer]:
    media.add_generated("a", "mp3", "a", SIZE)
    started = [await servers() for _ in names]
    harness.pool.add(
        item, [PartSpec("main", "a", list(zip(names, started, strict=True)), size=size)]
    )
    return started


async def run_one(harness: EngineHarness, **config: object) -> dict[str, object]:
    engine = await harness.start(make_config(harness.library, **config))
    job_id = await harness.get("1", engine)
    return await harness.wait(job_id)


def the_file(library: Path) -> bytes:
    files = library_files(library)
    assert len(files) == 1, files
    return files[0].read_bytes()


# -- H1: connection closed mid-body -----------------------------------------------------------


async def test_h1_a_cut_chunk_resumes_at_its_durable_offset_with_if_range(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    srv.faults.drop(after_bytes=int(CHUNK * 0.37), count=1, skip=1)
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    entries = srv.log.for_endpoint("download")
    resumed = [
        e for e in entries if int(e.headers["Range"].split("=")[1].split("-")[0]) % CHUNK != 0
    ]
    assert len(resumed) == 1
    assert resumed[0].headers["If-Range"] == media.etag("a")
    # The cut chunk's first 37% is not fetched again.
    assert bytes_requested([srv], SIZE) < SIZE + CHUNK


# -- H2: Range ignored ----------------------------------------------------------------------


async def test_h2_a_full_body_is_never_overlaid_and_the_chunk_goes_elsewhere(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    _good, norange = await setup_track(harness, servers, media, ("good", "norange"))
    norange.faults.ignore_range()
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert job["attempts"] == 0  # no retries spent on it
    assert the_file(library) == media.get("a")
    assert norange.log.calls["download"] >= 1
    health = await store_health.load_health(harness.store, "testpool")
    assert health["norange"].no_range


async def test_h2_range_ignored_later_falls_back_to_one_fresh_stream(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    srv.faults.ignore_range(skip=1)  # the probe gets its 206, every chunk after it a 200
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert job["attempts"] == 0
    assert the_file(library) == media.get("a")
    ranges = requested_ranges(srv)
    # Restarted with a fresh probe, whose full 200 body became the one stream.
    assert ranges[-1] == f"bytes=0-{CHUNK - 1}" and ranges.count(ranges[-1]) == 2


# -- H3: wrong Content-Range ------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant", ["shifted_start", "end_past_request", "wrong_total", "missing", "other_unit"]
)
async def test_h3_a_wrong_content_range_is_rejected(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    library: Path,
    variant: str,
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    srv.faults.bad_content_range(variant, count=1, skip=2)
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")


async def test_h3_a_new_total_from_the_only_server_restarts_the_part(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media, size=None)
    srv.faults.bad_content_range("wrong_total", count=1, skip=2)
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    probes = [r for r in requested_ranges(srv) if r == f"bytes=0-{CHUNK - 1}"]
    assert len(probes) == 2  # probed again after the restart


# -- H4: 416 ----------------------------------------------------------------------------------


async def test_h4a_a_complete_partial_is_finished_without_downloading_again(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    engine = await harness.start()
    await engine.pause_all()
    job_id = await harness.get("1", engine)
    # A previous run fetched every chunk and died before verifying.
    from .test_fetch import make_transfer

    plan = harness.pool.items["1"](0)
    await store_jobs.save_plan(harness.store, job_id, store_jobs.plan_to_dict(plan))
    jt = await make_transfer(harness.store, harness.session, library, plan, job_id=job_id)
    await jt.run()
    srv.log.clear()
    await engine.resume_all()
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    assert srv.log.calls["download"] == 0


async def test_h4b_the_remote_file_changed_size_restarts_cleanly(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media, size=None)
    srv.faults.throttle_bps = 4 * MIB
    engine = await harness.start(make_config(library, connections_per_download=2))
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, 2 * CHUNK)
    media.add_generated("a", "mp3", "new", 3 * CHUNK + 17)  # shorter: far chunks get 416
    srv.faults.throttle_bps = None
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    assert len(media.get("a")) == 3 * CHUNK + 17


# -- H5, H6: stall and trickle ------------------------------------------------------------------


async def test_h5_a_stalled_chunk_moves_to_another_server(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    stalled, healthy = await setup_track(harness, servers, media, ("stalled", "healthy"))
    stalled.faults.stall(after_bytes=1000)
    # The stall lasts until the server closes; the timeout only has to be longer than a pause
    # of a loaded machine, so that the healthy server is never taken for a stalled one.
    engine = await harness.start(make_config(library, stall_timeout_s=1.5))
    baseline = _client_tasks()
    job_id = await harness.get("1", engine)
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    assert healthy.log.calls["download"] >= 6
    health = await store_health.load_health(harness.store, "testpool")
    assert "stall" in (health["stalled"].last_error or "")
    # The stalled sockets were closed (the server sees no connection left) and no client task
    # is left waiting on them.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        _client_tasks() > baseline or _open_connections(stalled) > 0
    ):
        await asyncio.sleep(0.05)
    assert _open_connections(stalled) == 0
    assert _client_tasks() <= baseline


def _client_tasks() -> int:
    """Tasks other than the test servers' connection handlers."""
    return sum(1 for t in asyncio.all_tasks() if "RequestHandler" not in repr(t.get_coro()))


def _open_connections(server: DownloadServer) -> int:
    runner = server._runner
    assert runner is not None and runner.server is not None
    return len(runner.server.connections)


async def test_h6_a_trickling_server_is_left_for_a_fast_one(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    slow, _fast = await setup_track(harness, servers, media, ("slow", "fast"))
    slow.faults.trickle(4000)
    # 4000 B/s is far below 128 KiB/s per connection over any window; the window is long
    # enough that a pause of a loaded machine does not make the fast server look slow.
    job = await run_one(harness, speed_floor_bps=512 * KIB, speed_grace_s=1.5)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    health = await store_health.load_health(harness.store, "testpool")
    assert "too slow" in (health["slow"].last_error or "")


# -- H7: 429 / 503 with Retry-After -------------------------------------------------------------


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_h7_retry_after_is_honoured_for_the_host(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    library: Path,
    form: str,
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    until = time.time() + 1
    value: int | str = 1
    if form == "http-date":
        until = float(int(time.time()) + 3)  # the header has whole seconds
        value = email.utils.formatdate(until, usegmt=True)
    srv.faults.rate_limit(value, count=1, skip=1)
    # One connection: every request after the 429 was sent after the answer was read, so no
    # request in flight has to be told apart by timing.
    job = await run_one(harness, connections_per_download=1)
    assert job["state"] == "done", job["error"]
    assert job["attempts"] == 0
    assert the_file(library) == media.get("a")
    entries = srv.log.for_endpoint("download")
    assert len(entries) == 7 + 1  # 7 chunks and the one answered 429: nobody hammered
    refused_at = entries[1].time
    # The host was left alone for as long as it asked (from the 429, or until its date); a
    # loaded machine only makes the wait longer. 10 ms: the two clocks' resolution.
    wait = 1.0 if form == "seconds" else until - refused_at
    assert min(e.time for e in entries[2:]) - refused_at >= wait - 0.01


async def test_h7_a_retry_after_over_budget_parks_the_job(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    srv.faults.fail(503, retry_after=3600, count=None, skip=1)
    engine = await harness.start()
    job_id = await harness.get("1", engine)
    deadline = time.monotonic() + 20
    while True:
        job = await store_jobs.get_job(harness.store, job_id)
        if job["state"] == "queued" and job["attempts"] == 1:
            break
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.02)
    row = await harness.store.fetchone("SELECT not_before FROM jobs WHERE id = ?", (job_id,))
    assert row[0] - time.time() > 3000
    assert "Retry-After" in job["error"] and "s: HTTP 503" in job["error"]
    # Two tries (before and after renewing the plan), not a loop.
    assert srv.log.calls["download"] <= 1 + 2 * 4
    assert library_files(library) == []


async def test_h7_over_budget_fails_over_to_another_server(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    busy, _free = await setup_track(harness, servers, media, ("busy", "free"))
    busy.faults.rate_limit(3600, count=None)
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    assert busy.log.calls["download"] <= 4  # each connection asked once, then it cooled down


# -- H8, H9, H10: bodies never written ------------------------------------------------------------


async def test_h8_an_encoded_ranged_body_is_rejected(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    srv.faults.gzip_ranged(count=2, skip=1)
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    assert all(e.headers["Accept-Encoding"] == "identity" for e in srv.log.entries)


@pytest.mark.parametrize("fault", ["html_200", "empty_200"])
async def test_h9_an_error_page_is_never_written(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    library: Path,
    fault: str,
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    getattr(srv.faults, fault)(count=1)
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")


async def test_h9_a_server_that_only_sends_error_pages_fails_the_job_by_name(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media, ("dc03",))
    srv.faults.html_200()
    job = await run_one(harness)
    assert job["state"] == "failed"
    assert "dc03" in job["error"] and "HTML" in job["error"]
    assert "after 3 attempts" in job["error"]
    assert library_files(library) == []


async def test_h10_a_body_longer_than_the_range_is_an_error(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    srv.faults.overlong_body(4096, count=2, skip=1)
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")


async def test_h10_content_length_with_chunked_framing_is_refused(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    (srv,) = await setup_track(harness, servers, media)
    body = b"5\r\nAAAAA\r\n0\r\n\r\n"
    srv.faults.raw(
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/"
        + str(SIZE).encode()
        + b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        + body,
        count=1,
    )
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")


# -- H11: mirrors that disagree -----------------------------------------------------------------


@pytest.mark.parametrize("order", [("bad", "good1", "good2"), ("good1", "bad", "good2")])
async def test_h11_a_mirror_serving_other_bytes_is_quarantined(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    library: Path,
    order: tuple[str, ...],
) -> None:
    started = await setup_track(harness, servers, media, order)
    bad = started[order.index("bad")]
    bad.faults.different_bytes()
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")


async def test_h11_a_mirror_with_another_size_is_not_used(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("a", "mp3", "a", SIZE)
    media.add_generated("other", "mp3", "other", SIZE + 100)
    good, odd = await servers(), await servers()
    plan_parts = [PartSpec("main", "a", [("good", good)], size=None)]
    harness.pool.add("1", plan_parts)
    base = harness.pool.items["1"]

    def with_odd(n: int) -> DownloadPlan:
        plan = base(n)
        part = plan.parts[0]
        odd_source = type(part.sources[0])(f"{odd.base_url}/download/other", "odd")
        parts = [type(part)(part.key, [*part.sources, odd_source], None, "mp3")]
        return type(plan)(plan.pool, plan.item_id, plan.kind, plan.format, parts, plan.meta)

    harness.pool.items["1"] = with_odd
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    assert odd.log.calls["download"] <= 2


# -- T1, T5: tokens ------------------------------------------------------------------------------


async def test_t1_an_expired_token_is_renewed_and_the_download_continues(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("a", "mp3", "a", SIZE)
    check = TokenCheck("t0")
    srv = await servers(check)
    srv.faults.throttle_bps = 4 * MIB
    harness.pool.add("1", [PartSpec("main", "a", [("s", srv)])])
    engine = await harness.start(make_config(library, connections_per_download=2))
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, 3 * CHUNK)
    durable = (await store_jobs.get_job(harness.store, job_id))["bytes_done"]
    check.valid = {"t1"}
    srv.faults.throttle_bps = None
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")
    assert harness.pool.renew_calls["1"] == 1
    renewed = [e for e in srv.log.entries if e.query.get("token") == "t1"]
    asked = 0
    for entry in renewed:
        first, last = entry.headers["Range"].split("=")[1].split("-")
        asked += int(last) - int(first) + 1
    assert 0 < asked <= SIZE - durable  # continued from the checkpoints, not restarted


async def test_t1_a_changed_file_after_renewal_restarts_the_part(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("a", "mp3", "a", SIZE)
    check = TokenCheck("t0")
    srv = await servers(check)
    srv.faults.throttle_bps = 4 * MIB
    harness.pool.add("1", [PartSpec("main", "a", [("s", srv)], size=None)])
    engine = await harness.start(make_config(library, connections_per_download=2))
    job_id = await harness.get("1", engine)
    await wait_bytes(harness, job_id, 2 * CHUNK)
    media.add_generated("a", "mp3", "a-v2", SIZE)  # same size, new ETag
    check.valid = {"t1"}
    srv.faults.throttle_bps = None
    job = await harness.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert the_file(library) == media.get("a")


def _zip_of(*names: str) -> bytes:
    return zip_bytes({name: mp3_bytes(name, 40 * KIB) for name in names})


async def test_t5_a_changed_split_restarts_the_set(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_bytes("z1", _zip_of("a.mp3"), content_type="application/zip")
    media.add_bytes("z2", _zip_of("b.mp3"), content_type="application/zip")
    media.add_bytes("y1", _zip_of("a.mp3"), content_type="application/zip")
    media.add_bytes("y2", _zip_of("b.mp3"), content_type="application/zip")
    media.add_bytes("y3", _zip_of("c.mp3"), content_type="application/zip")
    srv = await servers()
    expired = time.time() - 60
    harness.pool.add(
        "two",
        [
            PartSpec("1", "z1", [("s", srv)], extension="zip"),
            PartSpec("2", "z2", [("s", srv)], extension="zip", expires_at=expired),
        ],
        archive=True,
        name="Album",
    )
    harness.pool.add(
        "three",
        [PartSpec(k, f"y{k}", [("s", srv)], extension="zip") for k in ("1", "2", "3")],
        archive=True,
        name="Album",
    )
    two, three = harness.pool.items["two"], harness.pool.items["three"]
    harness.pool.items["1"] = lambda n: replace(three(n) if n else two(n), item_id="1")
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    folder = library / "testpool" / "Album"
    assert Path(job["path"]) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["a.mp3", "b.mp3", "c.mp3"]
    assert (folder / "c.mp3").read_bytes() == mp3_bytes("c.mp3", 40 * KIB)
    assert harness.pool.renew_calls["1"] == 1


# -- D1: a full disk -----------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_d1_not_enough_space_pauses_before_any_request(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small", "4m") as lib:
        media.add_generated("a", "mp3", "a", 6 * MIB)
        srv = await servers()
        harness.pool.add("1", [PartSpec("main", "a", [("s", srv)])])
        engine = await harness.start(make_config(lib))
        job_id = await harness.get("1", engine)
        job = await harness.wait(job_id)
        assert job["state"] == "paused"
        assert job["error"] == f"disk full: need 6.0 MiB on {lib}"
        assert srv.log.calls["download"] == 0
        await engine.stop()


async def test_d1_enospc_mid_job_pauses_without_a_loop_and_resumes(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small", "4m") as lib:
        media.add_generated("done", "mp3", "done", 300 * KIB)
        media.add_generated("a", "mp3", "a", int(1.6 * MIB))
        srv = await servers()
        harness.pool.add("0", [PartSpec("main", "done", [("s", srv)], size=None)])
        harness.pool.add("1", [PartSpec("main", "a", [("s", srv)], size=None)])
        engine = await harness.start(make_config(lib, write_tags=True))
        first = await harness.wait(await harness.get("0", engine))
        assert first["state"] == "done", first["error"]
        finished = Path(first["path"]).read_bytes()
        filler = lib / "filler.bin"
        filler.write_bytes(b"\0" * int(1.8 * MIB))
        job_id = await harness.get("1", engine)
        job = await harness.wait(job_id)
        # The download fitted; the tagged copy did not.
        assert job["state"] == "paused", job
        assert job["error"].startswith("disk full: need ") and job["error"].endswith(f" on {lib}")
        requests = srv.log.calls["download"]
        await scheduler_ran(engine)
        assert srv.log.calls["download"] == requests  # no retry loop
        assert Path(first["path"]).read_bytes() == finished  # nothing finished touched
        assert [p.name for p in (lib / "testpool").iterdir()] == [Path(first["path"]).name]
        filler.unlink()
        assert await engine.check_disk_space() == [job_id]
        job = await harness.wait(job_id, "done", "failed")
        assert job["state"] == "done", job["error"]
        assert srv.log.calls["download"] == requests  # the partial was complete: no refetch
        await engine.stop()


# -- N1–N3: names from servers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("artist", "title"),
    [
        ("../..", "../../.bashrc"),
        ("/etc", "passwd"),
        ("..\\..", "C:\\x"),
        ("%2E%2E%2F", "..%2Fx"),
        ("A\nB\x00C", "\u202eexe.mp3"),
        ("CON", "NUL"),
        ("😀" * 80, "🎵" * 90),
    ],
)
async def test_n1_n2_titles_never_leave_the_library(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    library: Path,
    artist: str,
    title: str,
) -> None:
    await setup_track(harness, servers, media)
    base = harness.pool.items["1"]

    def named(n: int) -> DownloadPlan:
        plan = base(n)
        return type(plan)(
            plan.pool,
            plan.item_id,
            plan.kind,
            plan.format,
            plan.parts,
            {"artist": artist, "title": title},
        )

    harness.pool.items["1"] = named
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    path = Path(job["path"])
    assert os.path.realpath(path).startswith(os.path.realpath(library) + os.sep)
    assert path.parent == library / "testpool"
    assert len(path.name.encode()) <= 255 and path.suffix == ".mp3"
    assert not any(ch in path.name for ch in "\n\x00\u202e/\\")
    assert path.read_bytes() == media.get("a")
    assert not (library.parent / ".bashrc").exists()


async def test_n2_names_differing_only_by_case_do_not_overwrite(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_generated("a", "mp3", "a", 100 * KIB)
    media.add_generated("b", "mp3", "b", 100 * KIB)
    srv = await servers()
    harness.pool.add(
        "1", [PartSpec("main", "a", [("s", srv)])], meta={"artist": "X", "title": "Track"}
    )
    harness.pool.add(
        "2", [PartSpec("main", "b", [("s", srv)])], meta={"artist": "x", "title": "track"}
    )
    engine = await harness.start()
    one = await harness.wait(await harness.get("1", engine))
    two = await harness.wait(await harness.get("2", engine))
    assert Path(one["path"]).name == "X - Track.mp3"
    assert Path(two["path"]).name == "x - track (2).mp3"
    assert Path(one["path"]).read_bytes() == media.get("a")
    assert Path(two["path"]).read_bytes() == media.get("b")


async def test_n3_a_planted_symlink_is_never_followed(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (library / "testpool").symlink_to(outside)
    await setup_track(harness, servers, media)
    job = await run_one(harness)
    assert job["state"] == "failed"
    assert "symlink" in job["error"]
    assert list(outside.iterdir()) == []


# -- Z1–Z3: archives ---------------------------------------------------------------------------


async def _archive_job(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    data: bytes,
    **config: object,
) -> dict[str, object]:
    media.add_bytes("z", data, content_type="application/zip")
    srv = await servers()
    harness.pool.add(
        "1", [PartSpec("main", "z", [("s", srv)], extension="zip")], archive=True, name="Pack"
    )
    return await run_one(harness, **config)


async def test_multi_part_archives_are_extracted_into_the_library(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    media.add_bytes("p1", _zip_of("one.mp3", "sub/two.mp3"), content_type="application/zip")
    media.add_bytes("p2", _zip_of("three.mp3"), content_type="application/zip")
    srv = await servers()
    harness.pool.add(
        "1",
        [
            PartSpec("1", "p1", [("s", srv)], extension="zip"),
            PartSpec("2", "p2", [("s", srv)], extension="zip"),
        ],
        archive=True,
        name="Big Pack",
    )
    job = await run_one(harness)
    assert job["state"] == "done", job["error"]
    folder = library / "testpool" / "Big Pack"
    assert (folder / "sub" / "two.mp3").read_bytes() == mp3_bytes("sub/two.mp3", 40 * KIB)
    assert (folder / "three.mp3").is_file()
    # The parts go once everything is in place (just after "done" is recorded).
    work = library / ".pooldaemon" / f"job-{job['id']}"
    deadline = time.monotonic() + 5
    while work.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not work.exists()


async def test_z1_zip_slip_is_rejected_and_the_archive_kept(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path, tmp_path: Path
) -> None:
    data = zip_bytes({"ok.mp3": b"x" * 100, "../../evil.txt": b"owned"})
    job = await _archive_job(harness, servers, media, data)
    assert job["state"] == "failed"
    assert job["error"].startswith("rejected archive: ") and "evil.txt" in job["error"]
    kept = library / ".pooldaemon" / f"job-{job['id']}" / "part-main.part"
    assert kept.read_bytes() == data
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (library / "testpool" / "Pack").exists()


async def test_z2_a_zip_bomb_is_rejected(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    data = zip_bytes({"bomb.wav": b"\0" * (20 * MIB)}, compress=True)
    job = await _archive_job(harness, servers, media, data)
    assert job["state"] == "failed"
    assert "rejected archive" in job["error"] and "ratio" in job["error"]
    assert not (library / "testpool" / "Pack").exists()


@pytest.mark.parametrize(("limit", "state"), [(2, "failed"), (3, "done")])
async def test_z2_the_entry_limit_is_the_configured_one(
    harness: EngineHarness,
    servers: ServerFactory,
    media: MediaStore,
    library: Path,
    limit: int,
    state: str,
) -> None:
    data = zip_bytes({f"{n}.mp3": mp3_bytes(str(n), 20 * KIB) for n in range(3)})
    job = await _archive_job(harness, servers, media, data, max_extract_entries=limit)
    assert job["state"] == state, job["error"]
    if state == "failed":
        assert job["error"] == "rejected archive: too many entries: 3 (limit 2)"
        assert not (library / "testpool" / "Pack").exists()
    else:
        assert sorted(p.name for p in (library / "testpool" / "Pack").iterdir()) == [
            "0.mp3",
            "1.mp3",
            "2.mp3",
        ]


async def test_z3_a_damaged_archive_is_kept_and_a_retry_fetches_it_again(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    good = zip_bytes({"track.mp3": mp3_bytes("t", 50 * KIB)})
    damaged = bytearray(good)
    with zipfile.ZipFile(__import__("io").BytesIO(good)) as zf:
        info = zf.infolist()[0]
    damaged[info.header_offset + 30 + len(info.filename) + 1000] ^= 0xFF  # CRC will not match
    job = await _archive_job(harness, servers, media, bytes(damaged))
    assert job["state"] == "failed"
    assert job["error"].startswith("rejected archive: ") and "CRC" in job["error"].upper()
    kept = library / ".pooldaemon" / f"job-{job['id']}" / "part-main.part"
    assert kept.read_bytes() == bytes(damaged)
    media.add_bytes("z", good, content_type="application/zip")  # the pool fixed its file
    engine = harness.engines[-1]
    await engine.retry(int(job["id"]))  # type: ignore[arg-type]
    job = await harness.wait(int(job["id"]), "done", "failed")  # type: ignore[arg-type]
    assert job["state"] == "done", job["error"]
    assert (library / "testpool" / "Pack" / "track.mp3").read_bytes() == mp3_bytes("t", 50 * KIB)


# -- a low bandwidth limit (docs/interface.md §2 bandwidth_limit; H6) ---------------------------


async def test_a_low_bandwidth_limit_shared_by_several_downloads_is_not_too_slow(
    harness: EngineHarness, servers: ServerFactory, media: MediaStore, library: Path
) -> None:
    """32 KiB/s shared by three downloads: each connection gets about a third of it, below
    its share of speed_floor, and none of them is dropped as too slow; the floor follows the
    limit the bucket holds now (it is changed live below)."""
    srv = await servers()
    srv.faults.throttle_bps = 14 * KIB  # above a connection's share of the limit, below floor
    for item in ("1", "2", "3"):
        media.add_generated(f"m{item}", "mp3", f"m{item}", 80 * KIB + int(item))
        harness.pool.add(item, [PartSpec("main", f"m{item}", [("s", srv)])])
    config = make_config(
        library, bandwidth_limit_bps=64 * KIB, speed_floor_bps=64 * KIB, speed_grace_s=0.5
    )
    engine = await harness.start(config)
    engine.bucket.set_rate(32 * KIB)  # the limit in force, as a schedule would set it
    ids = [await harness.get(item, engine) for item in ("1", "2", "3")]
    for job_id in ids:
        job = await harness.wait(job_id, timeout=60)
        assert job["state"] == "done", job["error"]
        assert job["attempts"] == 0, job["error"]
    health = await store_health.load_health(harness.store, "testpool")
    assert all("too slow" not in (h.last_error or "") for h in health.values()), health
    assert len(srv.log.for_endpoint("download")) == 3  # one answer each: none cut short
