"""Keeping the exports current: the library's playlists and collections for DJ software.

docs/interface.md §9: the files of `[exports]` are rewritten within 10 s of a batch of
downloads finishing, and on `poolctl export`. A job reaching `done` schedules an export
`DEBOUNCE_S` later; every download finishing meanwhile joins it. Exports run one at a time,
in a worker thread (`exports.export_all`); a file the user edited is never replaced (ours goes
beside it, logged once), and what was written last to each file is kept in the state database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from pooldaemon.config import ExportsConfig
from pooldaemon.errors import DiskFull, ExportError, PoolDaemonError
from pooldaemon.events import EventBus
from pooldaemon.exports import (
    ExportTargets,
    ExportTrack,
    Fragments,
    Playlist,
    PlaylistKind,
    export_all,
)
from pooldaemon.exports.serato import SUBCRATES_DIR
from pooldaemon.exports.writefile import Written, file_digest
from pooldaemon.log import get_logger
from pooldaemon.store import Store
from pooldaemon.store import exports as store_exports
from pooldaemon.store.exports import ExportRecord
from pooldaemon.tasks import cancel_and_wait

log = get_logger(__name__)

#: How long after the first download of a batch finishes the export starts. Downloads that
#: finish meanwhile join it. When exports take long (a 100,000-file library: ~4 s), the wait is
#: shortened so that wait plus export stays within `_WITHIN_S`: a batch is in the files within
#: 10 s of its last download (docs/interface.md §9).
DEBOUNCE_S = 5.0
_WITHIN_S = 8.0
_MIN_DELAY_S = 1.0
#: "New this week": files added to the library in the last 7 days.
RECENT_S = 7 * 24 * 3600.0
RECENT_NAME = "New this week"
#: Events after which the library may hold other files. `dropped`: this subscriber missed
#: events, possibly a finished download.
_LIBRARY_EVENTS = frozenset({"library.changed", "dropped"})
#: Files of an extracted set (a Harvest album) that DJ software plays.
_MEDIA_SUFFIXES = frozenset(
    {".mp3", ".m4a", ".mp4", ".aac", ".wav", ".aif", ".aiff", ".flac", ".mov", ".m4v"}
)
#: Each format and the `ExportTargets` field that switches it on.
_FORMAT_KEYS = (
    ("m3u8", "m3u8_dir"),
    ("rekordbox", "rekordbox_xml"),
    ("traktor", "traktor_nml"),
    ("serato", "serato_dir"),
)


@dataclass(frozen=True, slots=True)
class LibraryView:
    """The library as the exports list it."""

    tracks: list[ExportTrack]
    playlists: list[Playlist]


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
    ) -> None:
        self.store = store
        self.config = config
        self.download_dir = download_dir
        self.events = events
        self.delay_s = delay_s
        self._wake = asyncio.Event()
        self._due: float | None = None  # loop time of the scheduled export
        self._waiters: list[asyncio.Future[list[Written]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._current: asyncio.Task[list[Written]] | None = None
        self._last_duration_s = 0.0
        # Each collection's entries as last written, with that file's digest: the next export
        # copies unchanged entries from the file instead of rendering them (exports/reuse.py).
        self._fragments: dict[Path, tuple[str, Fragments]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
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
        # A page of the library at a time, each turned into tracks in the worker thread: the
        # raw rows of a 100,000-file library never sit in memory together.
        builder = LibraryBuilder(now=time.time())
        after = 0
        while page := await store_exports.library_page(self.store, after):
            await asyncio.to_thread(builder.add, page)
            after = page[-1][_ID]
        records = await store_exports.export_records(self.store)
        targets = self._targets(records)
        view, written, forget, errors = await asyncio.to_thread(
            _export_in_thread, builder, targets, self.config, records
        )
        # What was written is recorded even when another format failed: otherwise the next
        # export would take those files, ours, for the user's.
        await store_exports.save_export_records(
            self.store,
            [ExportRecord(str(w.target), w.format, str(w.path), w.digest) for w in written],
            forget,
        )
        for w in written:
            _log_beside(w, records.get(str(w.target)))
            if w.fragments is not None:
                self._fragments[w.target] = (w.digest, w.fragments)
        log.info(
            "exports written",
            files=len(written),
            rewritten=sum(w.replaced for w in written),
            tracks=len(view.tracks),
            playlists=len(view.playlists),
            seconds=round(time.monotonic() - started, 2),
        )
        self.events.publish(
            "exports.written", written=[{"format": w.format, "path": str(w.path)} for w in written]
        )
        self._last_duration_s = time.monotonic() - started
        if errors:
            raise _export_error(errors[0])
        return written

    def _targets(self, records: dict[str, ExportRecord]) -> ExportTargets:
        cfg = self.config
        return ExportTargets(
            m3u8_dir=cfg.m3u8_dir,
            m3u8_root=self.download_dir,
            rekordbox_xml=cfg.rekordbox_xml,
            traktor_nml=cfg.traktor_nml,
            serato_dir=cfg.serato_dir,
            last_digests={Path(target): r.digest for target, r in records.items()},
            # Only for the file the record describes: a mismatch means it is not what we think.
            fragments={
                target: fragments
                for target, (digest, fragments) in self._fragments.items()
                if (record := records.get(str(target))) is not None and record.digest == digest
            },
        )


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


(
    _ID,
    _POOL,
    _KIND,
    _ITEM_ID,
    _PATH,
    _SIZE,
    _CREATED,
    _ORIGIN,
    _REF,
    _ARCHIVE,
    _ARCHIVE_NAME,
    _ARTIST,
    _TITLE,
    _ALBUM,
    _GENRE,
    _BPM,
    _KEY,
    _YEAR,
    _LABEL,
    _MIX,
    _COMMENT,
    _LENGTH_S,
) = range(len(store_exports.LIBRARY_COLUMNS))


class LibraryBuilder:
    """Library rows (`store_exports.library_page`, in the order they joined the library) →
    tracks and the playlists over them."""

    def __init__(self, *, now: float) -> None:
        self.recent_since = now - RECENT_S
        self._shared = _Shared(datetime.fromtimestamp(now, UTC).astimezone().tzinfo)
        self.tracks: list[ExportTrack] = []
        self._seen: set[str] = set()
        self._by_pool: dict[str, list[Path]] = {}
        self._by_rule: dict[str, list[Path]] = {}
        self._recent: list[Path] = []

    def add(self, rows: Iterable[Any]) -> None:
        for row in rows:
            origin = row[_ORIGIN] or ""
            rule = origin[5:] if origin.startswith("rule:") else None
            recent = row[_CREATED] >= self.recent_since
            for track in _row_tracks(row, self._shared):
                key = str(track.path)
                if key in self._seen:
                    continue
                self._seen.add(key)
                self.tracks.append(track)
                self._by_pool.setdefault(track.pool, []).append(track.path)
                if rule:
                    self._by_rule.setdefault(rule, []).append(track.path)
                if recent:
                    self._recent.append(track.path)

    def view(self, kinds: set[str]) -> LibraryView:
        """The tracks (oldest first) and the playlists `kinds` asks for (each newest first)."""
        playlists: list[Playlist] = []
        if "pool" in kinds:
            playlists += _family(self._by_pool, PlaylistKind.POOL)
        if "rule" in kinds:
            playlists += _family(self._by_rule, PlaylistKind.RULE)
        if "recent" in kinds:
            # Always there, even empty: the DJ's "New this week" must empty out, not go stale.
            recent = tuple(reversed(self._recent))
            playlists.append(Playlist(RECENT_NAME, PlaylistKind.RECENT, recent))
        return LibraryView(self.tracks, playlists)


def _family(members: dict[str, list[Path]], kind: PlaylistKind) -> list[Playlist]:
    return [
        Playlist(name, kind, tuple(reversed(members[name])))
        for name in sorted(members, key=lambda n: (n.casefold(), n))
    ]


class _Shared:
    """One object for each value many tracks have in common, for the length of one export.

    A 100,000-file library read row by row gets its own copy of every artist, genre, label and
    directory; shared, they cost ~50 MB less (docs/interface.md §12: exports under 200 MB).
    """

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz  # one time zone object for every `added`
        self._texts: dict[str, str] = {}
        self._dirs: dict[str, Path] = {}

    def text(self, value: Any) -> str:
        text = _text(value)
        return self._texts.setdefault(text, text)

    def path(self, text: str) -> Path:
        """`Path(text)`, built on a shared parent: the directory's parts are held once."""
        head, _, name = text.rpartition("/")
        if not head:
            return Path(text)
        parent = self._dirs.get(head)
        if parent is None:
            parent = self._dirs[head] = Path(head)
        return parent / name


