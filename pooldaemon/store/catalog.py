"""The catalog mirror: tracks by page, removals after a full pass, lookups, remote queues, search.

Each page is one transaction (RELIABILITY T2: pages already applied stay committed). A track that
did not change is not written at all: a full pass notes the ids it saw in a TEMP table, so a
re-sync of an unchanged catalog only reads. This module is the only writer of `tracks` and fills
`tracks_fts` for new rows itself (schema migration 5); the word index also holds each track's
filter values as words (migration 8), so searches count their matches inside FTS5, and it is
keyed newest first (migration 9), so FTS5 also hands out a page's newest matches. A page's
statements run in SQLite's thread in one call (`Store.run_in_transaction`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import string
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

from pooldaemon.log import get_logger
from pooldaemon.models import QueueItem, Track
from pooldaemon.store.db import Reads, Store
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
    "removed = 0, last_seen = ? FROM temp.page_changed c, temp.page_in p "
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
#: Word index keys are `sortkey`s (schema migration 9): the track's rowid is their low 32 bits.
_KEY_ROWID = "& 4294967295"
_HITS = f"SELECT rowid {_KEY_ROWID} FROM tracks_fts WHERE tracks_fts MATCH ?"
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
)
_SELECT_TRACK = ", ".join(f"t.{c}" for c in TRACK_COLUMNS)


@dataclass(frozen=True, slots=True)
class PageResult:
    """What one page did to the mirror."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0


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
    built once at the end (`rebuild_words`).
    """
    if not tracks:
        return PageResult()
    rows = TrackRows.of(pool, tracks)
    if bulk:
        return await _bulk_page(store, pool, rows, seen_at)
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
    """Note tracks as present without changing them (quarantined records, RELIABILITY M3)."""
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

    The per-column search indexes are dropped and the word index is not fed row by row; on
    the way out, even after a failed pass, both are built in one go from what was written.
    """
    row = await store.fetchone("PRAGMA cache_size")
    cache = int(row[0])
    await store.fetchone(f"PRAGMA cache_size = -{_BULK_CACHE_KIB}")
    _WORDS_READY[store] = False  # searches meanwhile count through the tables
    try:
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
            await rebuild_words(store)
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


async def _bulk_page(store: Store, pool: str, rows: TrackRows, seen_at: float) -> PageResult:
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

    def write(db: sqlite3.Connection) -> int:
        added = 0
        for tracks_sql, tracks_args, raw_sql, raw_args in statements:
            added += max(db.execute(tracks_sql, tracks_args).rowcount, 0)
            db.execute(raw_sql, raw_args)
        return added

    return PageResult(added=await store.run_in_transaction(write))


#: Whether every track is in the FTS index (FTS5 keeps one docsize row per document); a bulk
#: load cut short by a crash leaves it incomplete.
_WORDS_COMPLETE = "SELECT (SELECT COUNT(*) FROM tracks) = (SELECT COUNT(*) FROM tracks_fts_docsize)"


async def words_complete(store: Store) -> bool:
    """Whether every track is in the FTS index."""
    row = await store.fetchone(_WORDS_COMPLETE)
    return bool(row[0])


#: How many bytes of terms FTS5 gathers in memory before it writes them out as a segment
#: (default 1 MiB). A rebuild of 174,420 tracks writes ~40 MB of index: in 16 MiB pieces
#: it merges far fewer segments, 2.2-3.0 → 1.3-1.9 s. Small transactions never fill it, so
#: only a rebuild uses more memory, and gives it back when it commits.
_FTS_HASHSIZE = "INSERT INTO tracks_fts (tracks_fts, rank) VALUES ('hashsize', 16777216)"


async def rebuild_words(store: Store) -> None:
    """Build the FTS index from `tracks` in one go: after a bulk load, much cheaper than adding
    its rows page by page."""
    async with store.transaction() as db:
        await db.execute(_FTS_HASHSIZE)
        await db.execute("INSERT INTO tracks_fts (tracks_fts) VALUES ('rebuild')")
    _WORDS_READY[store] = True


#: Per store: whether the word index holds every track (so searches may count with it).
#: Unknown until asked once; a bulk load sets it False until its rebuild is done.
_WORDS_READY: weakref.WeakKeyDictionary[Store, bool] = weakref.WeakKeyDictionary()


async def _words_ready(store: Store) -> bool:
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
    """One mirrored track as CONTRACT §4 shows it, removed or not."""
    row = await store.fetchone(
        f"SELECT {_SELECT_TRACK} FROM tracks t WHERE t.pool = ? AND t.id = ?", (pool, item_id)
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
    """A track exactly as CONTRACT §4 lists it."""

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
    }


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


