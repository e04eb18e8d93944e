"""Fixtures for the downloader: real download servers on port 0, a small real adapter that plans
downloads from them, a store on tmp_path and an engine factory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import blake3
import pytest
from aiohttp import web

from pooldaemon.config import DaemonConfig
from pooldaemon.downloader.engine import WORK_AREA, Engine
from pooldaemon.errors import TransientError
from pooldaemon.events import EventBus
from pooldaemon.models import (
    DownloadPlan,
    OutboxCall,
    PlanPart,
    QueueItem,
    Request,
    Source,
)
from pooldaemon.outbox import Outbox
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.pools.http import PoolHttp
from pooldaemon.sim.answer import json_error
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.media import MediaStore
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store.db import Store

KIB = 1024
MIB = 1024 * 1024
#: The smallest chunk the config allows; test files span several of them.
CHUNK = 256 * KIB
FINAL_STATES = ("done", "failed", "paused", "cancelled")


class TokenCheck:
    """A download server's token rule: `?token=` must be one of `valid` (else 401).

    `uses` caps how many requests a token is good for: a token that expires at a known point
    of the transfer rather than at a moment the test has to catch.
    """

    def __init__(self, *valid: str, uses: dict[str, int] | None = None) -> None:
        self.valid = set(valid) or {"t0"}
        self.uses = dict(uses or {})
        self.refused = 0

    def __call__(self, request: web.Request) -> str | web.StreamResponse:
        token = request.query.get("token")
        if token not in self.valid or self.uses.get(token, 1) <= 0:
            self.refused += 1
            return json_error(401, "download token expired")
        if token in self.uses:
            self.uses[token] -= 1
        return request.match_info["key"]


@dataclass
class PartSpec:
    """One part of a test item: which media, from which named servers."""

    key: str
    media: str
    servers: list[tuple[str, DownloadServer]]
    size: int | str | None = "auto"  # "auto": the media's size; None: the pool gives none
    extension: str = "mp3"
    sha256: str | None = None
    md5: str | None = None
    expires_at: float | None = None


PlanFactory = Callable[[int], DownloadPlan]


class LocalPool(PoolAdapter):
    """A real adapter whose plans point at the test's download servers."""

    type_name = "testpool"
    capabilities = frozenset({Capability.REDOWNLOAD, Capability.OUTBOX})
    kinds = ("track", "album")

    def __init__(self, session: aiohttp.ClientSession, media: MediaStore) -> None:
        super().__init__("testpool", None, PoolHttp(session, "testpool"))
        self.media = media
        self.items: dict[str, PlanFactory] = {}
        self.plan_calls: Counter[str] = Counter()
        self.renew_calls: Counter[str] = Counter()
        self.delivered: list[OutboxCall] = []
        self.fail_deliveries = 0
        self.redownloads: list[tuple[list[str], str]] = []
        self.outbox = False
        self.renew_gate: asyncio.Event | None = None

    async def sign_in(self) -> None:
        return None

    def add(
        self,
        item_id: str,
        parts: list[PartSpec],
        *,
        meta: dict[str, Any] | None = None,
        archive: bool = False,
        name: str | None = None,
        token: Callable[[int], str] = lambda n: f"t{n}",
    ) -> None:
        """Register an item; renewal number n gets the token `token(n)`."""

        def factory(n: int) -> DownloadPlan:
            return DownloadPlan(
                pool=self.name,
                item_id=item_id,
                kind="album" if archive else "track",
                format=parts[0].extension,
                parts=[self._part(spec, token(n)) for spec in parts],
                meta=dict(meta or {"artist": "Artist", "title": f"Track {item_id}"}),
                archive=archive,
                name=name,
                context={"dl_token": token(n)},
            )

        self.items[item_id] = factory

    def _part(self, spec: PartSpec, token: str) -> PlanPart:
        size = self.media.size(spec.media) if spec.size == "auto" else spec.size
        return PlanPart(
            key=spec.key,
            sources=[
                Source(f"{srv.base_url}/download/{spec.media}?token={token}", name)
                for name, srv in spec.servers
            ],
            expected_size=size if isinstance(size, int) else None,
            extension=spec.extension,
            expires_at=spec.expires_at,
            sha256=spec.sha256,
            md5=spec.md5,
        )

    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        assert request.item_id is not None
        self.plan_calls[request.item_id] += 1
        return self.items[request.item_id](0)

    async def renew_plan(self, plan: DownloadPlan, part_key: str | None = None) -> DownloadPlan:
        self.renew_calls[plan.item_id] += 1
        if self.renew_gate is not None:
            await self.renew_gate.wait()
        return self.items[plan.item_id](self.renew_calls[plan.item_id])

    def after_download(self, plan: DownloadPlan) -> list[OutboxCall]:
        if not self.outbox:
            return []
        return [OutboxCall(self.name, "success", {"item": plan.item_id, **plan.context})]

    async def deliver(self, call: OutboxCall) -> None:
        if self.fail_deliveries > 0:
            self.fail_deliveries -= 1
            raise TransientError("testpool: download/success: HTTP 503")
        self.delivered.append(call)

    async def redownload(self, item_ids: list[str], reason: str) -> str:
        self.redownloads.append((item_ids, reason))
        return "requeued"


