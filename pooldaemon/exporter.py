"""Keeping the exports current: the library's playlists and collections for DJ software.

docs/interface.md §9: the files of `[exports]` are rewritten within 10 s of a batch of
downloads finishing, and on `poolctl export`. A job reaching `done` schedules an export
`DEBOUNCE_S` later; every download finishing meanwhile joins it. Exports run one at a time,
in a worker thread (`exports.export_all`); a file the user edited is never replaced (ours goes
beside it, logged once), and what was written last to each file is kept in the state database.
When files were only added since the last export, only they are read and each file is spliced
from the one written last (`exports.export_changes`, docs/architecture.md step 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pooldaemon.config import ExportsConfig
from pooldaemon.errors import DiskFull, ExportError, PoolDaemonError
from pooldaemon.events import EventBus
from pooldaemon.log import get_logger
from pooldaemon.store import Store
from pooldaemon.store import exports as store_exports
from pooldaemon.store.exports import ExportRecord, LibraryMark
from pooldaemon.tasks import cancel_and_wait

if TYPE_CHECKING:
    # The writing path (export_library, the exports package) is imported by the first export:
    # an idle daemon, or one with exports off, does not carry it (issue 13: idle RSS).
    from pooldaemon.export_library import LibraryBuilder, LibraryView, Listed
    from pooldaemon.exports import ExportTargets
    from pooldaemon.exports.writefile import Written

log = get_logger(__name__)

#: How long after the first download of a batch finishes the export starts. Downloads that
#: finish meanwhile join it. When exports take long (a 100,000-file library: ~4 s), the wait is
#: shortened so that wait plus export stays within `_WITHIN_S`: a batch is in the files within
#: 10 s of its last download (docs/interface.md §9).
DEBOUNCE_S = 5.0
_WITHIN_S = 8.0
_MIN_DELAY_S = 1.0
#: Events after which the library may hold other files. `dropped`: this subscriber missed
#: events, possibly a finished download.
_LIBRARY_EVENTS = frozenset({"library.changed", "dropped"})
#: Each format and the `ExportTargets` field that switches it on.
_FORMAT_KEYS = (
    ("m3u8", "m3u8_dir"),
    ("rekordbox", "rekordbox_xml"),
    ("traktor", "traktor_nml"),
    ("serato", "serato_dir"),
)


class Exporter:
    """The one component that writes `[exports]`; see the module docstring."""

    def __init__(
        self,
        store: Store,
        config: ExportsConfig,
        download_dir: Path,
        events: EventBus,
        *,
        delay_s: float = DEBOUNCE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.download_dir = download_dir
        self.events = events
        self.delay_s = delay_s
        self.clock = clock  # Unix time: what "New this week" counts back from
        # Whether the last export wrote only what was added since the one before.
        self.added_only = False
        self._wake = asyncio.Event()
        self._due: float | None = None  # loop time of the scheduled export
        self._waiters: list[asyncio.Future[list[Written]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._current: asyncio.Task[list[Written]] | None = None
        self._last_duration_s = 0.0
        # What the last export listed and wrote: the next one writes only what was added
        # since, copying the rest from those files (export_library.py, exports/reuse.py).
        self._listed: Listed | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        # The library's change log only serves the export after another of this process's
        # exports: the first is a full one. Emptied here, it cannot grow while exports are off.
        await store_exports.forget_changes(self.store)
        if not self.config.enabled:
            return
        self._tasks = [
            asyncio.create_task(self._run(), name="exports"),
            asyncio.create_task(self._follow(), name="exports-events"),
        ]
        # Files that finished while the daemon was down, or an export switched on since:
        # bring the files up to date once, unless there is nothing to list.
        if await store_exports.library_has_files(self.store):
            self.request_soon()

    async def stop(self) -> None:
        """Stop scheduling; an export being written is finished (its record kept) first."""
        current = self._current
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ExportError("pooldaemon is stopping; nothing was exported"))
        self._waiters = []
        if current is not None:
            # Without its record, the next run would take our own file for the user's.
            # Shielded: if the daemon's stop budget runs out first, the export still finishes.
            with contextlib.suppress(Exception):
                await asyncio.shield(current)

    # -- requests ------------------------------------------------------------------------------

    def request_soon(self) -> None:
        """Export `delay_s` from now, unless one is already scheduled (then this joins it)."""
        if self._due is None:
            delay = max(min(self.delay_s, _WITHIN_S - self._last_duration_s), _MIN_DELAY_S)
            self._due = asyncio.get_running_loop().time() + delay
            self._wake.set()

    async def export_now(self) -> list[Written]:
        """Export now and return what was written (`poolctl export`).

        An export already running read the library before this was asked: this waits for the
        next one, which starts as soon as that one is done.
        """
        if not self.config.enabled:
            return []
        if not self._tasks:
            raise ExportError("exports are not running (pooldaemon is starting or stopping)")
        waiter: asyncio.Future[list[Written]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        return await waiter

    # -- background ----------------------------------------------------------------------------

    async def _follow(self) -> None:
        async with self.events.subscribe() as stream:
            async for event in stream:
                kind = event.get("type")
                if kind == "job.state":
                    job = event.get("job")
                    if isinstance(job, dict) and job.get("state") == "done":
                        self.request_soon()
                elif kind in _LIBRARY_EVENTS:
                    self.request_soon()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._waiters and self._due is not None:
                delay = self._due - loop.time()
                if delay > 0:
                    # `export_now` cuts the wait short; more downloads finishing do not.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    self._wake.clear()
            if not self._waiters and self._due is None:
                continue
            waiters, self._waiters = self._waiters, []
            self._due = None
            # Shielded: a stop lets the files and their record finish together (see `stop`).
            self._current = asyncio.create_task(self._export_once())
            try:
                written = await asyncio.shield(self._current)
            except asyncio.CancelledError:
                for waiter in waiters:
                    waiter.cancel()
                raise
            except Exception as err:
                message = err.message if isinstance(err, PoolDaemonError) else repr(err)
                if not waiters:
                    log.error("export failed", error=message)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(err)
                continue
            finally:
                self._current = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(written)

    async def _export_once(self) -> list[Written]:
        started = time.monotonic()
        now = self.clock()
        mark = await store_exports.library_mark(self.store)
        records = await store_exports.export_records(self.store)
        before, self._listed = self._listed, None  # set again once this export succeeded
        outcome = None
        if before is not None and _still_ours(before, records):
            outcome = await self._export_added(before, mark, now, records)
            if outcome is not None and not outcome.complete:
                # A file changed while it was written from: keep what was written, and let
                # the full export below take it as ours.
                await self._record(outcome.written, [], records)
                records = await store_exports.export_records(self.store)
                outcome = None
        self.added_only = outcome is not None
        if outcome is None:
            outcome = await self._export_full(mark, now, records, before)
        written, errors = outcome.written, outcome.errors
        await store_exports.forget_changes(self.store, mark.change_seq)
        self._listed = outcome.listed
        log.info(
            "exports written",
            files=len(written),
            rewritten=sum(w.replaced for w in written),
            tracks=outcome.tracks,
            added_only=self.added_only,
            seconds=round(time.monotonic() - started, 2),
        )
        self.events.publish(
            "exports.written", written=[{"format": w.format, "path": str(w.path)} for w in written]
        )
        self._last_duration_s = time.monotonic() - started
        if errors:
            raise _export_error(errors[0])
        return written

    async def _export_added(
        self, before: Listed, mark: LibraryMark, now: float, records: dict[str, ExportRecord]
    ) -> _Outcome | None:
        """Write only what entries added since `before` change (`exports.export_changes`);
        None, with nothing written, when more than that changed."""
        from pooldaemon.export_library import LibraryBuilder, delta, listed_after
        from pooldaemon.exports import export_changes

        if await store_exports.changed_since(self.store, before.mark):
            return None
        builder = LibraryBuilder(now=now)
        after = before.mark.max_id
        while page := await store_exports.library_page(self.store, after, mark.max_id):
            await asyncio.to_thread(builder.add, page)
            after = page[-1][0]  # the entry's id
        targets = self._targets(records, None)
        kinds = set(self.config.playlists)

        def work() -> _Outcome | None:
            change = delta(before, builder, kinds)
            if change is None:
                return None
            written, complete = export_changes(change, targets, before.written)
            if not complete and not written:
                return None
            now_listed = listed_after(before, builder, change, mark, written)
            return _Outcome(now_listed, written, now_listed.count, complete)

        outcome = await asyncio.to_thread(work)
        if outcome is not None and outcome.complete:
            await self._record(outcome.written, [], records)
        return outcome

    async def _export_full(
        self,
        mark: LibraryMark,
        now: float,
        records: dict[str, ExportRecord],
        before: Listed | None,
    ) -> _Outcome:
        from pooldaemon.export_library import LibraryBuilder, listed

        # A page of the library at a time, each turned into tracks in the worker thread: the
        # raw rows of a 100,000-file library never sit in memory together.
        builder = LibraryBuilder(now=now)
        after = 0
        while page := await store_exports.library_page(self.store, after, mark.max_id):
            await asyncio.to_thread(builder.add, page)
            after = page[-1][0]  # the entry's id
        targets = self._targets(records, before)
        view, written, forget, errors = await asyncio.to_thread(
            _export_in_thread, builder, targets, self.config, records
        )
        # What was written is recorded even when another format failed: otherwise the next
        # export would take those files, ours, for the user's.
        await self._record(written, forget, records)
        # Only a complete export is a base for the next one to add to.
        now_listed = None if errors else listed(builder, view, mark, written)
        return _Outcome(now_listed, written, len(view.tracks), errors=errors)

    async def _record(
        self, written: list[Written], forget: list[str], records: dict[str, ExportRecord]
    ) -> None:
        await store_exports.save_export_records(
            self.store,
            [ExportRecord(str(w.target), w.format, str(w.path), w.digest) for w in written],
            forget,
        )
        for w in written:
            _log_beside(w, records.get(str(w.target)))

    def _targets(self, records: dict[str, ExportRecord], before: Listed | None) -> ExportTargets:
        from pooldaemon.exports import ExportTargets

        cfg = self.config
        layouts = {}
        if before is not None:
            # Only for the file the record describes: a mismatch means it is not what we think.
            layouts = {
                target: w.layout
                for target, w in before.written.items()
                if w.layout is not None
                and (record := records.get(str(target))) is not None
                and record.digest == w.digest
            }
        return ExportTargets(
            m3u8_dir=cfg.m3u8_dir,
            m3u8_root=self.download_dir,
            rekordbox_xml=cfg.rekordbox_xml,
            traktor_nml=cfg.traktor_nml,
            serato_dir=cfg.serato_dir,
            last_digests={Path(target): r.digest for target, r in records.items()},
            layouts=layouts,
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What an export did."""

    listed: Listed | None  # what it listed; None: the next export reads everything again
    written: list[Written]
    tracks: int  # in the collections
    complete: bool = True  # False: a file changed while it was spliced (see `_export_once`)
    errors: list[OSError] = field(default_factory=list)  # of formats not written