# -- remote queues ------------------------------------------------------------------------------


async def queue_keys(store: Store, pool: str) -> set[tuple[str, str]]:
    """(kind, item_id) of every queue item seen before."""
    rows = await store.fetchall("SELECT kind, item_id FROM remote_queue WHERE pool = ?", (pool,))
    return {(row[0], row[1]) for row in rows}


async def save_queue(
    store: Store, pool: str, items: Sequence[QueueItem], *, seen_at: float
) -> None:
    """Make the stored queue what the pool listed (a complete answer: the adapter checks)."""
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO remote_queue (pool, item_id, kind, queue_id, queued_at, extra, "
            "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (pool, item_id, kind) DO UPDATE SET queue_id = excluded.queue_id, "
            "queued_at = excluded.queued_at, extra = excluded.extra, "
            "last_seen = excluded.last_seen",
            [
                (
                    pool,
                    item.item_id,
                    item.kind,
                    item.queue_id,
                    item.queued_at,
                    json.dumps(item.extra),
                    seen_at,
                    seen_at,
                )
                for item in items
            ],
        )
        await db.execute(
            "DELETE FROM remote_queue WHERE pool = ? AND last_seen < ?", (pool, seen_at)
        )


async def queue_items(store: Store, pool: str) -> list[QueueItem]:
    """The stored queue as last read, oldest sighting first."""
    rows = await store.fetchall(
        "SELECT item_id, kind, queue_id, queued_at, extra FROM remote_queue WHERE pool = ? "
        "ORDER BY first_seen, item_id",
        (pool,),
    )
    return [_queue_item(pool, row) for row in rows]


async def queue_item(
    store: Store, pool: str, item_id: str, kind: str = "track"
) -> QueueItem | None:
    """The stored queue entry for one item (the `known` a download plan may reuse)."""
    row = await store.fetchone(
        "SELECT item_id, kind, queue_id, queued_at, extra FROM remote_queue "
        "WHERE pool = ? AND item_id = ? AND kind = ?",
        (pool, item_id, kind),
    )
    return _queue_item(pool, row) if row else None


def _queue_item(pool: str, row: Any) -> QueueItem:
    return QueueItem(
        pool=pool,
        item_id=row[0],
        kind=row[1],
        queue_id=row[2],
        queued_at=row[3],
        extra=json.loads(row[4]) if row[4] else {},
    )


# -- search -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberFilter:
    """`N`, `N,M,…` (values) or `N-M` (low..high inclusive), as seed 004's bpm/releaseYear."""

    values: tuple[int, ...] = ()
    low: int | None = None
    high: int | None = None


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    """A validated `GET /v1/catalog` query (pooldaemon.search builds it from the parameters)."""

    #: Search terms reduced to letters and digits; each must prefix-match a word.
    terms: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    mixes: tuple[str, ...] = ()
    bpm: NumberFilter | None = None
    year: NumberFilter | None = None
    #: Advisory values to match, case-insensitively ("Dirty", "Explicit").
    advisories: tuple[str, ...] = ()
    media: Literal["audio", "video"] | None = None
    include_removed: bool = False
    limit: int = 50
    offset: int = 0


def _in(column: str, values: Sequence[Any], where: list[str], params: list[Any]) -> None:
    if len(values) == 1:
        where.append(f"{column} = ?")
    else:
        where.append(f"{column} IN ({','.join('?' * len(values))})")
    params.extend(values)


def _number(column: str, spec: NumberFilter, where: list[str], params: list[Any]) -> None:
    if spec.values:
        _in(column, spec.values, where, params)
    else:
        where.append(f"{column} BETWEEN ? AND ?")
        params.extend((spec.low, spec.high))


def match_expression(terms: Sequence[str]) -> str:
    """An FTS5 query in which every term must match a word of artist, title or editor as a
    prefix: `{artist title editor} : ("term"* "term"*)` (never the filter words, migration 8).

    Terms hold only letters and digits (pooldaemon.search strips the rest) and each is quoted
    as well, so no user text is ever read as FTS5 syntax.
    """
    words = " ".join('"' + term.replace('"', '""') + '"*' for term in terms)
    return f"{{artist title editor}} : ({words})"


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
#: A bpm or year range wider than this is checked on the rows instead of as one word per value.
_MAX_FACET_VALUES = 64


