"""Catalog search SQL: a validated CatalogQuery → one page of tracks and the total matching.

Reads only, through the store's read connection. While the word index is complete, filters are
matched and counted inside FTS5 (each track's filter values are words in it, schema migration 8);
otherwise, and for removed tracks, a covering per-column index drives the query (migration 5).
The mirror itself is written by `store/catalog.py`.
"""

from __future__ import annotations

import json
import sqlite3
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pooldaemon.store.catalog import SELECT_TRACK, track_dict, words_ready
from pooldaemon.store.db import Reads, Store
from pooldaemon.store.schema import SPELLINGS_KINDS

#: Word index keys are `sortkey`s (schema migration 9): the track's rowid is their low 32 bits.
_KEY_ROWID = "& 4294967295"
_HITS = f"SELECT rowid {_KEY_ROWID} FROM tracks_fts WHERE tracks_fts MATCH ?"


@dataclass(frozen=True, slots=True)
class NumberFilter:
    """`N`, `N,M,…` (values) or `N-M` (low..high inclusive), as docs/pools/crateq.md's
    bpm/releaseYear."""

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
    #: Rules (docs/interface.md §7): no track whose words match one of these groups (each
    #: as `terms`), none whose mix is one of these (case-insensitively), none dated before.
    exclude_terms: tuple[tuple[str, ...], ...] = ()
    exclude_mixes: tuple[str, ...] = ()
    since_date: str | None = None
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
    if query.since_date is not None:
        complete = False  # dates are not words of the index
    terms = [f"facets : ({' OR '.join(group)})" for group in groups if group]
    return terms, complete


def _match(
    words: str | None, facets: Sequence[str], query: CatalogQuery | None = None
) -> str | None:
    """Words and filter terms in one FTS5 query over live tracks; None when it has no
    positive term (FTS5 cannot answer a bare NOT). With `query`, its exclusions too."""
    parts = ([words] if words else []) + list(facets)
    if not parts:
        return None
    excluded = ["facets : qqr"]
    if query is not None:
        excluded += [f"({match_expression(terms)})" for terms in query.exclude_terms]
        if query.exclude_mixes:
            mixes = " OR ".join(_facet("m", mix) for mix in query.exclude_mixes)
            excluded.append(f"facets : ({mixes})")
    return f"({' AND '.join(parts)})" + "".join(f" NOT {term}" for term in excluded)


def _filters(
    query: CatalogQuery, *, keys: tuple[int, int] | None = None
) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters for everything but the words. `keys`: the rows are known to
    lie between these word index keys, so an excluded word's matches are listed there only."""
    where: list[str] = []
    params: list[Any] = []
    if not query.include_removed:
        where.append("t.removed = 0")
    if query.pools:
        _in("t.pool", query.pools, where, params)
    if query.genres:
        # A whole value, case-insensitively: NOCASE folds ASCII letters, and `search` has added
        # every spelling that folds to the same in other scripts (_spellings).
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
    for terms in query.exclude_terms:
        where.append(f"t.sortkey NOT IN ({_WORD_KEYS}{_KEY_RANGE if keys else ''})")
        params.extend([match_expression(terms), *(keys or ())])
    if query.exclude_mixes:
        marks = ",".join("?" * len(query.exclude_mixes))
        where.append(f"(t.mix IS NULL OR t.mix COLLATE NOCASE NOT IN ({marks}))")
        params.extend(query.exclude_mixes)
    if query.since_date is not None:
        where.append("t.date >= ?")
        params.append(query.since_date)
    return where, params


#: The word index keys (`sortkey`s) of the tracks an FTS5 query matches.
_WORD_KEYS = "SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?"
#: Only the keys between two: FTS5 seeks there in each word's list (a prefix word such as
#: "feat" has thousands of matches in a big mirror, a day's new tracks a few).
_KEY_RANGE = " AND rowid BETWEEN ? AND ?"


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
    if query.genres or query.mixes:
        query = replace(
            query,
            genres=await _spellings(store.reads, "g", query.genres),
            mixes=await _spellings(store.reads, "m", query.mixes),
        )
    try:
        return await _search(store, query, hints=True)
    except sqlite3.OperationalError as err:
        if "no such index" not in str(err):
            raise
        # A bulk load is rebuilding the search indexes: slower, but still right.
        return await _search(store, query, hints=False)