ServerFactory = Callable[..., Awaitable[DownloadServer]]


@pytest.fixture
def media() -> MediaStore:
    return MediaStore(last_modified=1_700_000_000.0)


@pytest.fixture
async def servers(media: MediaStore) -> AsyncIterator[ServerFactory]:
    """`await servers(resolve=None)` → a started DownloadServer on 127.0.0.1:0."""
    started: list[DownloadServer] = []

    async def make(resolve: Any = None) -> DownloadServer:
        server = DownloadServer(media, resolve)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()


@pytest.fixture
def library(tmp_path: Path) -> Path:
    path = tmp_path / "library"
    path.mkdir()
    return path


@pytest.fixture
def pool(session: aiohttp.ClientSession, media: MediaStore) -> LocalPool:
    return LocalPool(session, media)


def make_config(download_dir: Path, **updates: Any) -> DaemonConfig:
    """A [daemon] config for tests: small chunks, short stall timeout, no tags, no margin."""
    base = DaemonConfig(download_dir=str(download_dir))
    values: dict[str, Any] = {
        "chunk_size_bytes": CHUNK,
        "connections_per_download": 4,
        "stall_timeout_s": 2.0,
        "speed_floor_bps": 0,
        "speed_grace_s": 1.0,
        "min_free_space_bytes": 0,
        "max_attempts": 3,
        "write_tags": False,
        "file_template": "{pool}/{artist} - {title}",
    }
    values.update(updates)
    return base.model_copy(update=values)