def _row_tracks(row: Any, shared: _Shared) -> list[ExportTrack]:
    """The library entry's file, or the playable files of an extracted set (a folder)."""
    path = shared.path(row[_PATH])
    if not path.is_absolute():
        return []
    pool = row[_POOL]
    common: dict[str, Any] = {
        "artist": shared.text(row[_ARTIST]),
        "genre": shared.text(row[_GENRE]),
        "bpm": _number(row[_BPM]),
        "key": shared.text(row[_KEY]) or None,
        "year": _whole(row[_YEAR]),
        "label": shared.text(row[_LABEL]),
        "mix": shared.text(row[_MIX]),
        # The tag writer's default comment, so the DJ app shows the same text either way.
        "comment": shared.text(row[_COMMENT]) or shared.text(f"{pool} via pooldaemon"),
        "pool": pool,
        "ref": row[_REF] or f"{pool}:{row[_ITEM_ID]}",
        "added": datetime.fromtimestamp(row[_CREATED], shared.tz),  # local time
    }
    files = [(path, int(row[_SIZE] or 0))]
    # A ZIP download is a folder, unless it was one track placed as a file (Harvest).
    folder = bool(row[_ARCHIVE]) and os.path.isdir(path)
    if folder:
        files = _media_files(path)
    if not folder or (row[_KIND] == "track" and len(files) == 1):
        # One track (a Harvest track comes as a folder holding its one file): the pool's words.
        title = (row[_TITLE] or files[0][0].stem) if files else ""
        duration = _number(row[_LENGTH_S])
        album = shared.text(row[_ALBUM])
        return [
            ExportTrack(
                path=file, title=title, album=album, size_bytes=size, duration_s=duration, **common
            )
            for file, size in files
        ]
    # A set extracted into a folder: each playable file is a track of the album.
    album = _text(row[_ALBUM]) or _text(row[_ARCHIVE_NAME]) or _text(row[_TITLE]) or path.name
    return [
        ExportTrack(path=file, title=file.stem, album=album, size_bytes=size, **common)
        for file, size in files
    ]


def _media_files(folder: Path) -> list[tuple[Path, int]]:
    """Playable regular files under `folder`, in name order, with their sizes; links are not
    followed (an archive's entries are regular files)."""
    found: list[tuple[Path, int]] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() not in _MEDIA_SUFFIXES:
                    continue
                file = Path(top) / name
                with contextlib.suppress(OSError):
                    info = file.lstat()
                    if not os.path.islink(file):
                        found.append((file, info.st_size))
    return found


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


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None  # 0, NaN: unknown


def _whole(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None