def _facet(kind: str, value: str, *, fold: bool = True) -> str:
    """A filter value as the word schema migration 8 indexes (SQLite's `lower` folds ASCII
    only, as NOCASE does: so must we)."""
    text = value.translate(_ASCII_LOWER) if fold else value
    return f"qq{kind}{text.encode().hex()}"


def _facet_terms(query: CatalogQuery) -> tuple[list[str], bool]:
    """The query's filters as FTS5 terms on the `facets` column, and whether they are all
    of them (False: a wide bpm/year range is left to the SQL filters)."""
    groups: list[list[str]] = []
    complete = True
    groups.append([_facet("p", pool, fold=False) for pool in query.pools])
    groups.append([_facet("g", genre) for genre in query.genres])
    groups.append([_facet("m", mix) for mix in query.mixes])
    groups.append([_facet("a", advisory) for advisory in query.advisories])
    for kind, spec in (("b", query.bpm), ("y", query.year)):
        if spec is None:
            continue
        if spec.values:
            values: Sequence[int] = spec.values
        elif spec.low is not None and spec.high is not None:
            values = range(spec.low, spec.high + 1)
        else:
            values = ()
        if not values or len(values) > _MAX_FACET_VALUES or min(values) < 0:
            complete = False
            continue
        groups.append([f"qq{kind}{value}" for value in values])
    if query.media == "audio":
        groups.append(["qqu"])
    elif query.media == "video":
        groups.append(["qqv"])
    terms = [f"facets : ({' OR '.join(group)})" for group in groups if group]
    return terms, complete


def _match(words: str | None, facets: Sequence[str]) -> str | None:
    """Words and filter terms in one FTS5 query over live tracks; None when it has no
    positive term (FTS5 cannot answer a bare NOT)."""
    parts = ([words] if words else []) + list(facets)
    if not parts:
        return None
    return f"({' AND '.join(parts)}) NOT facets : qqr"


