"""Export SQL: the library as the exports list it, and what pooldaemon wrote last to each file."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pooldaemon.store.db import Store

#: docs/interface.md §9: only files in the library are listed. `adopted` entries (files that
#: were on disk before pooldaemon, §8) count as much as downloaded ones.
LISTED_STATES = ("downloaded", "adopted")

# Listed library entries in the order they joined it, a page at a time, with what the pool said
# of the track (the mirror's row) and what the download was planned with (the plan's `meta`: the
# tag writer's fields, among them album, key and label, which the mirror has no columns for).
# The mirror comes first, then the plan, then the job; chosen here, in C, so a 100,000-entry
# library costs Python one small row per file.
_META = "json_extract(j.plan, '$.meta.{}')"
LIBRARY_COLUMNS = (
    "id",
    "pool",
    "kind",
    "item_id",
    "path",
    "size",
    "created",
    "origin",
    "ref",
    "archive",
    "archive_name",
    "artist",
    "title",
    "album",
    "genre",
    "bpm",
    "key",
    "year",
    "label",
    "mix",
    "comment",
    "length_s",
)
_LIBRARY_SQL = f"""
SELECT l.id, l.pool, l.kind, l.item_id, l.path, l.size, l.created, j.origin, j.ref,
       json_extract(j.plan, '$.archive'),
       json_extract(j.plan, '$.name'),
       coalesce(nullif(t.artist, ''), nullif({_META.format("artist")}, ''), nullif(j.artist, '')),
       coalesce(nullif(t.title, ''), nullif({_META.format("title")}, ''), nullif(j.title, '')),
       {_META.format("album")},
       coalesce(nullif(t.genre, ''), {_META.format("genre")}),
       coalesce(t.bpm, {_META.format("bpm")}),
       {_META.format("key")},
       coalesce(t.year, {_META.format("year")}),
       {_META.format("label")},
       coalesce(nullif(t.mix, ''), {_META.format("mix")}),
       {_META.format("comment")},
       coalesce(t.length_s, {_META.format("length_s")})
FROM library l
LEFT JOIN jobs j ON j.id = l.job_id
LEFT JOIN tracks t ON t.pool = l.pool AND t.id = l.item_id AND l.kind = 'track'
WHERE l.state IN ({", ".join("?" for _ in LISTED_STATES)}) AND l.id > ? AND l.id <= ?
ORDER BY l.id
LIMIT ?
"""
#: Entries read per page: a page's rows are small next to the library's tracks.
PAGE_SIZE = 5000


async def library_page(
    store: Store, after_id: int, upto_id: int, limit: int = PAGE_SIZE
) -> list[Any]:
    """Listed library entries with an id above `after_id` and up to `upto_id`: rows indexed
    as `LIBRARY_COLUMNS`.

    Read on the searches' connection: the downloads' writes go on meanwhile.
    """
    return await store.reads.fetchall(_LIBRARY_SQL, (*LISTED_STATES, after_id, upto_id, limit))


@dataclass(frozen=True, slots=True)
class LibraryMark:
    """Where the library stood when an export began to read it (schema migration 16)."""

    change_seq: int  # the last change logged in `library_changes`
    max_id: int  # the newest library entry: the export reads up to it
    tracks_rowid: int  # the newest mirrored track


async def library_mark(store: Store) -> LibraryMark:
    """The library's `LibraryMark` now."""
    row = await store.reads.fetchone(
        "SELECT (SELECT coalesce(max(seq), 0) FROM library_changes), "
        "(SELECT coalesce(max(id), 0) FROM library), (SELECT coalesce(max(rowid), 0) FROM tracks)"
    )
    return LibraryMark(*row)


async def changed_since(store: Store, mark: LibraryMark) -> bool:
    """Whether an entry read at `mark` (an id up to `mark.max_id`) may be listed differently
    now: it changed, left, or its track joined the mirror. Entries added since are not counted.
    """
    changed = await store.reads.fetchone(
        "SELECT 1 FROM library_changes WHERE seq > ? AND library_id <= ? LIMIT 1",
        (mark.change_seq, mark.max_id),
    )
    if changed is not None:
        return True
    mirrored = await store.reads.fetchone(
        "SELECT 1 FROM tracks t CROSS JOIN library l ON l.pool = t.pool AND l.kind = 'track' "
        "AND l.item_id = t.id WHERE t.rowid > ? AND l.id <= ? LIMIT 1",
        (mark.tracks_rowid, mark.max_id),
    )
    return mirrored is not None


async def forget_changes(store: Store, upto_seq: int | None = None) -> None:
    """Drop the logged changes an export has taken into account (None: all of them)."""
    if upto_seq is None:
        await store.execute("DELETE FROM library_changes")
    else:
        await store.execute("DELETE FROM library_changes WHERE seq <= ?", (upto_seq,))


async def library_has_files(store: Store) -> bool:
    """Whether any library entry would be listed."""
    row = await store.fetchone(
        f"SELECT 1 FROM library WHERE state IN ({', '.join('?' for _ in LISTED_STATES)}) LIMIT 1",
        LISTED_STATES,
    )
    return row is not None


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """What pooldaemon last wrote for one export file."""

    target: str
    format: str
    path: str  # the target, or `NAME (pooldaemon).EXT` beside it
    digest: str  # SHA-256 of what went to `path`

    @property
    def beside(self) -> bool:
        return self.path != self.target


async def export_records(store: Store) -> dict[str, ExportRecord]:
    """The record of every export file written so far, by target path."""
    rows = await store.fetchall("SELECT target, format, path, digest FROM export_files")
    return {row["target"]: ExportRecord(*row) for row in rows}


async def save_export_records(
    store: Store, written: Iterable[ExportRecord], forget: Iterable[str] = ()
) -> None:
    """Remember what was just written (and forget targets no longer exported), at once."""
    now = time.time()
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO export_files (target, format, path, digest, written) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (target) DO UPDATE SET "
            "format = excluded.format, path = excluded.path, digest = excluded.digest, "
            "written = excluded.written",
            [(r.target, r.format, r.path, r.digest, now) for r in written],
        )
        await db.executemany(
            "DELETE FROM export_files WHERE target = ?", [(target,) for target in forget]
        )