async def _spellings(db: Reads, kind: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """Every stored spelling of these values under Unicode case folding (schema migration 11):
    `música latina` finds `Música Latina` and `MÚSICA LATINA`, which NOCASE and the word index
    (ASCII folding) would each match only as spelled. The values themselves stay: an ASCII
    fold never joins two values a Unicode fold keeps apart."""
    if not values:
        return values
    folded = list(dict.fromkeys(value.casefold() for value in values))
    rows = await db.fetchall(
        f"SELECT value FROM spellings WHERE kind = ? AND folded IN ({','.join('?' * len(folded))})",
        (kind, *folded),
    )
    return tuple(dict.fromkeys([*values, *(row[0] for row in rows)]))


async def _search(store: Store, query: CatalogQuery, *, hints: bool) -> dict[str, Any]:
    db = store.reads
    where, params = _filters(query)
    # The filters as words of the word index (migration 8), unless it cannot answer: removed
    # tracks asked for too, or a bulk load has not built it yet.
    facets: list[str] | None = None
    complete = False
    if hints and not query.include_removed and await words_ready(store):
        facets, complete = _facet_terms(query)
    if query.terms:
        return await _search_words(db, query, where, params, facets, complete)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    index = _driving_index(query) if hints else None
    match = _match(None, facets, query) if facets is not None and complete else None
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
    filters = (
        query.genres,
        query.mixes,
        query.bpm,
        query.year,
        query.advisories,
        query.media,
        query.exclude_terms,
        query.exclude_mixes,
        query.since_date,
    )
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
        match = _match(words, facets, query)
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
        f"SELECT {SELECT_TRACK} FROM tracks t WHERE t.rowid IN "
        f"({rowids}{_ORDER} LIMIT ? OFFSET ?){_ORDER}",
        (*args, query.limit, query.offset),
    )
    return [track_dict(row) for row in rows]


# -- rules (docs/interface.md §7) ----------------------------------------------------------------


_ROWS_OF = "json_each(?) c CROSS JOIN tracks t ON t.rowid = c.value"


async def key_range(store: Store, rowids: Sequence[int]) -> tuple[int, int] | None:
    """The lowest and highest word index key of these tracks (None: none of them exists)."""
    if not rowids:
        return None
    low, high = await store.reads.fetchone(
        f"SELECT min(t.sortkey), max(t.sortkey) FROM {_ROWS_OF}", (json.dumps(list(rowids)),)
    )
    return None if low is None else (int(low), int(high))


async def matching_tracks(
    store: Store, query: CatalogQuery, rowids: Sequence[int], keys: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """The tracks among `rowids` that `query` matches, newest first, unpaged.

    The same filters as a search (`_filters`, `match_expression`), driven from the given rows:
    a rule looks at the few tracks a sync added, not at every match in the mirror. `keys`:
    their `key_range` (or a wider one), when the caller has it.
    """
    keys = keys or await key_range(store, rowids)
    if not rowids or keys is None:
        return []
    low, high = keys
    within = json.dumps(list(rowids))
    rows_of = _ROWS_OF
    where, params = _filters(query, keys=(low, high))
    if query.terms:
        where.append(f"t.sortkey IN ({_WORD_KEYS}{_KEY_RANGE})")
        params.extend([match_expression(query.terms), low, high])
    clause = "".join(f" AND {term}" for term in where)
    rows = await store.reads.fetchall(
        f"SELECT {SELECT_TRACK} FROM {rows_of} WHERE 1{clause}{_ORDER}", [within, *params]
    )
    return [track_dict(row) for row in rows]


async def spellings(store: Store, column: Literal["genre", "mix"]) -> list[str]:
    """Every spelling of `column` the mirror has had (the `spellings` table, migration 11).

    A rule matches genres and mixes case-insensitively in every script (docs/interface.md §7):
    it picks the spellings whose casefold is one of its values, and a NOCASE match on those
    finds exactly its tracks. One read for all of a look's rules, however many values.
    """
    rows = await store.reads.fetchall(
        "SELECT value FROM spellings WHERE kind = ?", (SPELLINGS_KINDS[column],)
    )
    return [str(row[0]) for row in rows]