def _filters(query: CatalogQuery) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters for everything but the words."""
    where: list[str] = []
    params: list[Any] = []
    if not query.include_removed:
        where.append("t.removed = 0")
    if query.pools:
        _in("t.pool", query.pools, where, params)
    if query.genres:
        # CONTRACT §4: a whole value, case-insensitively (NOCASE folds ASCII letters).
        _in("t.genre COLLATE NOCASE", query.genres, where, params)
    if query.mixes:
        _in("t.mix COLLATE NOCASE", query.mixes, where, params)
    if query.bpm is not None:
        _number("t.bpm", query.bpm, where, params)
    if query.year is not None:
        _number("t.year", query.year, where, params)
    if query.advisories:
        _in("t.advisory COLLATE NOCASE", query.advisories, where, params)
    if query.media == "audio":
        where.append("t.audio = 1")
    elif query.media == "video":
        where.append("t.video = 1")
    return where, params


#: Newest first; most pools' ids are numbers, so they are compared as numbers, then as text.
_ORDER = " ORDER BY t.date DESC, CAST(t.id AS INTEGER) DESC, t.id DESC, t.pool"
#: Above this many matches, walking `tracks_live` in date order reaches the newest ones sooner
#: than sorting every match found through a per-column index.
_SORT_LIMIT = 20_000
#: Weight of the probing plan in `_search_words` (tests set it to force either plan).
_PROBE_BIAS = 1.0


def _driving_index(query: CatalogQuery) -> str | None:
    """The covering index that reaches the fewest entries for this query (schema migration 5)."""
    if query.include_removed:
        return None  # every index leads with `removed` or needs it fixed: let SQLite choose
    if query.genres:
        return "tracks_by_genre"
    if query.mixes:
        return "tracks_by_mix"
    return "tracks_live"


async def search(store: Store, query: CatalogQuery) -> dict[str, Any]:
    """`{"total", "items"}`: matching tracks newest first (date, then the pool's id), paged."""
    try:
        return await _search(store, query, hints=True)
    except sqlite3.OperationalError as err:
        if "no such index" not in str(err):
            raise
        # A bulk load is rebuilding the search indexes: slower, but still right.
        return await _search(store, query, hints=False)


async def _search(store: Store, query: CatalogQuery, *, hints: bool) -> dict[str, Any]:
    db = store.reads
    where, params = _filters(query)
    # The filters as words of the word index (migration 8), unless it cannot answer: removed
    # tracks asked for too, or a bulk load has not built it yet.
    facets: list[str] | None = None
    complete = False
    if hints and not query.include_removed and await _words_ready(store):
        facets, complete = _facet_terms(query)
    if query.terms:
        return await _search_words(db, query, where, params, facets, complete)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    index = _driving_index(query) if hints else None
    match = _match(None, facets) if facets is not None and complete else None
    if match is not None:
        # FTS5 merges the filters' doclists in C: no row is read to count (issue 3).
        return await _search_index(db, query, match)
    total = await _count(db, query, clause, params, index)
    items: list[dict[str, Any]] = []
    if total > query.offset:
        walked = None
        if index not in (None, "tracks_live") and total <= _SORT_LIMIT:
            walked = await _walk_newest(db, query, where, params, total)
        if walked is not None:
            items = await _page_of(db, _IDS, [json.dumps(walked)], query)
        else:
            if index is not None and total > _SORT_LIMIT:
                index = "tracks_live"
            hint = f" INDEXED BY {index}" if index else ""
            sql = f"SELECT t.rowid FROM tracks t{hint}{clause}"
            items = await _page_of(db, sql, params, query)
    return {"total": total, "items": items}


async def _size_estimate(db: Reads) -> int:
    """About how many tracks there are, for choosing a plan: the highest rowid is free to
    read, a count is not."""
    row = await db.fetchone("SELECT COALESCE(MAX(rowid), 0) FROM tracks")
    return int(row[0])


#: The rowids of a JSON array, as a query `_page_of` can order.
_IDS = "SELECT t.rowid FROM tracks t WHERE t.rowid IN (SELECT value FROM json_each(?))"
#: How much longer than its estimate a walk may go before the sort is cheaper after all.
_WALK_SLACK = 4.0


async def _walk_newest(
    db: Reads, query: CatalogQuery, where: list[str], params: list[Any], total: int
) -> list[int] | None:
    """The newest matches, found by walking `tracks_live` in date order for a bounded stretch.

    A per-column index yields every match of its column, all of which must be sorted to find
    the newest: `year=2021` sorts ~15,000 entries for a page of 50 (~8 ms), where the newest
    tracks hold a match every dozen rows (~0.3 ms). The estimate assumes the filters do not
    depend on the date; where they do (a genre that went out of fashion) the walk stops at
    its bound and the caller sorts. Exact either way: the walk runs to the end of the date
    its bound falls on, and every track it did not reach is older. None: sort instead.
    """
    if not where or where[0] != "t.removed = 0":
        return None
    need = query.offset + query.limit
    bound = int(need * await _size_estimate(db) / total * _WALK_SLACK)
    if bound >= total:
        return None  # the sort reads fewer entries than the walk might
    edge = (
        "SELECT date FROM tracks INDEXED BY tracks_live WHERE removed = 0 "
        "ORDER BY date DESC LIMIT 1 OFFSET ?"
    )
    rows = await db.fetchall(
        "SELECT t.rowid FROM tracks t INDEXED BY tracks_live WHERE "
        + " AND ".join([where[0], f"t.date >= ({edge})", *where[1:]]),
        [max(0, bound - 1), *params],
    )
    if len(rows) < need:
        return None
    return [int(r[0]) for r in rows]


async def _count(
    db: Reads, query: CatalogQuery, clause: str, params: list[Any], index: str | None
) -> int:
    """Count through the tables (the word index cannot answer this query)."""
    filters = (query.genres, query.mixes, query.bpm, query.year, query.advisories, query.media)
    if index == "tracks_live" and not any((*filters, query.include_removed)):
        # Nothing but pools to filter: SQLite counts a table (or a pool's range of the
        # (pool, id) index) without reading rows, and the removed ones are a short range of
        # `tracks_live`.
        every = "SELECT COUNT(*) FROM tracks"
        removed = "SELECT COUNT(*) FROM tracks INDEXED BY tracks_live WHERE removed = 1"
        if query.pools:
            in_pools = f"pool IN ({','.join('?' * len(query.pools))})"
            every, removed = f"{every} WHERE {in_pools}", f"{removed} AND {in_pools}"
        row = await db.fetchone(f"SELECT ({every}) - ({removed})", [*query.pools] * 2)
        return int(row[0])
    hint = f" INDEXED BY {index}" if index else ""
    row = await db.fetchone(f"SELECT COUNT(*) FROM tracks t{hint}{clause}", params)
    return int(row[0])


async def _search_words(
    db: Reads,
    query: CatalogQuery,
    where: list[str],
    params: list[Any],
    facets: list[str] | None,
    complete: bool,
) -> dict[str, Any]:
    """Words first: how many tracks match them decides how the rest is found.

    With `facets` the filters are words too; when they are all of them (`complete`) the word
    index answers alone (`_search_index`). Otherwise some filter is left to the rows (a wide
    range, removed tracks asked for, a word index not built yet), and reading a matching row
    costs a lookup: with many matches, walking the date-ordered `tracks_live` and probing the
    match set fills a page after a few rows; with few, reading the matches and sorting them
    is cheaper. The costs below are microseconds per row, measured on a 174,420-track mirror.
    """
    words = match_expression(query.terms)
    if facets is not None and complete:
        # Live tracks matching the words and every filter: the word index answers alone.
        match = _match(words, facets)
        assert match is not None  # the words are a term of it
        return await _search_index(db, query, match)
    match = words if facets is None else _match(words, facets)
    row = await db.fetchone(f"SELECT COUNT(*) FROM ({_HITS})", (match,))
    matches = int(row[0])
    if matches == 0:
        return {"total": 0, "items": []}
    direct = f"tracks_fts CROSS JOIN tracks t ON t.rowid = (tracks_fts.rowid {_KEY_ROWID})"
    direct_clause = " WHERE " + " AND ".join(["tracks_fts MATCH ?", *where])
    direct_args = [match, *params]
    if facets is None and where == ["t.removed = 0"]:
        # Only the words: every match counts but the few removed ones.
        row = await db.fetchone(
            f"SELECT COUNT(*) FROM tracks t INDEXED BY tracks_live "
            f"WHERE t.removed = 1 AND t.rowid IN ({_HITS})",
            (match,),
        )
        total = matches - int(row[0])
    else:
        row = await db.fetchone(f"SELECT COUNT(*) FROM {direct}{direct_clause}", direct_args)
        total = int(row[0])
    if total <= query.offset:
        return {"total": total, "items": []}
    if query.include_removed:
        probe = False  # tracks_live cannot be walked in date order across both states
    else:
        scanned = (query.offset + query.limit) * await _size_estimate(db) / total
        probe = (0.3 * matches + 0.6 * scanned) * _PROBE_BIAS < 0.65 * matches
    if probe:
        clause = " WHERE " + " AND ".join([*where, f"t.rowid IN ({_HITS})"])
        sql = f"SELECT t.rowid FROM tracks t INDEXED BY tracks_live{clause}"
        args = [*params, match]
    else:
        sql, args = f"SELECT t.rowid FROM {direct}{direct_clause}", direct_args
    return {"total": total, "items": await _page_of(db, sql, args, query)}


async def _search_index(db: Reads, query: CatalogQuery, match: str) -> dict[str, Any]:
    """Count and page a query the word index answers alone (`match` says everything).

    Its keys are in date order, newest first (schema migration 9), so FTS5 finds the key of
    the page's last match by walking its matches from the first and stopping there. Every
    match of that day or newer is then sorted exactly (within a day the order is the pool's
    id): a few more rows than the page, whatever the number of matches.
    """
    need = query.offset + query.limit
    row = await db.fetchone(
        "SELECT (SELECT COUNT(*) FROM tracks_fts WHERE tracks_fts MATCH ?1), "
        "(SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?1 ORDER BY rowid LIMIT 1 OFFSET ?2)",
        (match, need - 1),
    )
    total = int(row[0])
    if total <= query.offset:
        return {"total": total, "items": []}
    # Keys below the next day's first; fewer matches than `need`: all of them.
    below = _NO_KEY if row[1] is None else ((int(row[1]) >> 32) + 1) << 32
    sql = f"SELECT t.rowid FROM tracks t WHERE t.rowid IN ({_HITS} AND rowid < ?)"
    return {"total": total, "items": await _page_of(db, sql, (match, below), query)}


#: Above every word index key.
_NO_KEY = 1 << 62


async def _page_of(
    db: Reads, rowids: str, args: Sequence[Any], query: CatalogQuery
) -> list[dict[str, Any]]:
    """The page of tracks among `rowids` (a query selecting `t.rowid`), newest first.

    The page is chosen from what the index holds (date, id) and only its rows are read: left
    to itself SQLite reads every matching row before it sorts them.
    """
    rows = await db.fetchall(
        f"SELECT {_SELECT_TRACK} FROM tracks t WHERE t.rowid IN "
        f"({rowids}{_ORDER} LIMIT ? OFFSET ?){_ORDER}",
        (*args, query.limit, query.offset),
    )
    return [track_dict(row) for row in rows]
