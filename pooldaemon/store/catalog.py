"""The catalog mirror: tracks by page, removals after a full pass, the word index, lookups.

Each page is one transaction (docs/reliability.md T2: pages already applied stay committed). A track
that did not change is not written at all: a full pass notes the ids it saw in a TEMP table, so a
re-sync of an unchanged catalog only reads. This module is the only writer of `tracks` and fills
`tracks_fts` for new rows itself (schema migration 5); the word index also holds each track's
filter values as words (migration 8), so searches count their matches inside FTS5, and it is
keyed newest first (migration 9), so FTS5 also hands out a page's newest matches. A page's
statements run in SQLite's thread in one call (`Store.run_in_transaction`).

Remote queues are in `store/queue.py`, the search SQL in `store/search.py`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any

from pooldaemon import songkey
from pooldaemon.log import get_logger
from pooldaemon.models import Track
from pooldaemon.store.db import Store
from pooldaemon.store.schema import BULK_INDEXES, SEARCH_INDEXES
from pooldaemon.trackrows import ROW_FIELDS, WIDTH, TrackRows

log = get_logger(__name__)

#: A track row's columns between `id` and `raw`: named as `Track` names its fields.
_ROW_COLS = ROW_FIELDS[1:-1]
_DATA_COLS = tuple(c for c in _ROW_COLS if c != "downloaded")
# One page, staged in a TEMP table so every later step is one set-based statement.
_STAGE_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS page_in "
    f"(id TEXT PRIMARY KEY, {', '.join(_ROW_COLS)}, raw) WITHOUT ROWID"
)
#: Rows per multi-row statement: 18 parameters each stays well under SQLite's 32,766.
_STAGE_ROWS = 500
#: Rows per statement of a bulk load: a 1,000-record page in one (18,003 parameters).
_BULK_ROWS = 1000


def _values(rows: int, width: int) -> str:
    one = f"({', '.join('?' * width)})"
    return ", ".join([one] * rows)


def _stage_sql(rows: int) -> str:
    """One INSERT with `rows` rows of parameters: bound in one call and run in one step, so
    the aiosqlite thread takes the GIL once per page instead of once per row."""
    return f"INSERT OR REPLACE INTO temp.page_in (id, {', '.join(_ROW_COLS)}, raw) VALUES " + (
        _values(rows, WIDTH)
    )


def _bulk_sql(rows: int) -> str:
    """A bulk load's multi-row INSERT straight into `tracks` (the mirror held none of them).

    Its parameters are the pool, the time twice, then the page's rows as they come
    (`TrackRows.values`; `raw` is bound too and not used here): no per-row list is built.
    """
    picked = ", ".join(f"column{n}" for n in range(1, WIDTH))
    return (
        f"INSERT OR IGNORE INTO tracks (pool, id, {', '.join(_ROW_COLS)}, first_seen, "
        f"last_seen) SELECT ?, {picked}, ?, ? FROM (VALUES {_values(rows, WIDTH)})"
    )


def _bulk_raw_sql(rows: int) -> str:
    """The bulk rows' `raw`, keyed by the rowids their tracks just got."""
    return (
        "INSERT OR IGNORE INTO tracks_raw (rowid, raw) SELECT t.rowid, v.column2 "
        f"FROM (VALUES {_values(rows, 2)}) v CROSS JOIN tracks t "
        "ON t.pool = ? AND t.id = v.column1"
    )