def _still_ours(before: Listed, records: dict[str, ExportRecord]) -> bool:
    """Whether the files `before` wrote are still recorded as ours, as written."""
    for target, w in before.written.items():
        record = records.get(str(target))
        if record is None or record.digest != w.digest or record.path != str(w.path):
            return False
    return True


# -- in the worker thread ----------------------------------------------------------------------


def _export_in_thread(
    builder: LibraryBuilder,
    targets: ExportTargets,
    config: ExportsConfig,
    records: dict[str, ExportRecord],
) -> tuple[LibraryView, list[Written], list[str], list[OSError]]:
    """Write every enabled format of the library, remove playlists that went away.

    One format failing (a folder that cannot be written) does not keep the others from being
    written; the errors are returned for the caller to report.
    """
    from pooldaemon.exports import export_all

    view = builder.view(set(config.playlists))
    written: list[Written] = []
    errors: list[OSError] = []
    failed: set[str] = set()
    for fmt, only in _each_format(targets):
        try:
            written += export_all(view.tracks, view.playlists, only)
        except OSError as err:
            errors.append(err)
            failed.add(fmt)
    forget = _remove_stale(written, targets, records, failed)
    return view, written, forget, errors


def _each_format(targets: ExportTargets) -> Iterator[tuple[str, ExportTargets]]:
    """`targets` split into one per enabled format."""
    off = {key: None for _, key in _FORMAT_KEYS}
    for fmt, key in _FORMAT_KEYS:
        if getattr(targets, key) is not None:
            yield fmt, dataclasses.replace(targets, **{**off, key: getattr(targets, key)})


