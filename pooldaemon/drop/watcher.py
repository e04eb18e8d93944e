"""The drop-folder watcher: notices stable request files and carries each through to its move.

Events from watchfiles only wake the scan loop; each pass lists the folder (`files.list_dir`),
reads what has been stable for `stable_s`, parses it (`parse`), records it in the store, submits
it, records the destination, and moves it (`files.place_all`). See `pooldaemon.drop` for the
promises this keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from watchfiles._rust_notify import RustNotify

from pooldaemon.drop.files import (
    PROCESSED,
    REJECTED,
    PlaceOutcome,
    Sig,
    Snapshot,
    free_dest,
    free_dests,
    list_dir,
    place_all,
    remove_our_temporaries,
    settle,
    snapshot_all,
)
from pooldaemon.drop.parse import (
    FileProblem,
    PoolKinds,
    Submit,
    SubmitOutcome,
    build_result,
    errors_text,
    idempotency_key,
    parse_request_file,
    printable,
    result_text,
    submit_chunks,
)
from pooldaemon.events import EventBus
from pooldaemon.log import get_logger
from pooldaemon.models import Request
from pooldaemon.store import drops
from pooldaemon.store.db import Store

log = get_logger(__name__)

#: Files handled between two yields to the event loop and two checks for stop.
BATCH_SIZE = 100


@dataclass(frozen=True, slots=True)
class DropReport:
    """One dropped file handled: where it went and how many of its requests were accepted."""

    file: str  # its name in drop_dir
    moved_to: str  # relative to drop_dir: "processed/NAME" or "rejected/NAME"
    accepted: int
    rejected: int
    error: str | None = None  # why the whole file was refused or rejected
    duplicate: bool = False  # same content as a file handled before: answered from the record


@dataclass(slots=True)
class _Seen:
    sig: Sig
    since: float
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Decision:
    folder: str
    sidecar: str
    accepted: int
    rejected: int
    error: str | None
    duplicate: bool


def _decision(
    name: str, record: drops.DropRecord | None, problem: str | None, duplicate: bool
) -> _Decision:
    """Where the file goes and the exact text written beside it."""
    if problem is not None or record is None or record.result is None:
        problem = problem or "it could not be read"
        return _Decision(REJECTED, errors_text(name, problem), 0, 0, problem, False)
    result = record.result
    accepted, rejected = len(result["accepted"]), len(result["rejected"])
    if accepted:
        return _Decision(PROCESSED, result_text(result), accepted, rejected, None, duplicate)
    return _Decision(
        REJECTED, errors_text(name, None, result["rejected"]), 0, rejected, None, duplicate
    )


class DropWatcher:
    """Turns files dropped into `drop_dir` into submitted requests (docs/interface.md §3)."""

    def __init__(
        self,
        drop_dir: Path,
        store: Store,
        submit: Submit,
        pools: PoolKinds,
        events: EventBus,
        *,
        force_polling: bool,
        rescan_interval_s: float,
        stable_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._dir = Path(drop_dir)
        self._store = store
        self._submit = submit
        self._pools = pools
        self._events = events
        self._force_polling = force_polling
        self._rescan_s = max(rescan_interval_s, 0.05)
        self._stable_s = max(stable_s, 0.0)
        self._clock = clock
        self._stop_timeout_s = stop_timeout_s
        self._candidates: dict[str, _Seen] = {}
        self._scan_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._watch_stop = asyncio.Event()  # ends one awatch run: stop, or watch anew
        self._watched: tuple[int, int] | None = None  # (dev, inode) of the folder watched
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._resume_at: float | None = None  # None: not yet tried; inf: done
        self._problems: dict[str, str] = {}  # key → last problem logged (log on change)

    @property
    def drop_dir(self) -> Path:
        return self._dir

    async def start(self) -> None:
        """Start watching; files already in the folder are handled once they are stable."""
        if self._tasks:
            return
        self._stopping = False
        self._stop_event.clear()
        await self._ensure_dirs()
        self._tasks = [
            asyncio.create_task(self._run(), name="drop-scan"),
            asyncio.create_task(self._watch(), name="drop-watch"),
        ]

    async def stop(self) -> None:
        """Stop after the file in hand (bounded by stop_timeout_s, then cancelled)."""
        self._stopping = True
        self._stop_event.set()
        self._watch_stop.set()
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("drop watcher task failed", error=result)

    async def scan(self) -> list[DropReport]:
        """One pass: list the folder, note what changed, handle every file now stable.

        The background loop calls this on every event, due stability check and rescan; tests
        call it directly (with a fake clock) instead of waiting.
        """
        async with self._scan_lock:
            now = self._clock()
            if self._resume_at is None or now >= self._resume_at:
                await self._resume(now)
            ready = await self._ready(now)
            reports: list[DropReport] = []
            for start in range(0, len(ready), BATCH_SIZE):
                if self._stopping:
                    break
                reports += await self._handle_batch(ready[start : start + BATCH_SIZE])
                await asyncio.sleep(0)  # let events and the socket API through
            return reports

    # -- the loop

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.scan()
            except Exception as err:  # the watcher never dies of one bad pass
                self._problem("scan", f"drop folder scan failed: {err}", error=err)
                # The store or the folder is failing as a whole: no tight loop (docs/reliability.md
                # §2 oracle 7); events are ignored until the next rescan.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), self._rescan_s)
                continue
            self._clear_problem("scan")
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait())

    async def _watch(self) -> None:
        """OS events (or watchfiles' own polling) only wake the scan loop."""
        while not self._stopping:
            self._watch_stop = asyncio.Event()
            # awatch arms its watcher before its first await: one more pass right after that
            # catches files created between the last pass and the watch being live.
            asyncio.get_running_loop().call_soon(self._wake.set)
            try:
                st = await asyncio.to_thread(os.stat, self._dir)
                self._watched = (st.st_dev, st.st_ino)
                async for _changes in _changes_in(
                    self._dir, self._watch_stop, force_polling=self._force_polling
                ):
                    self._wake.set()
                continue  # stopped, or asked to watch the folder anew
            except Exception as err:
                self._watched = None
                # A missing or unmounted folder: rescans carry on; try watching again later.
                self._problem("watch", f"cannot watch {self._dir}: {err}", error=err)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), self._rescan_s)

    def _next_wait(self) -> float:
        now = self._clock()
        due = [self._rescan_s]
        for seen in self._candidates.values():
            due.append(max(seen.since + self._stable_s, seen.retry_at) - now)
        if self._resume_at is not None and self._resume_at != float("inf"):
            due.append(self._resume_at - now)
        return min(max(min(due), 0.01), self._rescan_s)

    async def _ensure_dirs(self, *, parents: bool = True) -> bool:
        """Create the folder and its processed/ and rejected/ (at start; later only the folder
        itself, so an unmounted share's missing path is not recreated on the local disk)."""

        def make() -> None:
            self._dir.mkdir(parents=parents, exist_ok=True)
            for folder in (PROCESSED, REJECTED):
                (self._dir / folder).mkdir(exist_ok=True)
            remove_our_temporaries(self._dir)

        try:
            await asyncio.to_thread(make)
        except OSError as err:
            self._problem("folder-make", f"drop folder {self._dir} is not usable: {err}", error=err)
            return False
        self._clear_problem("folder-make")
        return True

    async def _ready(self, now: float) -> list[str]:
        """Update the candidates from a fresh listing; names stable for stable_s, oldest first."""
        try:
            listing, bad_names, folder = await asyncio.to_thread(list_dir, self._dir)
        except OSError as err:
            self._problem(
                "folder-list", f"drop folder {self._dir} cannot be listed: {err}", error=err
            )
            await self._ensure_dirs(parents=False)
            return []
        self._clear_problem("folder-list")
        if self._watched is not None and folder != self._watched:
            # The folder was recreated or remounted: the watch is on the old one. Restart it.
            self._watched = None
            self._watch_stop.set()
        for name in bad_names:
            self._problem(
                f"name:{name!r}",
                f"drop folder: {printable(name)!r} is left alone: its name is not valid UTF-8",
            )
        for name in list(self._candidates):
            if name not in listing:
                del self._candidates[name]
        ready: list[tuple[float, str]] = []
        for name, sig in listing.items():
            seen = self._candidates.get(name)
            if seen is None or seen.sig != sig:
                self._candidates[name] = _Seen(sig, now)
            elif now - seen.since >= self._stable_s and now >= seen.retry_at:
                ready.append((seen.since, name))
        return [name for _since, name in sorted(ready)]

    # -- one file

    async def _handle_batch(self, names: Sequence[str]) -> list[DropReport]:
        """Handle up to BATCH_SIZE stable files, each step once for the whole batch.

        Per file the order is always: lines recorded as pending → requests submitted → result
        and destination recorded → result file written and file moved → move recorded. Doing
        each step for the batch at once saves a database round trip or a thread hop per file.
        """
        prepared = await self._prepare(names)
        if not prepared:
            return []
        outcomes = await asyncio.to_thread(place_all, self._dir, [p for _n, _d, p in prepared])
        reports: list[DropReport] = []
        moved: list[drops.Placement] = []
        vanished: list[drops.Placement] = []
        for (name, decision, placement), outcome in zip(prepared, outcomes, strict=True):
            try:
                placement, outcome = await self._retry_taken(placement, outcome)
                if isinstance(outcome, Exception):
                    raise outcome
            except Exception as err:
                self._failed(name, err)
                continue
            self._candidates.pop(name, None)
            self._clear_problem(f"file:{name}")
            if outcome == "gone":
                vanished.append(placement)
                continue
            moved.append(placement)
            reports.append(
                DropReport(
                    file=name,
                    moved_to=placement.dest,
                    accepted=decision.accepted,
                    rejected=decision.rejected,
                    error=decision.error,
                    duplicate=decision.duplicate,
                )
            )
        await drops.finish_placements(self._store, moved=moved, vanished=vanished)
        for report in reports:
            self._events.publish("drop", **asdict(report))
            log.info("drop file handled", **asdict(report))
        return reports

    async def _prepare(self, names: Sequence[str]) -> list[tuple[str, _Decision, drops.Placement]]:
        """Read the files, submit what is new, and record where each goes (before any move)."""
        seen = {name: self._candidates[name].sig for name in names}
        snaps = await asyncio.to_thread(snapshot_all, self._dir, seen)
        files: list[tuple[Snapshot, str | None]] = []
        for name in names:
            snap = snaps[name]
            if isinstance(snap, Exception):
                self._failed(name, snap)
            elif snap is None:
                self._candidates.pop(name, None)  # changed or gone: the next pass decides
            else:
                sha = hashlib.sha256(snap.data).hexdigest() if snap.data is not None else None
                files.append((snap, sha))
        if not files:
            return []
        records = await drops.get_drops(self._store, [sha for _s, sha in files if sha])
        known = set(records)
        placements = await drops.find_placements(
            self._store,
            # A content never recorded cannot have a move under way.
            [(s.name, s.dev, s.ino, sha) for s, sha in files if sha is None or sha in records],
        )
        # Parse each new content once (two files of a batch may hold the same bytes).
        problems: dict[str, str] = {}
        new: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        pools = self._pools() if any(sha and sha not in records for _s, sha in files) else {}
        for snap, sha in files:
            if snap.problem or sha is None or snap.data is None or sha in records or sha in new:
                continue
            try:
                new[sha] = (snap.name, parse_request_file(snap.name, snap.data, pools))
            except FileProblem as err:
                problems[snap.name] = str(err)
        records.update(await drops.add_drops(self._store, new))
        # Submit each pending content once; a failure keeps it pending and its files waiting.
        results: dict[str, dict[str, Any]] = {}
        failures: dict[str, Exception] = {}
        for sha, record in records.items():
            if record.state != drops.PENDING:
                continue
            try:
                results[sha] = await self._submit_all(record)
            except Exception as err:
                failures[sha] = err
                continue
            records[sha] = replace(record, state=drops.SUBMITTED, result=results[sha])
        decided: list[tuple[Snapshot, str | None, _Decision]] = []
        first_of: dict[str, str] = {}
        for snap, sha in files:
            if sha is not None and sha in failures:
                self._failed(snap.name, failures[sha])
                continue
            content = records.get(sha) if sha is not None else None
            earlier = first_of.setdefault(sha, snap.name) if sha is not None else snap.name
            # Same content as an earlier file (not this very file again after a restart).
            duplicate = content is not None and (
                (sha in known and (content.moved_to is not None or content.name != snap.name))
                or earlier != snap.name
            )
            problem = snap.problem or problems.get(snap.name)
            decided.append((snap, sha, _decision(snap.name, content, problem, duplicate)))
        missing = [
            (snap, sha, decision)
            for snap, sha, decision in decided
            if (snap.name, snap.dev, snap.ino, sha) not in placements
        ]
        dests = await asyncio.to_thread(
            free_dests, self._dir, [(d.folder, snap.name) for snap, _sha, d in missing]
        )
        wanted: list[drops.NewPlacement] = []
        for (snap, sha, decision), dest in zip(missing, dests, strict=True):
            if isinstance(dest, Exception):
                self._failed(snap.name, dest)
                continue
            wanted.append(
                drops.NewPlacement(snap.name, snap.dev, snap.ino, sha, dest, decision.sidecar)
            )
        for placement in await drops.add_placements(self._store, wanted, results):
            placements[(placement.name, placement.dev, placement.ino, placement.sha256)] = placement
        prepared: list[tuple[str, _Decision, drops.Placement]] = []
        for snap, sha, decision in decided:
            found = placements.get((snap.name, snap.dev, snap.ino, sha))
            if found is not None:
                prepared.append((snap.name, decision, found))
        return prepared

    def _failed(self, name: str, err: Exception) -> None:
        # One bad file never blocks the others; it is tried again after a rescan interval.
        seen = self._candidates.get(name)
        if seen is not None:
            seen.retry_at = self._clock() + self._rescan_s
        self._problem(f"file:{name}", f"drop file {name!r} not handled yet: {err}", error=err)

    async def _retry_taken(
        self, placement: drops.Placement, outcome: PlaceOutcome
    ) -> tuple[drops.Placement, PlaceOutcome]:
        """A name taken since it was chosen: record the next free one, then move there."""
        for _attempt in range(100):
            if outcome != "taken":
                return placement, outcome
            folder = placement.dest.partition("/")[0]
            dest = await asyncio.to_thread(free_dest, self._dir, folder, placement.name)
            placement = await drops.change_dest(self._store, placement, dest)
            [outcome] = await asyncio.to_thread(place_all, self._dir, [placement])
        raise OSError(f"no free name for {placement.name!r} in {placement.dest}")

    async def _submit_all(self, record: drops.DropRecord) -> dict[str, Any]:
        """Submit every parsed request of a recorded content; the result for the result file."""
        outcomes: dict[int, SubmitOutcome] = {}
        for chunk in submit_chunks(record.lines):
            key = idempotency_key(record.sha256, chunk[0]["line"])
            got = await self._submit([Request(**entry["request"]) for entry in chunk], key)
            if len(got) != len(chunk) or not all(isinstance(o, SubmitOutcome) for o in got):
                raise TypeError(f"submit answered {len(got)} outcomes for {len(chunk)} requests")
            outcomes.update(zip((entry["line"] for entry in chunk), got, strict=True))
        return build_result(record.lines, outcomes)

    async def _resume(self, now: float) -> None:
        """Finish what a previous run left half done (docs/reliability.md C5)."""
        try:
            if not await asyncio.to_thread(self._dir.is_dir):
                # An unmounted share must not make every unfinished move look "gone".
                raise FileNotFoundError(f"{self._dir} is not there")
            for record in await drops.pending_drops(self._store):
                await drops.record_result(
                    self._store, record.sha256, await self._submit_all(record)
                )
                log.info("drop requests resumed after a restart", file=record.name)
            moved: list[drops.Placement] = []
            vanished: list[drops.Placement] = []
            for placement in await drops.unfinished_placements(self._store):
                where = await asyncio.to_thread(settle, self._dir, placement)
                if where == "moved":
                    moved.append(placement)
                elif where == "gone":
                    vanished.append(placement)
                # "present": the normal pass moves it, to the destination already chosen.
            await drops.finish_placements(self._store, moved=moved, vanished=vanished)
        except Exception as err:
            self._resume_at = now + self._rescan_s
            self._problem(
                "resume", f"drop folder: unfinished work not resumed yet: {err}", error=err
            )
            return
        self._resume_at = float("inf")
        self._clear_problem("resume")

    # -- log on change

    def _problem(self, key: str, message: str, *, error: BaseException | None = None) -> None:
        if self._problems.get(key) == message:
            return
        self._problems[key] = message
        log.warning(message, error=error)

    def _clear_problem(self, key: str) -> None:
        if self._problems.pop(key, None) is not None:
            log.info("drop folder problem cleared", what=key)