_INSERT = (
    f"INSERT INTO tracks (pool, id, {', '.join(_ROW_COLS)}, first_seen, last_seen) "
    f"SELECT ?, p.id, {', '.join(f'p.{c}' for c in _ROW_COLS)}, ?, ? FROM temp.page_in p "
    "WHERE NOT EXISTS (SELECT 1 FROM tracks t WHERE t.pool = ? AND t.id = p.id)"
)
_INSERT_RAW = (
    "INSERT INTO tracks_raw (rowid, raw) SELECT t.rowid, p.raw FROM temp.page_in p "
    "CROSS JOIN tracks t ON t.pool = ? AND t.id = p.id WHERE t.rowid > ?"
)
# The page's tracks that changed (or come back after being removed), found from the page:
# CROSS JOIN keeps it the outer loop, or SQLite walks every track of the pool for each page.
_CHANGED_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS page_changed (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL)"
)
_CHANGED = (
    "INSERT INTO temp.page_changed (rowid, id) "
    "SELECT t.rowid, t.id FROM temp.page_in q CROSS JOIN tracks t "
    "ON t.pool = ? AND t.id = q.id LEFT JOIN tracks_raw r ON r.rowid = t.rowid "
    "WHERE r.raw IS NOT q.raw OR t.removed = 1"
)
# Updated rows keep `first_seen`, and a `downloaded` flag once set stays set (ours or the pool's).
# The FTS trigger re-indexes them: their words or filter values may have changed.
_KEEP = "downloaded = CASE WHEN tracks.downloaded = 1 THEN 1 ELSE p.downloaded END"
_UPDATE = (
    f"UPDATE tracks SET {', '.join(f'{c} = p.{c}' for c in _DATA_COLS)}, {_KEEP}, "
    # A changed track's song key is computed again (schema migration 13: NULL is "not yet").
    "removed = 0, song_key = NULL, version = NULL, last_seen = ? "
    "FROM temp.page_changed c, temp.page_in p "
    "WHERE tracks.rowid = c.rowid AND p.id = c.id"
)
_UPDATE_RAW = (
    "INSERT OR REPLACE INTO tracks_raw (rowid, raw) SELECT c.rowid, p.raw "
    "FROM temp.page_changed c JOIN temp.page_in p ON p.id = c.id"
)
# New rows get their FTS entries in one statement per page: several times faster than the
# per-row trigger it replaces (schema migration 5).
_FTS_NEW = (
    "INSERT INTO tracks_fts (rowid, artist, title, editor, facets) "
    "SELECT sortkey, artist, title, editor, facets FROM tracks WHERE rowid > ? ORDER BY sortkey"
)
# A bulk load's batch of new rows (`bulk_load`), in rowid order: its pages come newest first,
# so that is key order too, and FTS5 needs no sort to keep its pending terms in order.
_FTS_BULK = (
    "INSERT INTO tracks_fts (rowid, artist, title, editor, facets) "
    "SELECT sortkey, artist, title, editor, facets FROM tracks WHERE rowid > ?"
)
_PASS_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS pass_seen "
    "(pool TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (pool, id)) WITHOUT ROWID"
)
_PASS_SEEN = "INSERT OR IGNORE INTO temp.pass_seen (pool, id) VALUES (?, ?)"
_PASS_PAGE = "INSERT OR IGNORE INTO temp.pass_seen (pool, id) SELECT ?, id FROM temp.page_in"


TRACK_COLUMNS = (
    "pool",
    "id",
    "artist",
    "title",
    "genre",
    "bpm",
    "year",
    "mix",
    "editor",
    "advisory",
    "length_s",
    "size_bytes",
    "audio",
    "video",
    "quality",
    "date",
    "source",
    "downloaded",
    "removed",
    "song_key",
    "version",
)
SELECT_TRACK = ", ".join(f"t.{c}" for c in TRACK_COLUMNS)


