"""One part of a download: probe, chunk table, workers, failover, restarts — a state machine.

The first request is a ranged GET for chunk 0 (a 206 says both size and Range support); the
other connections start once its head is checked. Each answer is judged by `answer` before a
byte is written and streamed by `workfile`'s writer; a failed answer steers the next request
(another server, a wait for the host, a renewed plan, a quarantine, a restart of the part).
A chunk counts as done only after its data is fsynced *and then* its checkpoint is committed
(docs/reliability.md C2); between chunk ends the engine's checkpoint timer records what each
stream has made durable (`checkpoint`, C7), so a crash loses about a second per connection.

It is one concept and stays one module although it is long: every transition reads and writes
the same part state (chunks, failures this round, identities, quarantines), and cutting it would
pass that state through another module's API.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections import Counter, deque
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from pooldaemon.downloader.answer import (
    Fail,
    FetchError,
    Identity,
    check_head,
    check_media_head,
    strong_etag,
)
from pooldaemon.downloader.checkpoint import Stream
from pooldaemon.downloader.digest import Digests, PrefixHasher
from pooldaemon.downloader.failpoints import failpoint
from pooldaemon.downloader.ratelimit import FairBucket
from pooldaemon.downloader.workfile import (
    WRITE_BLOCK,
    ChunkWriter,
    SharedFd,
    allocate,
    datasync,
    disk_full,
    no_space,
    part_file_name,
)
from pooldaemon.errors import AuthError, PoolDaemonError, TransientError
from pooldaemon.fsutil import free_space
from pooldaemon.log import get_logger
from pooldaemon.models import PlanPart, Source
from pooldaemon.retry import backoff_s
from pooldaemon.store import parts as store_parts
from pooldaemon.store.db import uncancelled

if TYPE_CHECKING:
    from pooldaemon.downloader.fetch import JobTransfer, TransferSettings

log = get_logger(__name__)

#: aiohttp's per-response buffer: large, so the transport pauses less often.
READ_BUFSIZE = 1 << 20
#: The smallest of the quarter chunks the last round is split into.
TAIL_CHUNK_MIN = 256 * 1024
#: The bytes of a file's start that are sniffed for an error page (docs/reliability.md H9).
HEAD_BYTES = 4096
#: A failed answer that still delivered this much kept data counts as progress, not a failure.
PROGRESS_BYTES = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


class TransferFailed(TransientError):
    """Every source of a part failed, after renewing the plan: the job backs off and retries."""

    code = "transfer"


class _Restart(Exception):
    """The part must start afresh: the file changed, or ranges turned out unsupported."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


