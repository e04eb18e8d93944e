"""The byte path: probing, ranged chunks, checkpoints, redirects, tokens, failover."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pooldaemon.downloader import digest
from pooldaemon.downloader.checkpoint import Checkpointer
from pooldaemon.downloader.fetch import JobTransfer, PlanKeeper, TransferSettings
from pooldaemon.downloader.health import HealthBook
from pooldaemon.downloader.part import TransferFailed
from pooldaemon.downloader.ratelimit import FairBucket, HostGates
from pooldaemon.downloader.workfile import work_dir_for
from pooldaemon.errors import AuthError
from pooldaemon.models import DownloadPlan, PlanPart, Request, Source
from pooldaemon.sim.answer import start_app
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.media import MediaStore
from pooldaemon.store import health as store_health
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import parts as store_parts
from pooldaemon.store.db import Store

from .conftest import (
    CHUNK,
    KIB,
    MIB,
    ServerFactory,
    TokenCheck,
    bytes_requested,
    library_checksum,
    requested_ranges,
)

SETTINGS = TransferSettings(
    chunk_size=CHUNK, connections=4, stall_timeout_s=2.0, speed_floor_bps=0, cooldown_s=0.05
)


def plan_for(
    sources: list[tuple[str, str]],
    size: int | None,
    *,
    item: str = "1",
    headers: dict[str, str] | None = None,
) -> DownloadPlan:
    return DownloadPlan(
        pool="testpool",
        item_id=item,
        kind="track",
        format="mp3",
        parts=[
            PlanPart(
                "main",
                [Source(url, name, dict(headers or {})) for name, url in sources],
                expected_size=size,
                extension="mp3",
            )
        ],
    )


Renew = Callable[[DownloadPlan, str | None], Awaitable[DownloadPlan]]


async def _no_renewal(plan: DownloadPlan, key: str | None) -> DownloadPlan:
    return plan


async def make_transfer(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    plan: DownloadPlan,
    *,
    settings: TransferSettings = SETTINGS,
    renew: Renew = _no_renewal,
    job_id: int | None = None,
    hash_parts: bool = True,
    checkpointer: Checkpointer | None = None,
) -> JobTransfer:
    if job_id is None:
        job, _ = await store_jobs.create_job(
            store, Request(plan.pool, plan.item_id), origin="request"
        )
        job_id = int(job["id"])
    return JobTransfer(
        store=store,
        session=session,
        job_id=job_id,
        keeper=PlanKeeper(plan, renew),
        work_dir=work_dir_for(library, job_id),
        settings=settings,
        bucket=FairBucket(0),
        gates=HostGates(),
        health=HealthBook(store, cooldown_s=0.05),
        hash_parts=hash_parts,
        checkpointer=checkpointer,
    )


def url(server: DownloadServer, key: str, query: str = "") -> str:
    return f"{server.base_url}/download/{key}{query}"


# -- ranged chunks and checkpoints ---------------------------------------------------------------


async def test_parallel_ranged_chunks_assemble_the_file(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    size = 5 * CHUNK + 1234
    media.add_generated("a", "mp3", "a", size)
    srv = await servers()
    jt = await make_transfer(store, session, library, plan_for([("s", url(srv, "a"))], size))
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    ranges = requested_ranges(srv)
    # The probe asks for chunk 0 (never assumes Range support); then one request per chunk.
    assert ranges[0] == f"bytes=0-{CHUNK - 1}"
    expected = {f"bytes={i * CHUNK}-{min((i + 1) * CHUNK, size) - 1}" for i in range(6)}
    assert set(ranges) == expected and len(ranges) == 6
    for entry in srv.log.for_endpoint("download"):
        assert entry.headers["Accept-Encoding"] == "identity"
    chunks = await store_parts.load_chunks(store, jt.job_id, "main")
    assert all(c.done and c.filled == c.size for c in chunks)
    assert (await store_jobs.get_job(store, jt.job_id))["bytes_done"] == size


async def test_the_last_round_is_fetched_in_quarter_chunks(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    chunk = 4 * CHUNK
    size = 5 * chunk + 1234
    media.add_generated("a", "mp3", "a", size)
    srv = await servers()
    settings = replace(SETTINGS, chunk_size=chunk, connections=2)
    plan = plan_for([("s", url(srv, "a"))], size)
    jt = await make_transfer(store, session, library, plan, settings=settings)
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    # Whole chunks, then the last `connections` chunks' worth split in four: the connections
    # finish together instead of one fetching a whole chunk alone at the end.
    starts = [0, chunk, 2 * chunk, 3 * chunk, *range(4 * chunk, size, chunk // 4)]
    spans = [(a, b - 1) for a, b in zip(starts, [*starts[1:], size], strict=True)]
    chunks = await store_parts.load_chunks(store, jt.job_id, "main")
    assert [(c.start, c.end) for c in chunks] == spans
    assert all(c.done and c.filled == c.size for c in chunks)
    assert sorted(requested_ranges(srv)) == sorted(f"bytes={a}-{b}" for a, b in spans)


async def test_the_other_connections_start_while_the_probe_streams_chunk_0(
    store: Store, session: aiohttp.ClientSession, library: Path, media: MediaStore
) -> None:
    size = 4 * CHUNK
    media.add_generated("a", "mp3", "a", size)
    data = media.get("a")
    others = asyncio.Event()
    probe_waited_out = False

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal probe_waited_out
        first, last = (int(x) for x in request.headers["Range"][6:].split("-"))
        resp = web.StreamResponse(
            status=206,
            headers={
                "Content-Range": f"bytes {first}-{last}/{size}",
                "Content-Type": "audio/mpeg",
            },
        )
        resp.content_length = last - first + 1
        await resp.prepare(request)
        if first == 0:
            # The probe's body stops halfway until another chunk is asked for; before the
            # change the others waited for the whole of chunk 0 (the bound only breaks that
            # deadlock, it is not a timing).
            half = CHUNK // 2
            await resp.write(data[:half])
            try:
                await asyncio.wait_for(others.wait(), 10)
            except TimeoutError:
                probe_waited_out = True
            await resp.write(data[half : last + 1])
        else:
            others.set()
            await resp.write(data[first : last + 1])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner, port = await start_app(app)
    try:
        plan = plan_for([("s", f"http://127.0.0.1:{port}/a.mp3")], size)
        # No stall timeout meanwhile: the probe's pause must not end it.
        settings = replace(SETTINGS, stall_timeout_s=30.0)
        jt = await make_transfer(store, session, library, plan, settings=settings)
        paths = await jt.run()
    finally:
        await runner.cleanup()
    assert paths["main"].read_bytes() == data
    assert not probe_waited_out
    chunks = await store_parts.load_chunks(store, jt.job_id, "main")
    assert len(chunks) == 4 and all(c.done for c in chunks)


async def test_probe_learns_the_size_when_the_pool_gives_none(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    media.add_generated("a", "mp3", "a", 2 * CHUNK + 7)
    srv = await servers()
    jt = await make_transfer(store, session, library, plan_for([("s", url(srv, "a"))], None))
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    parts = await store_parts.load_parts(store, jt.job_id)
    assert parts["main"].expected_size == 2 * CHUNK + 7 and parts["main"].range_ok


async def test_a_small_file_is_one_ranged_request(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    media.add_generated("a", "mp3", "a", 5000)
    srv = await servers()
    jt = await make_transfer(store, session, library, plan_for([("s", url(srv, "a"))], 5000))
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    assert requested_ranges(srv) == ["bytes=0-4999"]


async def test_no_range_support_means_one_stream(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    size = 3 * CHUNK + 5
    media.add_generated("a", "mp3", "a", size)
    srv = await servers()
    srv.faults.ignore_range(advertise=False)
    jt = await make_transfer(store, session, library, plan_for([("s", url(srv, "a"))], size))
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    # The probe's full 200 body is the single stream: nothing fetched twice.
    assert len(requested_ranges(srv)) == 1
    parts = await store_parts.load_parts(store, jt.job_id)
    assert parts["main"].range_ok is False


async def test_an_interrupted_transfer_resumes_from_its_checkpoints(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    size = 8 * CHUNK
    media.add_generated("a", "mp3", "a", size)
    srv = await servers()
    srv.faults.throttle_bps = 2 * MIB
    plan = plan_for([("s", url(srv, "a"))], size)
    settings = replace(SETTINGS, connections=2)
    first = await make_transfer(store, session, library, plan, settings=settings)
    task = asyncio.create_task(first.run())
    while first.bytes_done < 3 * CHUNK:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    chunks = await store_parts.load_chunks(store, first.job_id, "main")
    durable = sum(c.filled for c in chunks)
    assert durable >= 2 * CHUNK  # finished chunks, plus the checkpointed parts in flight
    srv.faults.throttle_bps = None
    srv.log.clear()
    second = await make_transfer(
        store, session, library, plan, settings=settings, job_id=first.job_id
    )
    paths = await second.run()
    assert paths["main"].read_bytes() == media.get("a")
    # Only what was not durable is fetched again.
    assert bytes_requested([srv], size) == size - durable
    # The hash taken while downloading covers the resumed chunks too (read back from disk).
    assert second.digests()["main"].sha256 == library_checksum(media.get("a"))


async def test_received_bytes_are_checkpointed_on_a_timer(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    """docs/reliability.md C7: mid-chunk bytes are made durable and recorded about once a second,
    one fsync per work file and one commit for all connections, never past what is written."""
    chunk = 8 * CHUNK
    size = 4 * chunk
    media.add_generated("a", "mp3", "a", size)
    srv = await servers()
    srv.faults.throttle_bps = 256 * KIB  # per answer: a chunk takes 8 s, a tick is 1 s
    ticks: list[tuple[int, int]] = []
    checkpointer = Checkpointer(store, on_tick=lambda files, rows: ticks.append((files, rows)))
    settings = replace(SETTINGS, chunk_size=chunk, connections=4)
    jt = await make_transfer(
        store,
        session,
        library,
        plan_for([("s", url(srv, "a"))], size),
        settings=settings,
        checkpointer=checkpointer,
    )
    task = asyncio.create_task(jt.run())
    try:
        async with asyncio.timeout(30):
            while True:
                chunks = await store_parts.load_chunks(store, jt.job_id, "main")
                if sum(1 for c in chunks if 0 < c.filled < c.size) >= 3:
                    break
                assert not task.done(), task
                await asyncio.sleep(0.05)
        # Every chunk in flight got a checkpoint before any finished: the timer took them.
        assert not any(c.done for c in chunks)
        work = (await store_parts.load_parts(store, jt.job_id))["main"].work_path
        assert work is not None
        data = Path(work).read_bytes()
        source = media.get("a")
        for c in chunks:
            assert data[c.start : c.start + c.filled] == source[c.start : c.start + c.filled]
        # Coalesced: one work file synced per tick, however many connections write it.
        assert ticks and all(files == 1 for files, _ in ticks)
        assert max(rows for _, rows in ticks) >= 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await checkpointer.close()


async def test_parts_are_hashed_while_they_download(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    size = 9 * CHUNK + 4321
    media.add_generated("a", "mp3", "a", size)
    want = library_checksum(media.get("a"))
    srv = await servers()
    plan = plan_for([("s", url(srv, "a"))], size)
    first = await make_transfer(store, session, library, plan)
    await first.run()
    digests = first.digests()["main"]
    assert (digests.sha256, digests.size) == (want, size)
    # Recorded with the part, so a run after a crash past this point need not hash again.
    assert (await store_parts.load_parts(store, first.job_id))["main"].sha256 == want
    again = await make_transfer(store, session, library, plan, job_id=first.job_id)
    srv.log.clear()
    await again.run()
    assert again.digests()["main"].sha256 == want
    assert requested_ranges(srv) == []


async def test_hashing_while_downloading_can_be_left_to_the_finisher(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    media.add_generated("a", "mp3", "a", 3 * CHUNK)
    srv = await servers()
    plan = plan_for([("s", url(srv, "a"))], 3 * CHUNK)
    jt = await make_transfer(store, session, library, plan, hash_parts=False)
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    assert jt.digests() == {}
    assert (await store_parts.load_parts(store, jt.job_id))["main"].sha256 is None


async def test_a_missing_work_file_restarts_the_part(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    size = 3 * CHUNK
    media.add_generated("a", "mp3", "a", size)
    srv = await servers()
    plan = plan_for([("s", url(srv, "a"))], size)
    first = await make_transfer(store, session, library, plan)
    paths = await first.run()
    paths["main"].unlink()
    await store_parts.reset_parts(store, first.job_id)  # as if the part had never finished …
    srv.log.clear()
    second = await make_transfer(store, session, library, plan, job_id=first.job_id)
    assert (await second.run())["main"].read_bytes() == media.get("a")
    assert bytes_requested([srv], size) == size


# -- redirects (docs/reliability.md H12)
# -----------------------------------------------------------------


async def _redirector(target: str, *, status: int = 302) -> tuple[web.AppRunner, str, list[Any]]:
    seen: list[Any] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        raise web.HTTPFound(target) if status == 302 else web.HTTPTemporaryRedirect(target)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner, port = await start_app(app)
    return runner, f"http://127.0.0.1:{port}/file.mp3", seen


async def test_credentials_stay_with_the_pools_host_on_redirect(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    media.add_generated("a", "mp3", "a", 2 * CHUNK)
    cdn = await servers()
    runner, start, seen = await _redirector(url(cdn, "a"))
    try:
        plan = plan_for([("pool", start)], 2 * CHUNK, headers={"Authorization": "Bearer s3cret"})
        jt = await make_transfer(store, session, library, plan)
        paths = await jt.run()
    finally:
        await runner.cleanup()
    assert paths["main"].read_bytes() == media.get("a")
    assert all(h.get("Authorization") == "Bearer s3cret" for h in seen)
    cdn_requests = cdn.log.for_endpoint("download")
    assert cdn_requests
    for entry in cdn_requests:
        assert "Authorization" not in entry.headers
        assert entry.headers["Range"].startswith("bytes=")


async def test_redirect_loops_and_other_schemes_are_refused(
    store: Store, session: aiohttp.ClientSession, library: Path
) -> None:
    loop_runner, loop_url, loop_seen = await _redirector("/again")
    ftp_runner, ftp_url, _ = await _redirector("ftp://127.0.0.1/file.mp3")
    try:
        plan = plan_for([("loop", loop_url), ("ftp", ftp_url)], 1000)
        jt = await make_transfer(store, session, library, plan)
        with pytest.raises(TransferFailed) as caught:
            await jt.run()
    finally:
        await loop_runner.cleanup()
        await ftp_runner.cleanup()
    message = str(caught.value)
    assert "redirects" in message or "ftp" in message
    # Capped: at most 6 hops per attempt, two attempts (before and after renewal).
    assert len(loop_seen) <= 2 * 6


# -- TLS (docs/reliability.md H12 downgrade, H13)
# ----------------------------------------------------------


async def _tls_app(
    certificate: tuple[Path, Path], handler: Callable[[web.Request], Awaitable[Any]]
) -> tuple[web.AppRunner, str]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(certificate[1]), str(certificate[0]))
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"https://127.0.0.1:{port}/file.mp3"


async def test_h13_an_untrusted_certificate_fails_over_without_an_insecure_retry(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
    certificate: tuple[Path, Path],
) -> None:
    media.add_generated("a", "mp3", "a", 2 * CHUNK)
    mirror = await servers()
    hits: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(body=media.get("a"))

    runner, tls_url = await _tls_app(certificate, handler)
    try:
        plan = plan_for([("selfsigned", tls_url), ("mirror", url(mirror, "a"))], 2 * CHUNK)
        jt = await make_transfer(store, session, library, plan)
        paths = await jt.run()
    finally:
        await runner.cleanup()
    assert paths["main"].read_bytes() == media.get("a")
    assert hits == []  # no request ever got past the handshake
    health = await store_health.load_health(store, "testpool")
    assert "TLS certificate refused" in (health["selfsigned"].last_error or "")


async def test_h12_a_redirect_from_https_to_http_is_refused(
    store: Store,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
    certificate: tuple[Path, Path],
) -> None:
    media.add_generated("a", "mp3", "a", 2 * CHUNK)
    plain = await servers()

    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(url(plain, "a"))

    runner, tls_url = await _tls_app(certificate, handler)
    trusting = ssl.create_default_context(cafile=str(certificate[1]))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as client:
            plan = plan_for([("tls", tls_url)], 2 * CHUNK, headers={"Authorization": "Bearer x"})
            jt = await make_transfer(store, client, library, plan)
            with pytest.raises(TransferFailed, match="https to http refused"):
                await jt.run()
    finally:
        await runner.cleanup()
    assert plain.log.calls["download"] == 0


# -- tokens (docs/reliability.md T1, T3)
# -----------------------------------------------------------------


async def test_many_workers_refused_at_once_renew_exactly_once(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    size = 8 * CHUNK
    media.add_generated("a", "mp3", "a", size)
    # t0 is good for one request, the probe's: every other connection is refused with it.
    check = TokenCheck("t0", "t1", uses={"t0": 1})
    srv = await servers(check)
    calls = []

    async def renew(plan: DownloadPlan, key: str | None) -> DownloadPlan:
        calls.append(key)
        # Held until all four connections were refused: they all want a renewal at once.
        async with asyncio.timeout(20):
            while check.refused < 4:
                await asyncio.sleep(0.005)
        return plan_for([("s", url(srv, "a", "?token=t1"))], size)

    plan = plan_for([("s", url(srv, "a", "?token=t0"))], size)
    jt = await make_transfer(store, session, library, plan, renew=renew)
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    assert len(calls) == 1
    assert check.refused >= 4


async def test_a_token_refused_after_renewal_is_an_auth_error(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    media.add_generated("a", "mp3", "a", 2 * CHUNK)
    check = TokenCheck("never")
    srv = await servers(check)
    calls = 0

    async def renew(plan: DownloadPlan, key: str | None) -> DownloadPlan:
        nonlocal calls
        calls += 1
        return plan

    plan = plan_for([("s", url(srv, "a", "?token=t0"))], 2 * CHUNK)
    jt = await make_transfer(store, session, library, plan, renew=renew)
    with pytest.raises(AuthError, match="still refuses"):
        await jt.run()
    assert calls == 1
    assert check.refused == 2  # one try with the old token, one with the new


@pytest.mark.parametrize("connections", [1, 4])
async def test_the_hash_is_taken_from_the_written_blocks_in_file_order(
    store: Store,
    session: aiohttp.ClientSession,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
    connections: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One connection writes in file order: every byte is hashed from memory. Four write out of
    # order: what arrived ahead of the hash's cursor is read back; the checksum is the same.
    # (No cap on what waits for the hashing thread: a loaded machine would otherwise leave
    # some blocks to the read-back, by design.)
    monkeypatch.setattr(digest, "MAX_QUEUED", 1 << 40)
    size = 9 * CHUNK + 4321
    media.add_generated("a", "mp3", "a", size)
    srv = await servers()
    plan = plan_for([("s", url(srv, "a"))], size)
    settings = replace(SETTINGS, connections=connections)
    jt = await make_transfer(store, session, library, plan, settings=settings)
    if connections == 1:
        # One write at a time: a chunk's first write may otherwise end before the previous
        # chunk's last one (its commit drains behind), and be left to the read-back.
        jt.write_budget = asyncio.Semaphore(1)
    paths = await jt.run()
    assert paths["main"].read_bytes() == media.get("a")
    assert jt.digests()["main"].sha256 == library_checksum(media.get("a"))
    hasher = jt._runs[0].hasher
    assert hasher is not None
    if connections == 1:
        assert hasher.read_back == 0
    else:
        assert hasher.read_back < size