async def _changes_in(
    folder: Path, stop: asyncio.Event, *, force_polling: bool
) -> AsyncIterator[None]:
    """Once per batch of changes in `folder` (not its subfolders), until `stop` is set.

    What `watchfiles.awatch` does, without anyio: awatch runs the watcher's blocking `watch` in
    anyio's worker thread, and anyio's asyncio backend is ~1.8 MiB of an idle daemon (issue 13).
    Here it runs in a thread of its own, as there. Raises what the watcher raises (a folder that
    is gone: FileNotFoundError)."""
    # watchfiles' default 50 ms step wakes its thread 20 times a second, which alone costs
    # ~0.2 % CPU idle; 200 ms costs a fifth of that and adds at most 0.15 s to a drop the 1 s
    # stability wait already delays (issue 2's budget). Debounce, poll delay and the 5 s timeout
    # after which `watch` returns to look at `stop` are awatch's defaults.
    debounce_ms, step_ms, timeout_ms, poll_delay_ms = 1600, 200, 5000, 300
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-watch")
    loop = asyncio.get_running_loop()
    try:
        with RustNotify([str(folder)], False, force_polling, poll_delay_ms, False, True) as notify:
            while True:
                try:
                    outcome = await loop.run_in_executor(
                        thread, notify.watch, debounce_ms, step_ms, timeout_ms, stop
                    )
                except asyncio.CancelledError:
                    stop.set()  # the thread returns within a step
                    raise
                if outcome == "stop":
                    return
                if outcome == "signal":  # as awatch: the watching thread never takes signals
                    raise RuntimeError("the drop folder's watch thread received a signal")
                if outcome != "timeout":
                    yield None
    finally:
        thread.shutdown(wait=False)