@dataclass(frozen=True, slots=True)
class PageResult:
    """What one page did to the mirror."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0


_SPELLING = "INSERT OR IGNORE INTO spellings (kind, folded, value) VALUES (?, ?, ?)"


_GENRE_AT, _MIX_AT = ROW_FIELDS.index("genre"), ROW_FIELDS.index("mix")


def spelling_rows(rows: TrackRows) -> list[tuple[str, str, str]]:
    """A page's genre and mix values under their Unicode case fold (schema migration 11).

    Read off the flat rows by slicing: indexing a TrackRows builds a Track per row."""
    values = rows.values
    seen = {("g", v) for v in values[_GENRE_AT::WIDTH] if v} | {
        ("m", v) for v in values[_MIX_AT::WIDTH] if v
    }
    return [(kind, value.casefold(), value) for kind, value in sorted(seen)]


async def apply_page(
    store: Store,
    pool: str,
    tracks: Sequence[Track],
    *,
    seen_at: float,
    in_pass: bool = False,
    bulk: bool = False,
) -> PageResult:
    """Upsert one page in one transaction: insert new tracks, update changed ones.

    The page is staged with one multi-row INSERT and every later step is one set-based
    statement, so the per-row work runs in SQLite's C code without holding the GIL while the
    next page is parsed (a full sync is 174,420 rows).
    `in_pass`: the page belongs to a full pass (`begin_pass`), so its ids are noted as seen.
    `bulk=True`: a page of a bulk load into an empty mirror (`bulk_load`): the rows go
    straight in, with no change detection (there was nothing to change), and the FTS index is
    fed in batches of many pages (`_WORDS_BATCH`).
    """
    if not tracks:
        return PageResult()
    rows = TrackRows.of(pool, tracks)
    spellings = spelling_rows(rows)
    if bulk:
        return await _bulk_page(store, pool, rows, seen_at, spellings)
    values = rows.values
    step = _STAGE_ROWS * WIDTH
    stages = [
        (_stage_sql(len(values[i : i + step]) // WIDTH), values[i : i + step])
        for i in range(0, len(values), step)
    ]

    def write(db: sqlite3.Connection) -> tuple[int, int, int]:
        db.execute(_STAGE_TABLE)
        db.execute(_CHANGED_TABLE)
        db.execute("DELETE FROM temp.page_in")
        db.execute("DELETE FROM temp.page_changed")
        for sql, args in stages:  # a repeated id: the last one wins
            db.execute(sql, args)
        staged = int(db.execute("SELECT COUNT(*) FROM temp.page_in").fetchone()[0])
        updated = max(db.execute(_CHANGED, (pool,)).rowcount, 0)
        if updated:
            db.execute(_UPDATE, (seen_at,))
            db.execute(_UPDATE_RAW)
        newest = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM tracks").fetchone()[0]
        added = max(db.execute(_INSERT, (pool, seen_at, seen_at, pool)).rowcount, 0)
        if added:
            db.execute(_INSERT_RAW, (pool, newest))
            db.execute(_FTS_NEW, (newest,))
        if in_pass:
            db.execute(_PASS_PAGE, (pool,))
        db.executemany(_SPELLING, spellings)
        return staged, added, updated

    total, added, updated = await store.run_in_transaction(write)
    return PageResult(added=added, updated=updated, unchanged=total - added - updated)


# -- full passes and bulk loads -----------------------------------------------------------------


async def begin_pass(store: Store, pool: str) -> None:
    """Start noting which tracks a full pass sees (a TEMP table: nothing written to the file)."""
    async with store.transaction() as db:
        await db.execute(_PASS_TABLE)
        await db.execute("DELETE FROM temp.pass_seen WHERE pool = ?", (pool,))


async def mark_seen(store: Store, pool: str, ids: Iterable[str]) -> None:
    """Note tracks as present without changing them (quarantined records, docs/reliability.md
    M3)."""
    rows = [(pool, item_id) for item_id in ids if item_id]
    if rows:
        await store.executemany(_PASS_SEEN, rows)


async def pass_seen_count(store: Store, pool: str) -> int:
    """How many distinct tracks the current full pass has seen."""
    row = await store.fetchone("SELECT COUNT(*) FROM temp.pass_seen WHERE pool = ?", (pool,))
    return int(row[0])


async def removal_candidates(store: Store, pool: str) -> list[str]:
    """Live tracks the current full pass did not see."""
    rows = await store.fetchall(
        "SELECT t.id FROM tracks t WHERE t.pool = ? AND t.removed = 0 AND NOT EXISTS "
        "(SELECT 1 FROM temp.pass_seen s WHERE s.pool = t.pool AND s.id = t.id) ORDER BY t.id",
        (pool,),
    )
    return [row[0] for row in rows]


async def end_pass(store: Store, pool: str) -> None:
    """Forget what the pass saw."""
    async with store.transaction() as db:
        await db.execute(_PASS_TABLE)
        await db.execute("DELETE FROM temp.pass_seen WHERE pool = ?", (pool,))


#: SQLite page cache during a bulk load (KiB, as `PRAGMA cache_size` takes it negated). Its
#: sorter may use as much again per index build; a bigger cache makes neither step faster
#: and would stay in the daemon's RSS.
_BULK_CACHE_KIB = 2048
#: Helper threads for the index builds' sorts: 2.31 → 1.97 s for the four per-column indexes
#: of 174,420 tracks on a 2-core machine; more cores, more gain.
_SORT_THREADS = min(4, os.cpu_count() or 1)


@asynccontextmanager
async def bulk_load(store: Store) -> AsyncIterator[None]:
    """Loading a whole catalog into an empty mirror (pages written with `bulk=True`).

    The per-column search indexes are dropped, and built in one go on the way out, even
    after a failed pass. The word index is fed in batches of `_WORDS_BATCH` tracks as the
    pages come (`_bulk_page`), and its last batch on the way out: searches meanwhile find
    every track but the last few pages' (the oldest so far: pages come newest first).
    """
    row = await store.fetchone("PRAGMA cache_size")
    cache = int(row[0])
    await store.fetchone(f"PRAGMA cache_size = -{_BULK_CACHE_KIB}")
    row = await store.fetchone("SELECT COALESCE(MAX(rowid), 0) FROM tracks")
    _WORDS_TO[store] = int(row[0])
    _WORDS_READY[store] = True  # as good as whole (above), so searches keep counting with it
    try:
        async with store.transaction() as db:
            await db.execute(_FTS_HASHSIZE)
        try:
            async with store.transaction() as db:
                for name in BULK_INDEXES:
                    await db.execute(f"DROP INDEX IF EXISTS {name}")
        except sqlite3.OperationalError as err:
            # Another reader holds the table (the daemon shares one connection): keep the
            # indexes; the load is slower, never wrong.
            log.info("bulk load keeps its indexes", reason=str(err))
        yield
    finally:
        row = await store.fetchone("PRAGMA threads")
        threads = int(row[0])
        await store.fetchone(f"PRAGMA threads = {_SORT_THREADS}")
        try:
            done_to = _WORDS_TO.pop(store, None)
            if done_to is not None:
                async with store.transaction() as db:
                    await db.execute(_FTS_BULK, (done_to,))
            if not await words_complete(store):
                await rebuild_words(store)  # a batch failed with its page
            await ensure_search_indexes(store)
        finally:
            await store.fetchone(f"PRAGMA threads = {threads}")
            await store.fetchone(f"PRAGMA cache_size = {cache}")


async def any_tracks(store: Store) -> bool:
    """Whether the mirror holds any track of any pool."""
    row = await store.fetchone("SELECT EXISTS (SELECT 1 FROM tracks)")
    return bool(row and row[0])


async def ensure_search_indexes(store: Store) -> None:
    """Build any search index that is missing (after a bulk load, or one cut short by a crash)."""
    async with store.transaction() as db:
        for name, spec in SEARCH_INDEXES.items():
            await db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {spec}")


async def _bulk_page(
    store: Store, pool: str, rows: TrackRows, seen_at: float, spellings: list[tuple[str, str, str]]
) -> PageResult:
    """A page of a bulk load: inserted as it is (a repeated id keeps its first row)."""
    values = rows.values
    step = _BULK_ROWS * WIDTH
    statements = []
    for start in range(0, len(values), step):
        chunk = TrackRows(pool, values[start : start + step])
        statements.append(
            (
                _bulk_sql(len(chunk)),
                [pool, seen_at, seen_at, *chunk.values],
                _bulk_raw_sql(len(chunk)),
                [*chain.from_iterable(zip(chunk.ids(), chunk.raws(), strict=True)), pool],
            )
        )

    done_to = _WORDS_TO.get(store)

    def write(db: sqlite3.Connection) -> tuple[int, int | None]:
        added = 0
        for tracks_sql, tracks_args, raw_sql, raw_args in statements:
            added += max(db.execute(tracks_sql, tracks_args).rowcount, 0)
            db.execute(raw_sql, raw_args)
        db.executemany(_SPELLING, spellings)
        if done_to is None:
            return added, None
        newest = int(db.execute("SELECT COALESCE(MAX(rowid), 0) FROM tracks").fetchone()[0])
        if newest - done_to < _WORDS_BATCH:
            return added, None
        db.execute(_FTS_BULK, (done_to,))
        return added, newest

    added, words_to = await store.run_in_transaction(write)
    if words_to is not None:  # committed: those tracks are in the word index now
        _WORDS_TO[store] = words_to
    return PageResult(added=added)


#: A bulk load's word-index batch, in tracks. One statement per batch adds its words: fed
#: page by page (1,000 tracks), FTS5 writes and merges a segment per commit, and the load
#: took 35 % more CPU (174,420 tracks: 8.9 vs 6.6 CPU-s); in batches of 50,000 it costs
#: what one rebuild at the end did (7.0 vs 7.1 CPU-s, same run), which it replaces.
_WORDS_BATCH = 50_000
#: Per store, during a bulk load: every track up to this rowid has its words indexed.
_WORDS_TO: weakref.WeakKeyDictionary[Store, int] = weakref.WeakKeyDictionary()


#: Whether every track is in the FTS index (FTS5 keeps one docsize row per document); a bulk
#: load cut short by a crash leaves it incomplete.
_WORDS_COMPLETE = "SELECT (SELECT COUNT(*) FROM tracks) = (SELECT COUNT(*) FROM tracks_fts_docsize)"


async def words_complete(store: Store) -> bool:
    """Whether every track is in the FTS index."""
    row = await store.fetchone(_WORDS_COMPLETE)
    return bool(row[0])


#: How many bytes of terms FTS5 gathers in memory before it writes them out as a segment
#: (default 1 MiB; kept in the index's config). A rebuild of 174,420 tracks writes ~40 MB of
#: index: in 16 MiB pieces it merges far fewer segments, 2.2-3.0 → 1.3-1.9 s. Small
#: transactions never fill it, so only a rebuild or a bulk load's batch uses more memory,
#: and gives it back when it commits.
_FTS_HASHSIZE = "INSERT INTO tracks_fts (tracks_fts, rank) VALUES ('hashsize', 16777216)"


async def rebuild_words(store: Store) -> None:
    """Build the FTS index from `tracks` in one go (after a bulk load cut short by a crash)."""
    async with store.transaction() as db:
        await db.execute(_FTS_HASHSIZE)
        await db.execute("INSERT INTO tracks_fts (tracks_fts) VALUES ('rebuild')")
    _WORDS_READY[store] = True


#: Per store: whether the word index holds every track (so searches may count with it).
#: Unknown until asked once. A bulk load leaves it as it is: its batches keep the index
#: whole but for the last few pages, so searches keep using it (see `bulk_load`).
_WORDS_READY: weakref.WeakKeyDictionary[Store, bool] = weakref.WeakKeyDictionary()


async def words_ready(store: Store) -> bool:
    """Whether searches may count with the word index (cached per store; see _WORDS_READY)."""
    ready = _WORDS_READY.get(store)
    if ready is None:
        row = await store.reads.fetchone(_WORDS_COMPLETE)  # not behind a sync page either
        ready = _WORDS_READY[store] = bool(row[0])
    return ready


async def tracks_count(store: Store, pool: str) -> int:
    """Tracks of the pool in the mirror, removed ones included."""
    row = await store.fetchone("SELECT COUNT(*) FROM tracks WHERE pool = ?", (pool,))
    return int(row[0])


async def active_count(store: Store, pool: str) -> int:
    """Tracks of the pool not marked removed."""
    row = await store.fetchone(
        "SELECT COUNT(*) FROM tracks WHERE pool = ? AND removed = 0", (pool,)
    )
    return int(row[0])


async def mark_removed(store: Store, pool: str, ids: Sequence[str]) -> int:
    """Flag tracks the pool no longer lists (kept in the mirror, hidden from search)."""
    if not ids:
        return 0
    async with store.transaction() as db:
        await db.executemany(
            "UPDATE tracks SET removed = 1 WHERE pool = ? AND id = ? AND removed = 0",
            [(pool, item_id) for item_id in ids],
        )
    return len(ids)


async def mark_downloaded(store: Store, pool: str, item_id: str) -> None:
    """The downloader finished this track: search shows it as downloaded from now on."""
    await store.execute(
        "UPDATE tracks SET downloaded = 1 WHERE pool = ? AND id = ?", (pool, item_id)
    )


async def get_track(store: Store, pool: str, item_id: str) -> dict[str, Any] | None:
    """One mirrored track as docs/interface.md §4 shows it, removed or not."""
    row = await store.fetchone(
        f"SELECT {SELECT_TRACK} FROM tracks t WHERE t.pool = ? AND t.id = ?", (pool, item_id)
    )
    return track_dict(row) if row else None


async def track_raw(store: Store, pool: str, item_id: str) -> dict[str, Any] | None:
    """Every field the pool sent for a track, as it sent them (a per-track token left out)."""
    row = await store.fetchone(
        "SELECT r.raw FROM tracks t JOIN tracks_raw r ON r.rowid = t.rowid "
        "WHERE t.pool = ? AND t.id = ?",
        (pool, item_id),
    )
    return json.loads(row[0]) if row else None


def track_dict(row: Any) -> dict[str, Any]:
    """A track exactly as docs/interface.md §4 lists it."""

    def flag(value: Any) -> bool | None:
        return None if value is None else bool(value)

    return {
        "ref": f"{row[0]}:{row[1]}",
        "pool": row[0],
        "id": row[1],
        "artist": row[2],
        "title": row[3],
        "genre": row[4],
        "bpm": row[5],
        "year": row[6],
        "mix": row[7],
        "editor": row[8],
        "advisory": row[9],
        "length_s": row[10],
        "size_bytes": row[11],
        "audio": flag(row[12]),
        "video": flag(row[13]),
        "quality": row[14],
        "date": row[15],
        "source": row[16],
        "downloaded": bool(row[17]),
        "removed": bool(row[18]),
        **_song(row),
    }


def _song(row: Any) -> dict[str, str]:
    """docs/interface.md §8: a track's song key and version, as stored or, until the library's
    background pass has stored them, computed now (the same function computes both)."""
    if row[19] is not None:
        return {"song": row[19], "version": row[20] or ""}
    parsed = track_song(row[2], row[3], row[7], row[9], row[13], row[14])
    return {"song": parsed.key, "version": parsed.version.label}


def track_song(
    artist: str | None,
    title: str | None,
    mix: str | None,
    advisory: str | None,
    video: Any,
    quality: str | None,
) -> songkey.Parsed:
    """A mirrored track's song key and version from its columns (docs/songs.md)."""
    return songkey.parse(
        artist or "",
        title or "",
        mix=mix,
        advisory=advisory,
        media="video" if video else None,
        quality=quality,
    )


# -- lookups ------------------------------------------------------------------------------------


async def save_lookups(store: Store, pool: str, tables: dict[str, dict[str, Any]]) -> int:
    """Replace each lookup table the pool sent; an empty table never wipes a stored one."""
    written = 0
    async with store.transaction() as db:
        for kind, table in tables.items():
            if not table:
                continue
            await db.execute("DELETE FROM lookups WHERE pool = ? AND kind = ?", (pool, kind))
            await db.executemany(
                "INSERT INTO lookups (pool, kind, key, value) VALUES (?, ?, ?, ?)",
                [(pool, kind, str(key), json.dumps(value)) for key, value in table.items()],
            )
            written += len(table)
    return written


async def get_lookups(store: Store, pool: str) -> dict[str, dict[str, Any]]:
    """Stored lookup tables of a pool: kind → {key: value}."""
    rows = await store.fetchall(
        "SELECT kind, key, value FROM lookups WHERE pool = ? ORDER BY kind, key", (pool,)
    )
    tables: dict[str, dict[str, Any]] = {}
    for row in rows:
        tables.setdefault(row[0], {})[row[1]] = json.loads(row[2])
    return tables
