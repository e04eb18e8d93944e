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

# One row per listed library entry, oldest first, with what the pool said of the track (the
# mirror's row) and what the download was planned with (the plan's `meta`: the tag writer's
# fields, among them album, key and label, which the mirror has no columns for).
_LIBRARY_SQL = f"""
SELECT l.id, l.pool, l.kind, l.item_id, l.path, l.size, l.created,
       j.origin, j.ref, j.artist AS job_artist, j.title AS job_title,
       json_extract(j.plan, '$.archive') AS archive,
       json_extract(j.plan, '$.name') AS archive_name,
       json_extract(j.plan, '$.meta.artist') AS meta_artist,
       json_extract(j.plan, '$.meta.title') AS meta_title,
       json_extract(j.plan, '$.meta.album') AS meta_album,
       json_extract(j.plan, '$.meta.genre') AS meta_genre,
       json_extract(j.plan, '$.meta.bpm') AS meta_bpm,
       json_extract(j.plan, '$.meta.key') AS meta_key,
       json_extract(j.plan, '$.meta.year') AS meta_year,
       json_extract(j.plan, '$.meta.label') AS meta_label,
       json_extract(j.plan, '$.meta.mix') AS meta_mix,
       json_extract(j.plan, '$.meta.comment') AS meta_comment,
       json_extract(j.plan, '$.meta.length_s') AS meta_length_s,
       t.artist, t.title, t.genre, t.bpm, t.year, t.mix, t.length_s
FROM library l
LEFT JOIN jobs j ON j.id = l.job_id
LEFT JOIN tracks t ON t.pool = l.pool AND t.id = l.item_id AND l.kind = 'track'
WHERE l.state IN ({", ".join("?" for _ in LISTED_STATES)})
ORDER BY l.created, l.id
"""


async def library_rows(store: Store) -> list[Any]:
    """Every listed library entry with its track's metadata (sqlite3 rows, oldest first).

    Read on the searches' connection: a 100,000-entry library takes a moment, and the
    downloads' writes go on meanwhile.
    """
    return await store.reads.fetchall(_LIBRARY_SQL, LISTED_STATES)


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