async def run_all(coros: Iterable[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run coroutines together; on the first failure cancel the rest, wait for them, re-raise.

    Cancelled siblings get to checkpoint (their `finally` runs) before this returns.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    if failed:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise failed[0].exception()  # type: ignore[misc]
    return [t.result() for t in tasks]


def connection_floor(settings: TransferSettings, bucket: FairBucket) -> float:
    """The speed one connection must keep (docs/reliability.md H6), 0 when none.

    `speed_floor` is per job, so each connection is held to its share; and never above its
    share of the bandwidth limit in force now (docs/interface.md §2): under a low limit every
    connection would otherwise look too slow.
    """
    floor = settings.speed_floor_bps / settings.connections
    share = bucket.share_bps()
    return min(floor, share) if share else floor


class PartRun:
    """One part: probe, chunk table, workers, failover, and the part's own restarts."""

    def __init__(self, jt: JobTransfer, key: str, state: store_parts.PartState | None) -> None:
        self.jt = jt
        self.key = key
        self.state = state
        self.chunks: list[store_parts.ChunkState] = []
        self.path = jt.work_dir / part_file_name(key)
        self.fd: SharedFd | None = None
        self.quarantined: dict[str, str] = {}
        self.identities: dict[str, Identity] = {}
        self.no_range: set[str] = set()
        self.failed: dict[str, FetchError] = {}
        self.last_failure: FetchError | None = None
        self.renewed_round = False
        self.token_generation: int | None = None
        self.inflight: Counter[str] = Counter()
        self.todo: deque[int] = deque()
        self.outstanding = 0
        self.wakeup = asyncio.Condition()
        self.round_lock = asyncio.Lock()
        #: Resolved when the chunk table exists (the probe's headers were good); one per probe.
        self.set_up: asyncio.Future[None] | None = None
        #: Bumped by every failure that counts against a server this round (see `_progress`).
        self.failure_epoch = 0
        self.hasher: PrefixHasher | None = None
        if jt.hash_parts:
            self.hasher = PrefixHasher(self.path, md5=bool(self.plan_part().md5))
        self._unhashed_idx = 0  # the first chunk not wholly handed to the hasher
        self.digests: Digests | None = None
        #: Chunks received whole whose fsync and checkpoint run behind the connection.
        self.committing: dict[int, asyncio.Task[None]] = {}
        self._commit_error: BaseException | None = None

    @property
    def durable_bytes(self) -> int:
        return sum(c.filled for c in self.chunks)

    @property
    def settings(self) -> TransferSettings:
        return self.jt.settings

    def plan_part(self) -> PlanPart:
        return self.jt.keeper.part(self.key)

    async def load(self) -> None:
        """Take back a checkpoint if it still describes this part (same size, file present)."""
        if self.state is None:
            return
        reason = self._stale_reason()
        if reason is not None:
            log.info("starting part afresh", job=self.jt.job_id, part=self.key, reason=reason)
            await self._reset()
            return
        self.chunks = await store_parts.load_chunks(self.jt.store, self.jt.job_id, self.key)
        if not self.chunks:
            await self._reset()

    def _stale_reason(self) -> str | None:
        state = self.state
        assert state is not None
        expected = self.plan_part().expected_size
        if expected is not None and state.expected_size != expected:
            return f"the pool now says {expected} bytes, not {state.expected_size}"
        if state.expected_size is None or not state.work_path:
            return "no size recorded"
        try:
            size = os.stat(state.work_path).st_size
        except FileNotFoundError:
            return "work file missing"
        if size != state.expected_size:
            return f"work file is {size} bytes, not {state.expected_size}"
        self.path = Path(state.work_path)
        if self.hasher is not None:
            self.hasher.path = self.path
        return None

    async def _reset(self) -> None:
        self._close()
        if self.hasher is not None:
            await self.hasher.reset()
        self._unhashed_idx = 0
        self.digests = None
        await store_parts.reset_parts(self.jt.store, self.jt.job_id, [self.key])
        self.jt.count(-self.durable_bytes)
        self.state = None
        self.chunks = []
        self.identities.clear()
        self.failed.clear()
        self.path.unlink(missing_ok=True)

    def _close(self) -> None:
        if self.fd is not None:
            self.fd.close()
            self.fd = None

    @property
    def file(self) -> SharedFd:
        assert self.fd is not None
        return self.fd

    # -- the part's life -------------------------------------------------------------------------

    async def run(self) -> Path:
        try:
            for restart in range(self.settings.max_part_restarts + 1):
                try:
                    await self._run_once()
                    return self.path
                except _Restart as err:
                    log.warning(
                        "restarting part", job=self.jt.job_id, part=self.key, reason=err.reason
                    )
                    if restart >= self.settings.max_part_restarts:
                        raise TransferFailed(
                            f"part {self.key}: {err.reason} (restarted {restart} times)"
                        ) from err
                    await self._reset()
            raise AssertionError("unreachable")
        except OSError as err:
            if no_space(err):
                raise disk_full(self.jt.work_dir) from err
            # docs/reliability.md D2: after an I/O error the partial is not trusted again.
            await self._reset()
            raise TransferFailed(f"part {self.key}: cannot write the work file: {err}") from err
        finally:
            self._close()
            if self.hasher is not None:
                await self.hasher.close()

    async def _run_once(self) -> None:
        if self.state is not None and self.state.done:
            if self.state.sha256 and not self.plan_part().md5:
                self.digests = Digests(self.state.sha256, None, self.state.expected_size or 0)
            return
        part = self.plan_part()
        if part.expires_at is not None and time.time() >= part.expires_at - 5:
            # The token expired before we started (docs/reliability.md T5): ask for a fresh one.
            await self.jt.keeper.renew(self.jt.keeper.generation, self.key)
        probe: asyncio.Task[None] | None = None
        if self.state is None:
            probe = await self._start_probe()
        else:
            await self._open_existing()
            self.advance_hash()
        assert self.state is not None
        # Chunk 0 is the probe's while it streams, and taken once its commit runs behind it.
        busy = {0} if probe is not None else set(self.committing)
        self.todo = deque(c.idx for c in self.chunks if not c.done and c.idx not in busy)
        self.outstanding = len(self.todo) + int(probe is not None)
        try:
            if self.outstanding:
                workers = min(self.settings.connections, self.outstanding)
                if not self.state.range_ok:
                    workers = 1
                tasks = [self._worker() for _ in range(workers)]
                if probe is not None:
                    tasks.append(self._finish_probe(probe))
                await run_all(tasks)
        except BaseException:
            await self._settle(raising=False)
            raise
        await self._settle(raising=True)
        await self._complete()

    async def _start_probe(self) -> asyncio.Task[None] | None:
        """Probe until the chunk table exists; the probe task if it still streams chunk 0.

        The other connections start once the probe's headers are checked, while it streams
        chunk 0: four connections do not wait a whole chunk for one.
        """
        set_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.set_up = set_up  # a fresh one per probe: a restarted part probes again
        probe = asyncio.ensure_future(self._probe())
        try:
            await asyncio.wait({probe, set_up}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
            raise
        finally:
            self.set_up = None
        if probe.done():
            probe.result()  # raises what ended the probe
            return None
        return probe

    async def _finish_probe(self, probe: asyncio.Task[None]) -> None:
        """Chunk 0 is the probe's: done, or back in the queue when its stream failed."""
        try:
            await probe
        finally:
            if self.chunks and (self.chunks[0].done or 0 in self.committing):
                self.outstanding -= 1
            elif self.chunks:
                self.todo.appendleft(0)
            async with self.wakeup:
                self.wakeup.notify_all()

    async def _open_existing(self) -> None:
        self.fd = SharedFd(os.open(self.path, os.O_RDWR | os.O_CLOEXEC))

    async def _complete(self) -> None:
        assert self.state is not None
        size = os.stat(self.path).st_size
        if size != self.state.expected_size:
            raise _Restart(f"work file is {size} bytes, not {self.state.expected_size}")
        sha = None
        if self.hasher is not None:
            self.digests = await self.hasher.finish(size)
            sha = self.digests.sha256
        await store_parts.mark_part_done(self.jt.store, self.jt.job_id, self.key, sha)
        self.state.done = True

    def advance_hash(self) -> None:
        """Hand the hasher the durable prefix: done chunks, then the next one's filled bytes."""
        if self.hasher is None or not self.chunks:
            return
        chunks, i = self.chunks, self._unhashed_idx
        while i < len(chunks) and chunks[i].done:
            i += 1
        self._unhashed_idx = i
        upto = chunks[i].start + chunks[i].filled if i < len(chunks) else chunks[-1].end + 1
        self.hasher.advance(upto)

    # -- probing ---------------------------------------------------------------------------------

    async def _probe(self) -> None:
        """The first request is a ranged GET for chunk 0: a 206 says both size and support."""
        while self.state is None:
            source, generation = await self._pick()
            try:
                await self._request(None, source, generation)
            except FetchError as err:
                await self._on_failure(err, generation)

    async def _setup(self, total: int, range_ok: bool, ident: Identity, server: str) -> None:
        """A fresh partial: preallocated work file (durable) and its chunk table."""
        if total <= 0:
            raise FetchError(Fail.SERVER, server, "the file is empty")
        need = total + self.settings.min_free_space_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if await asyncio.to_thread(free_space, self.path.parent) < need:
            raise disk_full(self.path.parent, need)
        self.fd = SharedFd(
            os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        )
        try:
            await self.fd.run(allocate, total, self.path.parent)
        except OSError as err:
            if no_space(err):
                raise disk_full(self.path.parent, need) from err
            raise
        size = self.settings.chunk_size if range_ok else total
        starts = list(range(0, total, size))
        conns = self.settings.connections
        if range_ok and conns > 1 and len(starts) > 2 * conns:
            # The last round in quarter chunks, so the connections finish together rather than
            # one fetching a whole chunk alone at the end.
            tail = starts[-conns]
            step = min(size, max(TAIL_CHUNK_MIN, size // 4))
            starts = starts[:-conns] + list(range(tail, total, step))
        ends = [*starts[1:], total]
        self.chunks = [
            store_parts.ChunkState(i, start, end - 1, False, 0)
            for i, (start, end) in enumerate(zip(starts, ends, strict=True))
        ]
        state = store_parts.PartState(
            job_id=self.jt.job_id,
            part_key=self.key,
            expected_size=total,
            etag=ident.etag,
            last_modified=ident.last_modified,
            range_ok=range_ok,
            work_path=str(self.path),
            chunk_size=size,
            done=False,
            sha256=None,
            identity_server=server,
        )
        await store_parts.init_part(self.jt.store, state, self.chunks)
        self.state = state
        self.identities[server] = ident
        if range_ok:
            await self.jt.health.set_no_range(self.jt.pool, server, False)
        if self.set_up is not None and not self.set_up.done():
            self.set_up.set_result(None)

    # -- workers ---------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            if self._commit_error is not None:
                raise self._commit_error
            async with self.wakeup:
                while not self.todo and self.outstanding > 0:
                    await self.wakeup.wait()
                if self.outstanding == 0:
                    self.wakeup.notify_all()
                    return
                idx = self.todo.popleft()
            try:
                source, generation = await self._pick()
                await self._request(idx, source, generation)
            except FetchError as err:
                self.todo.appendleft(idx)
                await self._on_failure(err, generation)
            except BaseException:
                self.todo.appendleft(idx)
                raise
            else:
                self.outstanding -= 1
            async with self.wakeup:
                self.wakeup.notify_all()

    def _candidates(self) -> list[Source]:
        part = self.plan_part()
        return [s for s in part.sources if s.server not in self.quarantined]

    async def _pick(self) -> tuple[Source, int]:
        """A healthy source: not failed this round, not cooling down, host not gated; the least
        busy first, so chunks spread over servers."""
        pool = self.jt.pool
        waited = False
        while True:
            generation = self.jt.keeper.generation
            part = self.plan_part()
            if (
                self.state is not None
                and part.expected_size is not None
                and part.expected_size != self.state.expected_size
            ):
                raise _Restart(f"the pool now says {part.expected_size} bytes")
            candidates = self._candidates()
            if not candidates:
                reasons = "; ".join(f"{s}: {r}" for s, r in self.quarantined.items())
                raise TransferFailed(f"part {self.key}: no trustworthy server left ({reasons})")
            if self.state is not None and self.state.range_ok:
                ranged = [s for s in candidates if not self._no_range(s.server)]
                if not ranged:
                    raise _Restart("no server honours Range: downloading in one stream")
                candidates = ranged
            usable = [s for s in candidates if s.server not in self.failed]
            if not usable:
                await self._all_failed(generation)
                continue
            delays = []
            for source in usable:
                gate = self.jt.gates.remaining(_host(source.url))
                # A cooling server that has not failed for this part is tried after a short
                # wait when nothing else is ready: the cooldown steers chunks away from it,
                # the job's back-off bounds the retries. Retry-After is always waited out.
                cooling = 0.0 if waited else self.jt.health.cooling_s(pool, source.server)
                delays.append(max(gate, min(cooling, 1.0)))
            best = min(delays)
            if best <= 0:
                ready = [s for s, d in zip(usable, delays, strict=True) if d <= 0]
                source = min(ready, key=lambda s: self.inflight[s.server])
                return source, generation
            await asyncio.sleep(best)
            waited = True

    def _no_range(self, server: str) -> bool:
        return server in self.no_range

    async def _all_failed(self, generation: int) -> None:
        """Every server failed since the last progress: renew the plan once, then give up."""
        async with self.round_lock:
            if self.jt.keeper.generation != generation:
                return  # another worker renewed meanwhile
            if any(s.server not in self.failed for s in self._candidates()):
                return
            if not self.renewed_round:
                self.renewed_round = True
                log.info(
                    "every server failed; renewing the plan",
                    job=self.jt.job_id,
                    part=self.key,
                    servers=sorted(self.failed),
                )
                await self.jt.keeper.renew(generation, self.key)
                self.failed.clear()
                self.jt.health.forgive(self.jt.pool, (s.server for s in self._candidates()))
                return
            last = self.last_failure
            assert last is not None
            retry_after = max((f.retry_after or 0.0 for f in self.failed.values()), default=0.0)
            raise TransferFailed(
                f"part {self.key}: every server failed; last: {last.server}: {last.what}",
                retry_after_s=retry_after or None,
                detail={"server": last.server, "error": last.what},
            )

    async def _on_failure(self, err: FetchError, generation: int) -> None:
        """Decide what a failed answer means for the next pick."""
        pool, server = self.jt.pool, err.server
        log.info(
            "request failed",
            job=self.jt.job_id,
            part=self.key,
            server=server,
            kind=str(err.kind),
            error=err.what,
        )
        if err.kind is Fail.TOKEN:
            if self.token_generation is not None and generation >= self.token_generation:
                raise AuthError(
                    f"part {self.key}: {server} still refuses the download after renewing its "
                    f"token ({err.what})"
                )
            await self.jt.keeper.renew(generation, self.key)
            self.token_generation = self.jt.keeper.generation
            return
        if err.kind is Fail.RATE:
            host = _host(self._source_url(server))
            delay = err.retry_after
            if delay is None:
                self.jt.rate_strikes[host] += 1
                delay = backoff_s(self.jt.rate_strikes[host], 1.0, 60.0)
            if delay <= self.settings.retry_after_budget_s:
                self.jt.gates.block(host, delay)
                return
            err.what += f" (Retry-After {delay:.0f}s is over the budget)"
            self.last_failure = err
            self.failed[server] = err
            self.failure_epoch += 1
            await self.jt.health.failure(pool, server, err.what, cooldown_s=delay)
            return
        if err.kind is Fail.NO_RANGE:
            self.no_range.add(server)
            await self.jt.health.set_no_range(pool, server, True)
            return
        if err.kind is Fail.IDENTITY:
            assert err.identity is not None
            self._on_identity(server, err.identity, err.what)
            return
        self.last_failure = err
        await self.jt.health.failure(pool, server, err.what)
        if not err.progressed:
            self.failed[server] = err
            self.failure_epoch += 1

    def _source_url(self, server: str) -> str:
        for source in self.plan_part().sources:
            if source.server == server:
                return source.url
        return server

    def _on_identity(self, server: str, ident: Identity, why: str) -> None:
        """A server disagrees about the file (H3, H4 b, H11): quarantine it, or restart."""
        assert self.state is not None
        ref_server = self.state.identity_server
        planned = self.plan_part().expected_size
        if planned is not None and ident.size != planned:
            self._quarantine(server, f"serves {ident.size} bytes, the pool says {planned}")
            return
        if server == ref_server or len(self.plan_part().sources) <= 1:
            raise _Restart(f"the file changed on {server} ({why})")
        ref = Identity(self.state.expected_size or 0, self.state.etag, self.state.last_modified)
        self.identities[server] = ident
        agree = {s for s, i in self.identities.items() if i.differs(ref, same_server=False) is None}
        if ref_server:
            agree.add(ref_server)
        with_new = {
            s for s, i in self.identities.items() if i.differs(ident, same_server=False) is None
        }
        if len(with_new) > len(agree):
            for other in agree:
                self._quarantine(other, f"disagrees with {', '.join(sorted(with_new))}")
            for other in with_new:
                self.quarantined.pop(other, None)
            raise _Restart(f"{ref_server} serves another file than {', '.join(sorted(with_new))}")
        self._quarantine(server, f"serves another file than {ref_server} ({why})")

    def _quarantine(self, server: str, reason: str) -> None:
        log.warning("server quarantined", job=self.jt.job_id, server=server, reason=reason)
        self.quarantined[server] = reason
        self.jt.health.get(self.jt.pool, server).last_error = reason

    async def _progress(self, server: str, epoch: int) -> None:
        """A chunk arrived: a new round of failures starts, unless one came while it was asked.

        docs/reliability.md H7 (no worker hammers the host): an answer that began before the latest
        failure says nothing about the server now; counting it would let the probe, still
        streaming chunk 0, reopen the round the other connections just exhausted.
        """
        if epoch != self.failure_epoch:
            return
        self.failed.clear()
        self.renewed_round = False
        self.token_generation = None
        self.jt.rate_strikes.pop(_host(self._source_url(server)), None)
        await self.jt.health.success(self.jt.pool, server)

    # -- one request -----------------------------------------------------------------------------

    async def _request(self, idx: int | None, source: Source, generation: int) -> None:
        """Fetch chunk `idx` (or probe when None) from `source`; raises FetchError."""
        settings = self.settings
        server = source.server
        if idx is None:
            planned = self.plan_part().expected_size
            start, end = 0, settings.chunk_size - 1
            if planned is not None:
                end = min(end, planned - 1)
            ranged = True
        else:
            assert self.state is not None
            chunk = self.chunks[idx]
            ranged = bool(self.state.range_ok)
            start = chunk.start + chunk.filled if ranged else 0
            end = chunk.end
        headers = {k: v for k, v in source.headers.items() if k.lower() != "range"}
        headers["Accept-Encoding"] = "identity"
        if ranged:
            headers["Range"] = f"bytes={start}-{end}"
            if idx is not None and self.state is not None and strong_etag(self.state.etag):
                # docs/reliability.md H1: resume only if the file is still the one we started.
                headers["If-Range"] = str(self.state.etag)
        async with self.jt.connections:
            self.inflight[server] += 1
            self.jt.requests += 1
            epoch = self.failure_epoch
            try:
                resp = await self._open(source, headers)
                try:
                    await self._answer(resp, idx, source, ranged, start, end)
                except BaseException:
                    resp.close()  # never reuse a connection whose body we did not finish
                    raise
                resp.release()
                await self._progress(server, epoch)
            finally:
                self.inflight[server] -= 1

    async def _open(self, source: Source, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET with redirects followed by hand: capped, no credentials to another host, no
        https → http, no other schemes (docs/reliability.md H12). TLS is always verified (H13)."""
        url = source.url
        server = source.server
        own = {k.lower() for k in source.headers}
        for _ in range(self.settings.max_redirects + 1):
            scheme = urlsplit(url).scheme.lower()
            if scheme not in ("http", "https"):
                raise FetchError(Fail.SERVER, server, f"redirected to a {scheme}: URL (refused)")
            try:
                resp = await self.jt.session.get(
                    url,
                    headers=headers,
                    allow_redirects=False,
                    auto_decompress=False,
                    read_bufsize=READ_BUFSIZE,
                    timeout=self.jt.timeout,
                    raise_for_status=False,
                )
            except aiohttp.ClientConnectorCertificateError as err:
                raise FetchError(
                    Fail.SERVER, server, f"TLS certificate refused ({err.certificate_error})"
                ) from err
            except aiohttp.ClientSSLError as err:
                raise FetchError(Fail.SERVER, server, f"TLS error ({err})") from err
            except TimeoutError as err:
                raise FetchError(
                    Fail.SERVER, server, f"stall: no answer for {self.settings.stall_timeout_s:g}s"
                ) from err
            except aiohttp.ClientError as err:
                raise FetchError(
                    Fail.SERVER, server, f"connection error ({type(err).__name__})"
                ) from err
            if resp.status not in _REDIRECTS:
                return resp
            location = resp.headers.get("Location")
            resp.release()
            if not location:
                raise FetchError(Fail.SERVER, server, f"HTTP {resp.status} without Location")
            target = urljoin(url, location)
            if scheme == "https" and urlsplit(target).scheme.lower() == "http":
                raise FetchError(Fail.SERVER, server, "redirect from https to http refused")
            if _origin(target) != _origin(url):
                # The pool's headers carry its credentials: they stay with the pool's host.
                headers = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in own and k.lower() not in _CREDENTIAL_HEADERS
                }
            url = target
        raise FetchError(Fail.SERVER, server, f"more than {self.settings.max_redirects} redirects")

    async def _answer(
        self,
        resp: aiohttp.ClientResponse,
        idx: int | None,
        source: Source,
        ranged: bool,
        start: int,
        end: int,
    ) -> None:
        """Validate the answer's head, then stream its body into the work file."""
        server = source.server
        head = check_head(
            resp.status,
            resp.headers,
            resp.content_length,
            server=server,
            ranged=ranged,
            start=start,
            end=end,
            probe=idx is None,
            known_size=None if self.state is None else self.state.expected_size,
            planned_size=self.plan_part().expected_size,
        )
        total, range_ok, ident = head.total, head.range_ok, head.identity
        if idx is None:
            planned = self.plan_part().expected_size
            if planned is not None and total != planned:
                self._quarantine(server, f"serves {total} bytes, the pool says {planned}")
                raise FetchError(Fail.SERVER, server, f"serves {total} bytes, not {planned}")
            if not range_ok:
                others = [
                    s
                    for s in self._candidates()
                    if s.server != server and s.server not in self.no_range
                ]
                if others:
                    raise FetchError(Fail.NO_RANGE, server, "answered 200 to a Range request")
            await self._setup(total, range_ok, ident, server)
            idx = 0
            length = self.chunks[0].size
        else:
            assert self.state is not None
            ref = Identity(self.state.expected_size or 0, self.state.etag, self.state.last_modified)
            why = ident.differs(ref, same_server=server == self.state.identity_server)
            if why is not None:
                raise FetchError(Fail.IDENTITY, server, why, identity=ident)
            self.identities.setdefault(server, ident)
            if ranged and not range_ok:
                raise FetchError(Fail.NO_RANGE, server, "answered 200 to a Range request")
            length = end - start + 1
        assert self.state is not None
        await self._stream(resp, idx, start, length, server, keep_ok=bool(self.state.range_ok))

    async def _stream(
        self,
        resp: aiohttp.ClientResponse,
        idx: int,
        start: int,
        length: int,
        server: str,
        *,
        keep_ok: bool,
    ) -> None:
        """Body → work file at `start`; checkpoint when complete (what is durable on failure)."""
        jt = self.jt
        settings = self.settings
        # Blocks of a quarter chunk (at most 1 MiB): small chunks are written in pieces too.
        block = min(WRITE_BLOCK, max(64 * 1024, settings.chunk_size // 4))
        hasher = self.hasher
        writer = ChunkWriter(
            self.file,
            start,
            block,
            budget=jt.write_budget,
            on_written=hasher.offer if hasher is not None else None,
        )
        head_checked = start != 0
        # docs/reliability.md C7: the timer checkpoints what arrives once it is known to be
        # the file's bytes (the range was checked; the media head too, for the first chunk).
        stream = Stream(self, idx, writer)
        if head_checked and keep_ok:
            jt.checkpointer.register(stream)
        grace = settings.speed_grace_s
        bucket = jt.bucket
        bucket.streams += 1
        content = resp.content
        window_start = time.monotonic()
        window_bytes = 0
        throttled = 0.0
        try:
            try:
                while True:
                    # One buffered piece at a time: `readany` would join every piece buffered
                    # (a copy, and a second buffer's worth of memory per connection).
                    data, http_chunk_end = await content.readchunk()
                    if not data:
                        if http_chunk_end:
                            continue
                        break
                    n = len(data)
                    if writer.received + n > length:
                        raise FetchError(
                            Fail.SERVER, server, f"body longer than the {length} bytes asked for"
                        )
                    jt.count(n)
                    if bucket.rate_bps:
                        t = time.monotonic()
                        await bucket.take(jt.job_id, n)
                        throttled += time.monotonic() - t
                    ready = writer.add(data)
                    if ready and not head_checked:
                        # The head is judged on its first 4 KiB (H9), however slowly they come.
                        if writer.received >= min(HEAD_BYTES, length):
                            check_media_head(writer.peek(HEAD_BYTES), server)
                            head_checked = True
                            if keep_ok:
                                jt.checkpointer.register(stream)
                        else:
                            ready = False
                    if ready:
                        await writer.flush(mid_chunk=writer.received < length)
                    window_bytes += n
                    if settings.speed_floor_bps and grace:
                        now = time.monotonic()
                        elapsed = now - window_start
                        floor = connection_floor(settings, bucket)
                        if elapsed >= grace and floor:
                            speed = window_bytes / max(elapsed - throttled, 1e-3)
                            if speed < floor:
                                raise FetchError(
                                    Fail.SERVER,
                                    server,
                                    f"too slow: {speed:.0f} B/s for {elapsed:.0f}s "
                                    f"(floor {floor:.0f} B/s per connection)",
                                    keep=True,
                                )
                            window_start, window_bytes, throttled = now, 0, 0.0
            except TimeoutError as err:
                raise FetchError(
                    Fail.SERVER,
                    server,
                    f"stall: no data for {settings.stall_timeout_s:g}s",
                    keep=True,
                ) from err
            except aiohttp.ClientError as err:
                raise FetchError(
                    Fail.SERVER,
                    server,
                    f"connection lost after {writer.received} of {length} bytes "
                    f"({type(err).__name__})",
                    keep=True,
                ) from err
            if writer.received != length:
                raise FetchError(
                    Fail.SERVER,
                    server,
                    f"body ended after {writer.received} of {length} bytes",
                    keep=True,
                )
            if not head_checked:
                check_media_head(writer.peek(HEAD_BYTES), server)
            await writer.flush(mid_chunk=False)
        except FetchError as err:
            jt.checkpointer.unregister(stream)
            kept = err.keep and keep_ok and writer.received >= 1 and head_checked
            if kept:
                await self._checkpoint(idx, writer)
                err.progressed = writer.received >= PROGRESS_BYTES
            else:
                await writer.abandon()
                # What the timer already claimed stays (its range and head were checked).
                chunk = self.chunks[idx]
                claimed = max(0, chunk.start + chunk.filled - start)
                jt.count(-(writer.received - claimed))
            raise
        except asyncio.CancelledError:
            jt.checkpointer.unregister(stream)
            # Pause or shutdown: what arrived is made durable so it is not fetched again.
            if keep_ok and head_checked and writer.received:
                try:
                    await self._checkpoint(idx, writer)
                except (OSError, PoolDaemonError):
                    pass
            else:
                await writer.abandon()
            raise
        except BaseException:
            jt.checkpointer.unregister(stream)
            await writer.abandon()
            raise
        finally:
            bucket.streams -= 1
        jt.checkpointer.unregister(stream)
        await self._commit_behind(idx, writer)

    async def _commit_behind(self, idx: int, writer: ChunkWriter) -> None:
        """Make a chunk received whole durable and record it while the connection moves on.

        The connection asks for its next range at once instead of waiting for the last write,
        the fsync and the commit (issue 13: ~1 s per 512 MiB with no byte moving). At most one
        such commit per connection runs behind: the oldest is waited for first, so a slow disk
        slows the connections instead of piling up chunks. A failed commit fails the part (its
        workers stop at their next chunk); a stop or pause waits for every commit (`_settle`).
        """
        task = asyncio.get_running_loop().create_task(self._commit_done(idx, writer))
        self.committing[idx] = task
        task.add_done_callback(lambda t: self._committed(idx, t))
        # Started before any wait: a stop arriving now still finds the chunk recorded
        # (`_settle` waits for it), the bytes are all here.
        while len(self.committing) > max(1, self.settings.connections):
            oldest = next(iter(self.committing.values()))
            await uncancelled(asyncio.wait({oldest}))

    def _committed(self, idx: int, task: asyncio.Task[None]) -> None:
        self.committing.pop(idx, None)
        if task.cancelled():
            self._commit_error = self._commit_error or asyncio.CancelledError()
        elif task.exception() is not None and self._commit_error is None:
            self._commit_error = task.exception()

    async def _settle(self, *, raising: bool) -> None:
        """Wait for the commits running behind the connections (even when cancelled meanwhile);
        raise the first one's error when asked."""
        if self.committing:
            await uncancelled(asyncio.wait(set(self.committing.values())))
        err, self._commit_error = self._commit_error, None
        if raising and err is not None:
            raise err

    async def _commit_done(self, idx: int, writer: ChunkWriter) -> None:
        """Durable data first, then the checkpoint that claims it (docs/reliability.md C2)."""
        await writer.drain()
        chunk = self.chunks[idx]
        if writer.written != chunk.end + 1:
            # docs/reliability.md C2: the claim follows the writes that completed, never the
            # bytes received; a chunk whose writes do not reach its end is not done.
            raise OSError(
                errno.EIO,
                f"chunk {idx} received whole but written only to byte {writer.written} "
                f"of {chunk.start}-{chunk.end}",
            )
        await self.file.run(datasync)
        failpoint("after_chunk_fsync")
        chunk.filled = chunk.size
        chunk.done = True
        failpoint("before_chunk_commit")
        await store_parts.commit_chunk(
            self.jt.store, self.jt.job_id, self.key, idx, chunk.filled, True
        )
        self.advance_hash()

    async def _checkpoint(self, idx: int, writer: ChunkWriter) -> None:
        """Make a chunk's received prefix durable and record how far it goes."""
        await writer.drain()
        await self.file.run(datasync)
        chunk = self.chunks[idx]
        # docs/reliability.md C2: what the completed writes cover (all of `received` once the
        # drain returned), as the timer claims too; never bytes merely received.
        chunk.filled = max(chunk.filled, writer.written - chunk.start)
        # A stop that lands after the chunk's last byte arrived: the chunk is whole (and
        # durable), not a prefix to resume with a Range that would start past its end.
        chunk.done = chunk.filled >= chunk.size
        await store_parts.commit_chunk(
            self.jt.store, self.jt.job_id, self.key, idx, chunk.filled, chunk.done
        )
        self.advance_hash()