@dataclass
class EngineHarness:
    """Builds engines on one store; stops them at teardown."""

    store: Store
    session: aiohttp.ClientSession
    pool: LocalPool
    library: Path
    engines: list[Engine] = field(default_factory=list)
    outboxes: list[Outbox] = field(default_factory=list)
    events: EventBus = field(default_factory=EventBus)

    async def start(self, config: DaemonConfig | None = None, **engine_kw: Any) -> Engine:
        """An engine and the outbox it hands owed pool calls to, wired as the daemon does.

        A new start stands for a new daemon: the previous daemon's outbox stops with it."""
        for old in self.outboxes:
            await old.stop()
        config = config or make_config(self.library)
        outbox = Outbox(self.store, {"testpool": self.pool}, backoff_s=0.05, backoff_max_s=0.2)
        kw: dict[str, Any] = {
            "retry_backoff_s": 0.05,
            "retry_backoff_max_s": 0.2,
            "server_cooldown_s": 0.05,
            "on_owed": outbox.wake,
        }
        kw.update(engine_kw)
        engine = Engine(
            self.store, self.session, {"testpool": self.pool}, config, self.events, **kw
        )
        await outbox.start()
        await engine.start()
        self.engines.append(engine)
        self.outboxes.append(outbox)
        return engine

    async def get(self, ref_id: str, engine: Engine, origin: str = "request") -> int:
        job, _ = await engine.submit(Request("testpool", ref_id), origin)
        return int(job["id"])

    async def wait(self, job_id: int, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the store until the job reaches one of `states` (default: a final one)."""
        wanted = states or FINAL_STATES
        deadline = time.monotonic() + timeout
        while True:
            job = await store_jobs.get_job(self.store, job_id)
            if job["state"] in wanted:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']}: {job['error']}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def harness(
    store: Store, session: aiohttp.ClientSession, pool: LocalPool, library: Path
) -> AsyncIterator[EngineHarness]:
    h = EngineHarness(store, session, pool, library)
    yield h
    for engine in h.engines:
        await engine.stop(5.0)
    for outbox in h.outboxes:
        await outbox.stop()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_checksum(data: bytes) -> str:
    """What the library records for these bytes: BLAKE3, named (downloader/digest.py)."""
    return "blake3:" + blake3.blake3(data).hexdigest()


def library_files(root: Path) -> list[Path]:
    """Files in the library, the work area excluded.

    The walk never enters the work area: the engine may be removing a finished job's folder
    there while the test looks (rglob then failed on a folder gone mid-walk).
    """
    found = []
    for folder, subfolders, files in os.walk(root):
        if WORK_AREA in subfolders:
            subfolders.remove(WORK_AREA)
        found += [Path(folder, name) for name in files]
    return sorted(found)


def requested_ranges(server: DownloadServer) -> list[str | None]:
    return [entry.headers.get("Range") for entry in server.log.for_endpoint("download")]


def bytes_requested(servers: Iterable[DownloadServer], total: int) -> int:
    """Bytes asked for across servers, from their Range headers (a full GET counts `total`)."""
    asked = 0
    for server in servers:
        for value in requested_ranges(server):
            if not value:
                asked += total
                continue
            first, _, last = value.split("=", 1)[1].partition("-")
            asked += min(int(last), total - 1) - int(first) + 1
    return asked


async def scheduler_ran(engine: Engine, timeout: float = 20.0) -> None:
    """Wait until a whole scheduler pass ran after this call (it had its chance to act)."""
    seen = engine.scheduler_passes
    async with asyncio.timeout(timeout):
        # The pass under way may have begun before the call: wait for the one after it.
        while engine.scheduler_passes < seen + 2:
            engine.wake()
            await asyncio.sleep(0.01)


async def wait_bytes(
    harness: EngineHarness, job_id: int, at_least: int, timeout: float = 20.0
) -> None:
    """Wait until the job's checkpoints claim `at_least` bytes."""
    async with asyncio.timeout(timeout):
        while (await store_jobs.get_job(harness.store, job_id))["bytes_done"] < at_least:
            await asyncio.sleep(0.01)


class HeldThreads(ThreadPoolExecutor):
    """Worker threads a test can keep busy, so that work handed to them waits in the queue.

    What a loaded machine does by chance (a write waits for a free thread while its task is
    cancelled), made to happen at a chosen moment. Install with `loop.set_default_executor`.
    """

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self.workers = workers
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._busy = 0
        #: Calls handed over while the threads were held.
        self.queued = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not self._open.is_set():
            self.queued += 1
        return super().submit(fn, *args, **kwargs)

    async def hold(self, timeout: float = 10.0) -> None:
        """Occupy every thread; returns once all of them are waiting."""
        self._open.clear()
        self.queued = 0
        for _ in range(self.workers):
            super().submit(self._wait_open)
        deadline = time.monotonic() + timeout
        while self._busy < self.workers:
            assert time.monotonic() < deadline, "the worker threads never became free"
            await asyncio.sleep(0.005)

    def release(self) -> None:
        self._open.set()

    def _wait_open(self) -> None:
        with self._lock:
            self._busy += 1
        self._open.wait()
        with self._lock:
            self._busy -= 1
