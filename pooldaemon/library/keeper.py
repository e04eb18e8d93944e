"""The library keeper: adopt what is on disk, audit and heal, and its background pass.

docs/interface.md §8. One component with `start()`/`stop()` (wired in wiring.py):

- **the background pass** stores the song key and version of every mirrored track the store
  has not keyed yet (catalog writes leave them `NULL`, so a full sync keeps its speed), and
  completes library entries from before the library knew songs: song key, version and audio
  checksum (`audiohash.py`). It runs after start-up without holding READY back, after each
  sync and each finished download, in small batches that leave the event loop free.
- **adopt** walks folders read-only (`library/scan.py`; the files are read in a worker
  process), matches each file to mirrored tracks by song+version (tags first, then the file
  name, then the length) and records the matches as `adopted`. `adopt_dirs` are adopted at
  start-up and with every audit; a file whose size, mtime and inode did not change is not read
  again.
- **audit** checks every present entry: quick (exists; size, mtime or inode changed → the
  audio checksum is verified) or full (every audio checksum). Missing → `deleted` (or `lost`
  with `missing = "redownload"`), changed audio → `lost` (docs/reliability.md L2-L4).
- **heal** fetches `lost` entries again (a redownload: Promo Only is told why) and puts each
  back at its own path with one rename, so DJ software that knows the path keeps its cues.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pooldaemon import songkey
from pooldaemon.errors import BadRequest
from pooldaemon.events import EventBus
from pooldaemon.library_config import LibraryConfig
from pooldaemon.log import get_logger
from pooldaemon.models import JobState, LibraryState, Request
from pooldaemon.offload import Offload
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store.catalog import track_song
from pooldaemon.store.db import Store

if TYPE_CHECKING:
    # Reading files (library.scan, library.files, audiohash) is imported by the first adopt,
    # audit, heal or checksum: an idle daemon does not carry it (issue 13: idle RSS).
    from pooldaemon.library.scan import FileRead, Found

log = get_logger(__name__)

#: Tracks keyed per batch of the background pass: ~10 ms of parsing, then the loop is free.
KEY_BATCH = 1000
#: Files per batch sent to the adopt worker.
READ_BATCH = 400


class Submit(Protocol):
    """The daemon's way to request a download (daemon.submit_request)."""

    def __call__(
        self, request: Request, origin: str, *, title: str | None = ..., artist: str | None = ...
    ) -> Awaitable[dict[str, Any]]: ...


@dataclass
class AuditResult:
    """`POST /v1/library/audit`: what one audit found."""

    checked: int = 0
    ok: int = 0
    deleted: int = 0
    lost: int = 0
    finished: float = 0.0
    full: bool = False

    def to_api(self) -> dict[str, Any]:
        return {"checked": self.checked, "ok": self.ok, "deleted": self.deleted, "lost": self.lost}


@dataclass
class _Match:
    read: FileRead
    state: str  # matched | unmatched | ambiguous
    chosen: tuple[str, str, str, float | None] | None = None
    candidates: list[tuple[str, str, str, float | None]] = field(default_factory=list)
    song: tuple[str, str] | None = None