def _remove_stale(
    written: list[Written],
    targets: ExportTargets,
    records: dict[str, ExportRecord],
    failed: set[str],
) -> list[str]:
    """Playlist files of playlists that are gone: removed when still as we wrote them.

    Only in the folders written to this time (not of a format that failed); a file changed
    since is the user's and stays. Returns the targets to forget.
    """
    from pooldaemon.exports.model import SUBCRATES_DIR
    from pooldaemon.exports.writefile import file_digest

    folders = {}
    if targets.m3u8_dir is not None:
        folders["m3u8"] = targets.m3u8_dir
    if targets.serato_dir is not None:
        folders["serato"] = targets.serato_dir / SUBCRATES_DIR
    current = {str(w.target) for w in written}
    forget = []
    for target, record in records.items():
        folder = folders.get(record.format)
        if record.format in failed or target in current or folder is None:
            continue
        if Path(target).parent != folder:
            continue
        forget.append(target)
        path = Path(record.path)
        try:
            if file_digest(path) == record.digest:
                path.unlink(missing_ok=True)
                log.info("removed a playlist file no longer exported", path=str(path))
        except OSError as err:
            log.warning(
                "cannot remove a playlist file no longer exported",
                path=str(path),
                error=err.strerror or str(err),
            )
    return forget


# -- helpers -----------------------------------------------------------------------------------


def _log_beside(written: Written, before: ExportRecord | None) -> None:
    """Once per change, not on every export: the user's file stays, ours is beside it."""
    if written.beside and (before is None or not before.beside):
        log.warning(
            "export file changed by someone else: left as it is, pooldaemon's is beside it",
            format=written.format,
            file=str(written.target),
            written_to=str(written.path),
        )
    elif not written.beside and before is not None and before.beside:
        log.info(
            "export file written in place again",
            format=written.format,
            file=str(written.target),
        )


def _export_error(err: OSError) -> ExportError | DiskFull:
    where = err.filename or "an export file"
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        return DiskFull(f"exports: no space left to write {where}")
    return ExportError(f"exports: cannot write {where}: {reason} (check [exports] in the config)")