class Library:
    """The library component (see the module)."""

    def __init__(
        self,
        store: Store,
        config: LibraryConfig,
        events: EventBus,
        submit: Submit,
        *,
        offload: Callable[[], Offload] = Offload,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.events = events
        self.submit = submit
        self.offload = offload
        self.clock = clock
        self.last_audit: AuditResult | None = None
        self.last_adopt: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()  # one adopt, audit or background batch at a time

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background pass (it does not hold READY back)."""
        self._tasks = [
            asyncio.create_task(self._background(), name="library"),
            asyncio.create_task(self._listen(), name="library-events"),
        ]
        self._wake.set()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    def wake(self) -> None:
        """Something new may need keying or finishing (a sync, a finished download)."""
        self._wake.set()

    async def _listen(self) -> None:
        async with self.events.subscribe() as stream:
            async for event in stream:
                kind = event.get("type")
                # A catalog pass that changed tracks leaves song keys to compute; a finished
                # download an entry to complete (or a heal to put back).
                changed = kind == "sync" and event.get("what") == "catalog"
                changed = changed and bool(event.get("added") or event.get("updated"))
                if changed or (
                    kind == "job.state" and event.get("job", {}).get("state") == JobState.DONE
                ):
                    self._wake.set()

    async def _background(self) -> None:
        first = True
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.complete()
                await self.finish_heals()
                if first and self.config.adopt_dirs:
                    first = False
                    await self._adopt_configured()
            except asyncio.CancelledError:
                raise
            except Exception:  # the pass runs again on the next wake; it must not die
                log.exception("library background pass failed")
            first = False

    async def _adopt_configured(self) -> None:
        dirs = [str(path) for path in self.config.adopt_dirs]
        report = await self.adopt(dirs, dry_run=False)
        log.info("adopt_dirs scanned", **{k: v for k, v in report.items() if k != "problems"})

    # -- the background pass --------------------------------------------------------------------

    async def complete(self) -> int:
        """Key the mirror's unkeyed tracks and complete old entries; how many were done."""
        async with self._lock:
            done = await self._key_tracks()
        return done + await self._complete_entries()

    async def _key_tracks(self) -> int:
        """Store the song key and version of every mirrored track without them. Many (after a
        catalog's first sync) are parsed in a worker process, beside the event loop, one batch
        ahead of the writes."""
        after = 0
        done = 0
        worker: Offload | None = None
        pending: asyncio.Future[list[tuple[str, str, int]]] | None = None
        try:
            while True:
                rows = await store_library.unkeyed_tracks(self.store, after, KEY_BATCH)
                parsing: asyncio.Future[list[tuple[str, str, int]]] | None = None
                if rows:
                    plain = [tuple(row) for row in rows]
                    if worker is None and len(rows) == KEY_BATCH:
                        worker = self.offload()
                    if worker is not None:
                        parsing = asyncio.ensure_future(worker.run(key_rows, plain))
                    else:
                        done_here = asyncio.get_running_loop().create_future()
                        done_here.set_result(key_rows(plain))
                        parsing = done_here
                    after = rows[-1][0]
                    done += len(rows)
                if pending is not None:
                    await store_library.store_track_songs(self.store, await pending)
                pending = parsing
                if pending is None:
                    return done
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
            if worker is not None:
                await worker.close()

    async def _complete_entries(self) -> int:
        """Song, version and audio checksum of entries without them. A big library's first
        checksums read every file: the lock is taken a batch at a time, so an audit or an
        adopt asked for meanwhile waits for one batch, not for the whole pass."""
        after = 0
        done = 0
        while True:
            async with self._lock:
                rows = await store_library.entries_missing(self.store, after, 50)
                for row in rows:
                    after = row["id"]
                    await self._complete_entry(row)
                    done += 1
            if not rows:
                return done

    async def _complete_entry(self, row: dict[str, Any]) -> None:
        if row["t_key"] is not None:
            song = (row["t_key"], row["t_version"] or "")
        elif row["artist"] is not None or row["title"] is not None:
            parsed = track_song(
                row["artist"],
                row["title"],
                row["mix"],
                row["advisory"],
                row["video"],
                row["quality"],
            )
            song = (parsed.key, parsed.version.label)
        elif row["j_title"]:
            parsed = songkey.parse(row["j_artist"] or "", row["j_title"])
            song = (parsed.key, parsed.version.label)
        else:
            song = ("", "")  # nothing names it: kept, but it holds no song
        if row["song_key"] is not None:
            song = (row["song_key"], row["l_version"] or "")
        seen = None
        if row["state"] in store_library.PRESENT_STATES and row["audio_hash"] is None:
            from pooldaemon.library.files import look

            seen = await asyncio.to_thread(look, row["path"], True)
        await store_library.fill_entry(
            self.store,
            row["id"],
            song_key=song[0],
            version=song[1],
            length_s=row["l_length"] if row["l_length"] is not None else row["length_s"],
            audio_hash=seen.audio_hash if seen else None,
            size=seen.size if seen else None,
            mtime_ns=seen.mtime_ns if seen else None,
            inode=seen.inode if seen else None,
        )

    # -- adopt ------------------------------------------------------------------------------------

    async def adopt(self, paths: Sequence[str], *, dry_run: bool = False) -> dict[str, Any]:
        """`POST /v1/library/adopt`: scan, match and (unless `dry_run`) record (see the module)."""
        if not paths:
            raise BadRequest("name at least one file or folder to adopt")
        roots = [os.path.abspath(os.path.expanduser(str(path))) for path in paths]
        async with self._lock:
            await self._key_tracks()  # the mirror's song keys are what files are matched to
            report = await self._adopt(roots, dry_run)
        if not dry_run:
            self.last_adopt = {k: v for k, v in report.items() if k != "items"}
            self.events.publish("library.adopt", **self.last_adopt)
            self._wake.set()  # the adopted files' audio checksums, in the background
        return report

    async def _adopt(self, roots: list[str], dry_run: bool) -> dict[str, Any]:
        from pooldaemon.library.scan import shown, walk

        found, problems = await asyncio.to_thread(walk, roots)
        known = await store_library.known_paths(self.store, [f.path for f in found])
        fresh = [f for f in found if f.path not in known]
        reads = await self._read(fresh)
        matches = await self._match(reads)
        report: dict[str, Any] = {
            "scanned": len(found) + len(problems),
            "matched": len(known),
            "unmatched": 0,
            "ambiguous": 0,
            "problems": [{"path": p.path, "reason": p.reason} for p in problems],
        }
        adopted = []
        items = []
        for match in matches:
            if match.read.problem is not None:
                report["problems"].append(
                    {"path": shown(match.read.path), "reason": match.read.problem}
                )
                continue
            report[match.state] += 1
            if match.state == "matched" and match.chosen is not None and match.song is not None:
                pool, item_id, kind, _length = match.chosen
                adopted.append(
                    {
                        "pool": pool,
                        "kind": kind,
                        "item_id": item_id,
                        "path": match.read.path,
                        "size": match.read.size,
                        "song_key": match.song[0],
                        "version": match.song[1],
                        "length_s": match.read.length_s,
                        "mtime_ns": match.read.mtime_ns,
                        "inode": match.read.inode,
                    }
                )
            if match.state != "unmatched":
                items.append(_item(match))
        if dry_run:
            report["items"] = items
        else:
            await store_library.record_adopted(self.store, adopted)
        return report

    async def _read(self, found: list[Found]) -> list[FileRead]:
        """Each file as read now, or as read last time when size, mtime and inode agree."""
        from pooldaemon.library.scan import FileRead, read_files

        cached = await store_library.cached_files(self.store, [f.path for f in found])
        reads: list[FileRead] = []
        todo: list[tuple[str, int, int, int]] = []
        for f in found:
            row = cached.get(f.path)
            if row is not None and (row[1], row[2], row[3]) == (f.size, f.mtime_ns, f.inode):
                reads.append(FileRead(f.path, f.size, f.mtime_ns, f.inode, *row[4:]))
            else:
                todo.append((f.path, f.size, f.mtime_ns, f.inode))
        if not todo:
            return reads
        worker = self.offload() if len(todo) > READ_BATCH else None
        try:
            for start in range(0, len(todo), READ_BATCH):
                batch = todo[start : start + READ_BATCH]
                if worker is not None:
                    done = await worker.run(read_files, batch)
                else:
                    done = await asyncio.to_thread(read_files, batch)
                await store_library.remember_files(self.store, [_cache_row(r) for r in done])
                reads += done
        finally:
            if worker is not None:
                await worker.close()
        return reads

    async def _match(self, reads: list[FileRead]) -> list[_Match]:
        wanted: set[tuple[str, str]] = set()
        for read in reads:
            if read.song_key is not None and read.version is not None:
                wanted.add((read.song_key, read.version))
            if read.name_key is not None and read.name_version is not None:
                wanted.add((read.name_key, read.name_version))
        tracks = await store_library.tracks_for_songs(self.store, wanted)
        return [self._match_one(read, tracks) for read in reads]

    def _match_one(
        self,
        read: FileRead,
        tracks: dict[tuple[str, str], list[tuple[str, str, str, float | None]]],
    ) -> _Match:
        """Tags first, then the file name; the file's length must agree with the track's."""
        if read.problem is not None:
            return _Match(read, "unmatched")
        for key, version in ((read.song_key, read.version), (read.name_key, read.name_version)):
            if key is None or version is None:
                continue
            candidates = [
                track
                for track in tracks.get((key, version), [])
                if songkey.same_recording(read.length_s, track[3])
            ]
            if not candidates:
                continue
            # One song+version in several pools (or CrateQ sources) is one recording
            # (docs/interface.md §8); it is ambiguous only when the candidates' lengths say
            # they are different recordings and the file's own length cannot tell them apart.
            if not all(songkey.same_recording(a[3], b[3]) for a in candidates for b in candidates):
                return _Match(read, "ambiguous", candidates=candidates, song=(key, version))
            chosen = min(candidates, key=lambda t: (self.config.pool_rank(t[0]), t[0], t[1]))
            return _Match(read, "matched", chosen, candidates, (key, version))
        return _Match(read, "unmatched")

    # -- audit ------------------------------------------------------------------------------------

    async def scheduled_audit(self, _what: str = "quick") -> None:
        """The `audit_interval` tick (scheduler.py): a quick audit, then adopt_dirs again."""
        await self.audit(full=False)

    async def audit(self, *, full: bool = False) -> dict[str, Any]:
        """`POST /v1/library/audit` (see the module)."""
        result = AuditResult(full=full)
        async with self._lock:
            after = 0
            while True:
                entries = await store_library.present_entries(self.store, after, 200)
                if not entries:
                    break
                for entry in entries:
                    after = entry["id"]
                    result.checked += 1
                    await self._check(entry, full, result)
        result.finished = self.clock()
        self.last_audit = result
        self.events.publish("library.audit", full=full, **result.to_api())
        if result.deleted or result.lost:
            log.warning("library audit", full=full, **result.to_api())
        if self.config.adopt_dirs:
            await self._adopt_configured()
        return result.to_api()

    async def _check(self, entry: dict[str, Any], full: bool, result: AuditResult) -> None:
        from pooldaemon.library.files import look, same_stat

        unchanged = same_stat(entry)
        seen = await asyncio.to_thread(
            look, entry["path"], full or not unchanged or entry["audio_hash"] is None
        )
        adopted = entry["state"] == LibraryState.ADOPTED
        if seen.missing:
            # docs/reliability.md L4: the user removed it; never fetched again on its own.
            redownload = self.config.missing == "redownload" and not adopted
            state = LibraryState.LOST if redownload else LibraryState.DELETED
            await store_library.record_check(
                self.store, entry["id"], state=state, reason=seen.problem or "the file is gone"
            )
            if state == LibraryState.LOST:
                result.lost += 1
            else:
                result.deleted += 1
            return
        if seen.changing:
            # Another program is saving the file right now: judged at the next audit (the
            # stats are not recorded, so a quick audit reads it again).
            result.ok += 1
            return
        expected = entry["audio_hash"]
        unreadable = seen.audio_hash is None and seen.size is None
        if unreadable or (
            seen.audio_hash is not None and expected is not None and seen.audio_hash != expected
        ):
            reason = seen.problem or "the audio changed (damaged or cut short)"
            await store_library.record_check(
                self.store, entry["id"], state=LibraryState.LOST, reason=reason
            )
            result.lost += 1
            log.warning("library file damaged", path=entry["path"], reason=reason)
            return
        # docs/reliability.md L2: tags, cues and analysis changed, the audio did not.
        await store_library.record_check(
            self.store,
            entry["id"],
            size=seen.size,
            mtime_ns=seen.mtime_ns,
            inode=seen.inode,
            audio_hash=seen.audio_hash,
        )
        result.ok += 1

    # -- heal -------------------------------------------------------------------------------------

    async def heal(self) -> dict[str, Any]:
        """`POST /v1/library/heal`: fetch every `lost` entry again (see the module)."""
        await self.finish_heals()
        requested: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for entry in await store_library.lost_entries(self.store):
            if entry["job_id"] is None or not entry["item_id"]:
                # A file the user had is theirs: it is reported, never replaced.
                skipped.append({"path": entry["path"], "reason": "adopted: not replaced"})
                continue
            if entry["heal_job"] is not None:
                job = await store_jobs.get_job(self.store, entry["heal_job"])
                if job["state"] not in (JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED):
                    requested.append({"path": entry["path"], "job": job["id"]})
                    continue
            reason = entry["reason"] or "damaged"
            request = Request(
                entry["pool"],
                entry["item_id"],
                entry["kind"],
                redownload=True,
                reason=f"the library copy was lost ({reason}); replacing it",
            )
            job = await self.submit(request, "heal")
            await store_library.set_heal_job(self.store, entry["id"], int(job["id"]))
            requested.append({"path": entry["path"], "job": job["id"]})
        self.events.publish("library.heal", requested=len(requested), skipped=len(skipped))
        return {"requested": requested, "skipped": skipped}

    async def finish_heals(self) -> int:
        """Put each finished heal's file back at its entry's path (one rename); how many."""
        finished = 0
        for entry in await store_library.lost_entries(self.store):
            if entry["heal_job"] is None:
                continue
            job = await store_jobs.get_job(self.store, entry["heal_job"])
            if job["state"] != JobState.DONE or not job["path"]:
                continue
            target = entry["path"]
            if job["path"] != target:
                from pooldaemon.library.files import put_back

                await asyncio.to_thread(put_back, job["path"], target)
            await store_library.finish_heal(self.store, entry["id"], int(job["id"]), target)
            log.info("library file healed", path=target, job=job["id"])
            self.events.publish("library.healed", path=target, job=job["id"])
            finished += 1
        return finished

    # -- reading ----------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The library in `status` and `poolctl library`: entries by state, the last audit."""
        audit = self.last_audit
        return {
            "states": await store_library.state_counts(self.store),
            "last_audit": None
            if audit is None
            else {**audit.to_api(), "full": audit.full, "finished": audit.finished},
            "last_adopt": self.last_adopt,
        }


def key_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, str, int]]:
    """(song key, version, rowid) of mirrored tracks given as (rowid, artist, title, mix,
    advisory, video, quality): a pure function, so it may run in the worker process."""
    keyed = []
    for rowid, artist, title, mix, advisory, video, quality in rows:
        parsed = track_song(artist, title, mix, advisory, video, quality)
        keyed.append((parsed.key, parsed.version.label, rowid))
    return keyed


def _cache_row(read: FileRead) -> tuple[Any, ...]:
    return (
        read.path,
        read.size,
        read.mtime_ns,
        read.inode,
        read.song_key,
        read.version,
        read.name_key,
        read.name_version,
        read.length_s,
        read.problem,
    )


def _item(match: _Match) -> dict[str, Any]:
    def ref(track: tuple[str, str, str, float | None]) -> str:
        return f"{track[0]}:{track[1]}"

    return {
        "path": match.read.path,
        "state": match.state,
        "ref": ref(match.chosen) if match.chosen else None,
        "song": match.song[0] if match.song else None,
        "version": match.song[1] if match.song else None,
        "candidates": [ref(track) for track in match.candidates],
    }
