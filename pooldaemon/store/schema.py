"""The state database's schema as numbered migrations, tracked in `PRAGMA user_version`.

Each migration is a list of statements run in one transaction. Append new versions; never edit
a released one, since databases in the field have already run it.

One concept, so one module however long it grows: the list is the schema's history, read top to
bottom, and its index is the version a database is at.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: pools, catalog mirror, remote queues, jobs with chunk progress, library.
    [
        """
        CREATE TABLE pools (
            name              TEXT PRIMARY KEY,          -- the config table name, used in refs
            type              TEXT NOT NULL,             -- crateq | promoonly | harvest
            last_catalog_sync REAL,                      -- unix time of the last full success
            last_queue_sync   REAL,
            last_error        TEXT,
            last_error_at     REAL,
            failing_since     REAL,                      -- set while polls fail, for log-on-change
            blocked_reason    TEXT,                      -- downloads stopped by the pool
            catalog_cursor    TEXT,                      -- adapter-owned incremental-sync point
            state             TEXT NOT NULL DEFAULT '{}' -- adapter-owned JSON (persistent tokens)
        )
        """,
        """
        CREATE TABLE tracks (
            rowid       INTEGER PRIMARY KEY,
            pool        TEXT NOT NULL,
            id          TEXT NOT NULL,
            artist      TEXT,
            title       TEXT,
            genre       TEXT,
            bpm         INTEGER,
            year        INTEGER,
            mix         TEXT,
            editor      TEXT,
            advisory    TEXT,
            length_s    INTEGER,
            size_bytes  INTEGER,
            audio       INTEGER,
            video       INTEGER,
            quality     TEXT,
            date        TEXT,
            source      TEXT,
            downloaded  INTEGER,
            removed     INTEGER NOT NULL DEFAULT 0,
            raw         TEXT NOT NULL DEFAULT '{}',
            first_seen  REAL NOT NULL,
            last_seen   REAL NOT NULL,              -- set by every pass that saw it
            UNIQUE (pool, id)
        )
        """,
        "CREATE INDEX tracks_date ON tracks (date DESC, rowid DESC)",
        "CREATE INDEX tracks_pool_seen ON tracks (pool, last_seen)",
        "CREATE INDEX tracks_bpm ON tracks (bpm)",
        "CREATE INDEX tracks_year ON tracks (year)",
        # Accent- and case-insensitive prefix search over artist/title/editor (docs/interface.md
        # §4).
        """
        CREATE VIRTUAL TABLE tracks_fts USING fts5 (
            artist, title, editor,
            content = 'tracks', content_rowid = 'rowid',
            tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
        )
        """,
        """
        CREATE TRIGGER tracks_ai AFTER INSERT ON tracks BEGIN
            INSERT INTO tracks_fts (rowid, artist, title, editor)
            VALUES (new.rowid, new.artist, new.title, new.editor);
        END
        """,
        """
        CREATE TRIGGER tracks_ad AFTER DELETE ON tracks BEGIN
            INSERT INTO tracks_fts (tracks_fts, rowid, artist, title, editor)
            VALUES ('delete', old.rowid, old.artist, old.title, old.editor);
        END
        """,
        """
        CREATE TRIGGER tracks_au AFTER UPDATE OF artist, title, editor ON tracks BEGIN
            INSERT INTO tracks_fts (tracks_fts, rowid, artist, title, editor)
            VALUES ('delete', old.rowid, old.artist, old.title, old.editor);
            INSERT INTO tracks_fts (rowid, artist, title, editor)
            VALUES (new.rowid, new.artist, new.title, new.editor);
        END
        """,
        """
        CREATE TABLE lookups (
            pool  TEXT NOT NULL,
            kind  TEXT NOT NULL,                 -- genres, genre_categories, video_qualities, …
            key   TEXT NOT NULL,
            value TEXT NOT NULL,                 -- JSON, as the pool sent it
            PRIMARY KEY (pool, kind, key)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE remote_queue (
            pool       TEXT NOT NULL,
            item_id    TEXT NOT NULL,
            kind       TEXT NOT NULL DEFAULT 'track',
            queue_id   TEXT,
            queued_at  TEXT,
            extra      TEXT NOT NULL DEFAULT '{}', -- adapter data: a token, when seen
            first_seen REAL NOT NULL,
            last_seen  REAL NOT NULL,
            PRIMARY KEY (pool, item_id, kind)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE jobs (
            id           INTEGER PRIMARY KEY,
            pool         TEXT NOT NULL,
            kind         TEXT NOT NULL DEFAULT 'track',
            item_id      TEXT,
            format       TEXT NOT NULL DEFAULT '',
            ref          TEXT NOT NULL,
            origin       TEXT NOT NULL,             -- request | auto | redownload | drop
            title        TEXT,
            artist       TEXT,
            state        TEXT NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            error        TEXT,
            error_code   TEXT,
            bytes_done   INTEGER NOT NULL DEFAULT 0,
            bytes_total  INTEGER,
            path         TEXT,
            plan         TEXT,                      -- the last DownloadPlan, JSON (tokens inside)
            not_before   REAL,                      -- back-off: not retried before this time
            created      REAL NOT NULL,
            updated      REAL NOT NULL
        )
        """,
        "CREATE INDEX jobs_state ON jobs (state, id)",
        "CREATE INDEX jobs_item ON jobs (pool, kind, item_id, format)",
        """
        CREATE TABLE job_parts (
            job_id        INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            part_key      TEXT NOT NULL,
            expected_size INTEGER,                  -- resume is valid only for the same size
            etag          TEXT,
            last_modified TEXT,
            range_ok      INTEGER,                  -- NULL: not probed yet
            work_path     TEXT,
            chunk_size    INTEGER,
            done          INTEGER NOT NULL DEFAULT 0,
            sha256        TEXT,
            PRIMARY KEY (job_id, part_key)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE chunks (
            job_id   INTEGER NOT NULL,
            part_key TEXT NOT NULL,
            idx      INTEGER NOT NULL,
            start    INTEGER NOT NULL,
            end      INTEGER NOT NULL,              -- inclusive, as in a Range header
            done     INTEGER NOT NULL DEFAULT 0,    -- set only after the data is fsynced
            PRIMARY KEY (job_id, part_key, idx),
            FOREIGN KEY (job_id, part_key) REFERENCES job_parts (job_id, part_key)
                ON DELETE CASCADE
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE server_health (
            pool           TEXT NOT NULL,
            server         TEXT NOT NULL,
            failures       INTEGER NOT NULL DEFAULT 0,
            cooldown_until REAL,
            no_range       INTEGER NOT NULL DEFAULT 0,
            last_error     TEXT,
            updated        REAL NOT NULL,
            PRIMARY KEY (pool, server)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE library (
            id        INTEGER PRIMARY KEY,
            pool      TEXT NOT NULL,
            kind      TEXT NOT NULL DEFAULT 'track',
            item_id   TEXT NOT NULL,
            format    TEXT NOT NULL DEFAULT '',
            path      TEXT NOT NULL,
            size      INTEGER NOT NULL,
            sha256    TEXT NOT NULL,
            state     TEXT NOT NULL,               -- downloaded | deleted | lost | failed
            reason    TEXT,
            job_id    INTEGER,
            created   REAL NOT NULL,
            updated   REAL NOT NULL
        )
        """,
        "CREATE INDEX library_item ON library (pool, kind, item_id, format)",
        "CREATE UNIQUE INDEX library_path ON library (path) WHERE state = 'downloaded'",
    ],
    # 2: calls owed to pools, and drop-folder requests deduplicated by content hash.
    [
        """
        CREATE TABLE outbox (
            id          INTEGER PRIMARY KEY,
            pool        TEXT NOT NULL,
            action      TEXT NOT NULL,
            payload     TEXT NOT NULL,             -- JSON
            job_id      INTEGER,
            attempts    INTEGER NOT NULL DEFAULT 0,
            not_before  REAL,
            last_error  TEXT,
            created     REAL NOT NULL,
            done_at     REAL
        )
        """,
        "CREATE INDEX outbox_pending ON outbox (done_at, not_before)",
        """
        CREATE TABLE drop_requests (
            sha256     TEXT PRIMARY KEY,            -- the file's content: a re-read never re-queues
            name       TEXT NOT NULL,
            received   REAL NOT NULL,
            result     TEXT NOT NULL,               -- the result JSON written beside the file
            moved_to   TEXT                         -- NULL until the file has been moved
        ) WITHOUT ROWID
        """,
        # The remote side effect we started but have not seen finish (docs/reliability.md C6).
        """
        CREATE TABLE pending_remote (
            pool     TEXT NOT NULL,
            action   TEXT NOT NULL,
            item_id  TEXT NOT NULL,
            started  REAL NOT NULL,
            PRIMARY KEY (pool, action, item_id)
        ) WITHOUT ROWID
        """,
    ],
    # 3: the downloader's sub-chunk progress and the file it is about to rename into place.
    [
        # Bytes from the chunk's start that are fsynced (issue 4: a failed or interrupted chunk
        # resumes there rather than from its start).
        "ALTER TABLE chunks ADD COLUMN filled INTEGER NOT NULL DEFAULT 0",
        # Written before the final rename with `path`: after a crash between rename and "done",
        # a file at `path` with this hash is ours to adopt (docs/reliability.md C4).
        "ALTER TABLE jobs ADD COLUMN final_sha256 TEXT",
        # The server whose answer fixed the part's size and ETag (docs/reliability.md H3 vs H11).
        "ALTER TABLE job_parts ADD COLUMN identity_server TEXT",
    ],
    # 4: the drop folder's hand-off, resumable after a crash (docs/reliability.md C5,
    # store/drops.py).
    [
        # pending: lines recorded, not all submitted; submitted: result known; done: first file
        # with this content moved. `lines` keeps what was parsed so a replay needs no re-read.
        "ALTER TABLE drop_requests ADD COLUMN state TEXT NOT NULL DEFAULT 'done'",
        "ALTER TABLE drop_requests ADD COLUMN lines TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX drop_requests_state ON drop_requests (state)",
        # One row per dropped file: the destination is chosen and recorded before the result
        # file is written, so a restart finishes the same move instead of picking a new name.
        """
        CREATE TABLE drop_files (
            id       INTEGER PRIMARY KEY,
            name     TEXT NOT NULL,               -- its name in drop_dir
            dev      INTEGER NOT NULL,
            ino      INTEGER NOT NULL,            -- same name and inode: the same dropped file
            sha256   TEXT,                        -- NULL: refused or rejected unread
            dest     TEXT NOT NULL,               -- relative to drop_dir: processed/… rejected/…
            sidecar  TEXT NOT NULL,               -- exact text of the result or errors file
            state    TEXT NOT NULL,               -- placing | moved | vanished
            created  REAL NOT NULL,
            moved    REAL
        )
        """,
        "CREATE INDEX drop_files_state ON drop_files (state)",
        "CREATE INDEX drop_files_name ON drop_files (name, dev, ino)",
    ],
]

# Covering indexes for `GET /v1/catalog` (store/search.py picks one per query): every filter
# column is in each, so a count never reads the wide rows. `tracks_live` is in date order, so
# the newest matches of a broad filter come first; the others start at their own column.
# store/catalog.py drops the `BULK_INDEXES` for a first full sync into an empty mirror and
# builds them again after: one sort each instead of 174,420 random-order inserts into each
# (`tracks_live` is filled in date order as the pages come, which costs little).
_FILTER_COLUMNS = (
    "pool",
    "genre COLLATE NOCASE",
    "mix COLLATE NOCASE",
    "bpm",
    "year",
    "advisory COLLATE NOCASE",
    "audio",
    "video",
)


def _covering(first: str | None) -> str:
    lead = [first, "removed"] if first else ["removed", "date DESC"]
    rest = [c for c in _FILTER_COLUMNS if c != first] + (["date", "id"] if first else ["id"])
    return f"tracks ({', '.join(lead + rest)})"


#: What migration 5 built (migration 10 drops the bpm and year ones).
_SEARCH_INDEXES_5: dict[str, str] = {
    "tracks_live": _covering(None),
    "tracks_by_genre": _covering("genre COLLATE NOCASE"),
    "tracks_by_bpm": _covering("bpm"),
    "tracks_by_year": _covering("year"),
    "tracks_by_mix": _covering("mix COLLATE NOCASE"),
}
SEARCH_INDEXES: dict[str, str] = {
    name: _SEARCH_INDEXES_5[name] for name in ("tracks_live", "tracks_by_genre", "tracks_by_mix")
}
BULK_INDEXES = ("tracks_by_genre", "tracks_by_mix")

MIGRATIONS.append(
    # 5: catalog search and bulk sync speed (issue 3: 174,420 tracks, p95 < 10 ms, 20k/s).
    [
        # store/catalog.py adds FTS rows a page at a time (INSERT … SELECT): 3-4x faster than
        # this per-row trigger on a full sync. The update and delete triggers stay.
        "DROP TRIGGER tracks_ai",
        # Superseded by the covering indexes below (tracks_live is in date order); a full pass
        # notes what it saw in a TEMP
        # table instead of stamping every row, so (pool, last_seen) has no reader left.
        "DROP INDEX tracks_bpm",
        "DROP INDEX tracks_year",
        "DROP INDEX tracks_pool_seen",
        "DROP INDEX tracks_date",
        # Each track's `raw` (every field the pool sent) lives beside it, keyed by its rowid:
        # rows without it are a sixth of the size, so the lookups a search makes per word
        # match, the index builds and the word index rebuild all read far less.
        "CREATE TABLE tracks_raw (rowid INTEGER PRIMARY KEY, raw TEXT NOT NULL)",
        "INSERT INTO tracks_raw (rowid, raw) SELECT rowid, raw FROM tracks",
        "ALTER TABLE tracks DROP COLUMN raw",
        """
        CREATE TRIGGER tracks_raw_ad AFTER DELETE ON tracks BEGIN
            DELETE FROM tracks_raw WHERE rowid = old.rowid;
        END
        """,
        *(f"CREATE INDEX {name} ON {spec}" for name, spec in _SEARCH_INDEXES_5.items()),
    ]
)

MIGRATIONS.append(
    # 6: idempotency keys for submits (the drop folder's replay after a crash, docs/reliability.md
    # C5).
    [
        """
        CREATE TABLE submit_keys (
            key     TEXT PRIMARY KEY,               -- drop:<sha256>:<line>#<n>
            job_id  INTEGER,                        -- the job that call made or pointed at
            created REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ]
)

# Narrow indexes that counted a broad filter without a word or a per-column filter (advisory,
# media, pool). `tracks_live` has the columns too, but a count through it reads every live
# entry, each as wide as all the filter columns. Superseded by the filter words of migration
# 8, which drops them (they also cost a full sync ~1.5 s of upkeep).
COUNT_INDEXES: dict[str, str] = {
    "tracks_count_media": "tracks (removed, video, audio, advisory COLLATE NOCASE, pool)",
    "tracks_count_advisory": "tracks (removed, advisory COLLATE NOCASE, pool)",
    "tracks_count_pool": "tracks (removed, pool)",
}

MIGRATIONS.append(
    # 7: counting broad search filters (issue 3: p95 < 10 ms).
    [f"CREATE INDEX {name} ON {spec}" for name, spec in COUNT_INDEXES.items()]
)

# The search filters as words of the word index, so a query's words and filters meet inside
# FTS5 (doclist intersections in C) instead of through one row lookup per word match: counting
# `q=dj&mix=Intro` on 174,420 tracks goes from ~45 ms to ~3 ms (issue 3, p95 < 10 ms).
# One token per filter value, `qq` + a letter + the value (text values hex-encoded after ASCII
# lowering, so a token is one word whatever the value holds, and NOCASE-equal values share it):
# p pool, g genre, m mix, b bpm, y year, a advisory; `qqu`/`qqv` audio/video; `qqr` removed.
# A NULL gives the bare prefix, which no query asks for. store/search.py builds the queries.
FACETS_SQL = (
    "'qqp' || hex(pool)"
    " || ' qqg' || hex(lower(coalesce(genre, '')))"
    " || ' qqm' || hex(lower(coalesce(mix, '')))"
    " || ' qqb' || coalesce(bpm, '')"
    " || ' qqy' || coalesce(year, '')"
    " || ' qqa' || hex(lower(coalesce(advisory, '')))"
    " || CASE WHEN audio = 1 THEN ' qqu' ELSE '' END"
    " || CASE WHEN video = 1 THEN ' qqv' ELSE '' END"
    " || CASE WHEN removed = 1 THEN ' qqr' ELSE '' END"
)
#: Every column the word index reads, facets included: a change to any of them re-indexes.
_FTS_TRIGGER_COLUMNS = (
    "artist, title, editor, pool, genre, mix, bpm, year, advisory, audio, video, removed"
)

MIGRATIONS.append(
    # 8: filters in the word index (above); the count indexes of 7 are no longer read.
    [
        "DROP TRIGGER tracks_ad",
        "DROP TRIGGER tracks_au",
        "DROP TABLE tracks_fts",
        f"ALTER TABLE tracks ADD COLUMN facets TEXT GENERATED ALWAYS AS ({FACETS_SQL}) VIRTUAL",
        """
        CREATE VIRTUAL TABLE tracks_fts USING fts5 (
            artist, title, editor, facets,
            content = 'tracks', content_rowid = 'rowid',
            tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
        )
        """,
        """
        CREATE TRIGGER tracks_ad AFTER DELETE ON tracks BEGIN
            INSERT INTO tracks_fts (tracks_fts, rowid, artist, title, editor, facets)
            VALUES ('delete', old.rowid, old.artist, old.title, old.editor, old.facets);
        END
        """,
        f"""
        CREATE TRIGGER tracks_au AFTER UPDATE OF {_FTS_TRIGGER_COLUMNS} ON tracks BEGIN
            INSERT INTO tracks_fts (tracks_fts, rowid, artist, title, editor, facets)
            VALUES ('delete', old.rowid, old.artist, old.title, old.editor, old.facets);
            INSERT INTO tracks_fts (rowid, artist, title, editor, facets)
            VALUES (new.rowid, new.artist, new.title, new.editor, new.facets);
        END
        """,
        "INSERT INTO tracks_fts (tracks_fts) VALUES ('rebuild')",
        *(f"DROP INDEX {name}" for name in COUNT_INDEXES),
    ]
)

# The word index keyed in date order, newest first, so FTS5 itself hands out a query's newest
# matches: it walks a doclist from its first key and stops after a page (`ORDER BY rowid LIMIT`,
# ~0.1 ms) where joining every match to its row to sort them took 3-5 ms (issue 3, p95 < 10 ms).
# The key is 99999999 minus the date as YYYYMMDD, above the track's rowid (below 2^32): keys
# order as dates do, newest first, NULL last. A date not in that shape can only be one in other
# digits (the adapters take YYYY-MM-DD only), which sorts above every ASCII one as text: first.
# Newest first also means a bulk load, which writes the newest tracks first, hands FTS5 its
# keys in ascending order: FTS5 writes out its pending terms whenever a key goes down.
# store/search.py sorts the matches of a page's last day exactly.
SORTKEY_SQL = (
    "((99999999 - CASE WHEN date IS NULL THEN 0"
    " WHEN date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'"
    " THEN CAST(replace(date, '-', '') AS INTEGER) ELSE 99999999 END) << 32) | rowid"
)

MIGRATIONS.append(
    # 9: the word index keyed by `sortkey` (above) instead of the rowid.
    [
        "DROP TRIGGER tracks_ad",
        "DROP TRIGGER tracks_au",
        "DROP TABLE tracks_fts",
        f"ALTER TABLE tracks ADD COLUMN sortkey INTEGER GENERATED ALWAYS AS ({SORTKEY_SQL}) "
        "VIRTUAL",
        """
        CREATE VIRTUAL TABLE tracks_fts USING fts5 (
            artist, title, editor, facets,
            content = 'tracks', content_rowid = 'sortkey',
            tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
        )
        """,
        """
        CREATE TRIGGER tracks_ad AFTER DELETE ON tracks BEGIN
            INSERT INTO tracks_fts (tracks_fts, rowid, artist, title, editor, facets)
            VALUES ('delete', old.sortkey, old.artist, old.title, old.editor, old.facets);
        END
        """,
        f"""
        CREATE TRIGGER tracks_au AFTER UPDATE OF {_FTS_TRIGGER_COLUMNS}, date ON tracks BEGIN
            INSERT INTO tracks_fts (tracks_fts, rowid, artist, title, editor, facets)
            VALUES ('delete', old.sortkey, old.artist, old.title, old.editor, old.facets);
            INSERT INTO tracks_fts (rowid, artist, title, editor, facets)
            VALUES (new.sortkey, new.artist, new.title, new.editor, new.facets);
        END
        """,
        "INSERT INTO tracks_fts (tracks_fts) VALUES ('rebuild')",
    ]
)

MIGRATIONS.append(
    # 10: the bpm and year indexes have no reader left worth their upkeep. Filters are words of
    # the word index (migration 8), which also hands out the pages (9); only a bpm/year range
    # wider than 64 values is filtered on the rows, and such a range holds most of a catalog,
    # so its index saved little (counting `bpm=60-200`: 14.5 ms through it, 18.3 through
    # `tracks_live`). Building them cost a first sync ~0.55 s, and every changed row upkeep.
    ["DROP INDEX IF EXISTS tracks_by_bpm", "DROP INDEX IF EXISTS tracks_by_year"]
)

# Genre and mix filters match a whole value case-insensitively in every script (docs/interface.md
# §7), but SQLite's NOCASE and lower() fold ASCII only. Each value's spellings are kept under
# its Unicode case fold (`str.casefold`, registered as `pd_casefold` on the writing connection,
# store/db.py), so a search asks for every stored spelling of the value it was given; the word
# index and the covering indexes stay as they are. store/catalog.py adds a page's values.
SPELLINGS_KINDS = {"genre": "g", "mix": "m"}

MIGRATIONS.append(
    # 11: spellings of the filter values under their Unicode case fold (above).
    [
        """
        CREATE TABLE spellings (
            kind   TEXT NOT NULL,                   -- g genre, m mix
            folded TEXT NOT NULL,                   -- str.casefold() of the value
            value  TEXT NOT NULL,                   -- a spelling some track has
            PRIMARY KEY (kind, folded, value)
        ) WITHOUT ROWID
        """,
        *(
            f"INSERT OR IGNORE INTO spellings (kind, folded, value) SELECT DISTINCT '{kind}', "
            f"pd_casefold({column}), {column} FROM tracks WHERE {column} IS NOT NULL"
            for column, kind in SPELLINGS_KINDS.items()
        ),
    ]
)

MIGRATIONS.append(
    # 12: what pooldaemon wrote last to each export file (docs/interface.md §9): a file whose
    # content is anything else was edited by the user, and ours goes beside it.
    [
        """
        CREATE TABLE export_files (
            target   TEXT PRIMARY KEY,             -- the file the config (or a playlist) names
            format   TEXT NOT NULL,                -- m3u8 | rekordbox | traktor | serato
            path     TEXT NOT NULL,                -- where it went: target, or beside it
            digest   TEXT NOT NULL,                -- SHA-256 of the bytes written to path
            written  REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ]
)

MIGRATIONS.append(
    # 13: the library (docs/interface.md §8). Song key and version per mirrored track, filled
    # after a sync by the library's background pass rather than while the pages are written
    # (a full sync keeps its speed; `NULL` means "not computed yet", and a changed track goes
    # back to `NULL`). The partial index leaves a bulk load's new rows (all `NULL`) out.
    # Library entries gain the song key, version, audio checksum and what the audit last saw;
    # `adopt_files` remembers every file an adopt scan read, so a second scan opens only the
    # ones whose size, mtime or inode changed.
    [
        "ALTER TABLE tracks ADD COLUMN song_key TEXT",
        "ALTER TABLE tracks ADD COLUMN version TEXT",
        "CREATE INDEX tracks_song ON tracks (song_key, version) WHERE song_key IS NOT NULL",
        "ALTER TABLE library ADD COLUMN song_key TEXT",
        "ALTER TABLE library ADD COLUMN version TEXT",
        "ALTER TABLE library ADD COLUMN length_s REAL",
        "ALTER TABLE library ADD COLUMN audio_hash TEXT",
        "ALTER TABLE library ADD COLUMN mtime_ns INTEGER",
        "ALTER TABLE library ADD COLUMN inode INTEGER",
        "ALTER TABLE library ADD COLUMN checked REAL",
        "ALTER TABLE library ADD COLUMN heal_job INTEGER",
        "CREATE INDEX library_song ON library (song_key, version) "
        "WHERE state IN ('downloaded', 'adopted', 'deleted', 'lost')",
        "CREATE UNIQUE INDEX library_adopted ON library (path) WHERE state = 'adopted'",
        "CREATE INDEX library_state ON library (state, id)",
        # A job fetched automatically remembers its song, so a second pool's copy of the same
        # song in the same sync finds it before the library holds the file.
        "ALTER TABLE jobs ADD COLUMN song_key TEXT",
        "ALTER TABLE jobs ADD COLUMN version TEXT",
        "ALTER TABLE jobs ADD COLUMN automatic INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_song ON jobs (song_key, version) WHERE song_key IS NOT NULL",
        """
        CREATE TABLE adopt_files (
            path      TEXT PRIMARY KEY,
            size      INTEGER NOT NULL,
            mtime_ns  INTEGER NOT NULL,
            inode     INTEGER NOT NULL,
            song_key  TEXT,                    -- from the tags
            version   TEXT,
            name_key  TEXT,                    -- from the file name
            name_version TEXT,
            length_s  REAL,
            problem   TEXT,
            scanned   REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ]
)

MIGRATIONS.append(
    # 14: rules (docs/interface.md §7): when each rule first appeared, how far each pool's new
    # tracks have been looked at, and what each rule decided for each track it matched.
    [
        """
        CREATE TABLE rules (
            name        TEXT PRIMARY KEY,
            first_seen  REAL NOT NULL            -- the rule looks at tracks newer than this
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE rule_cursors (
            pool        TEXT PRIMARY KEY,
            seen_to     REAL NOT NULL            -- tracks first seen up to here were looked at
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE rule_matches (
            rule        TEXT NOT NULL,
            pool        TEXT NOT NULL,
            item_id     TEXT NOT NULL,
            song_key    TEXT NOT NULL,
            version     TEXT NOT NULL,
            length_s    INTEGER,
            state       TEXT NOT NULL,           -- queued | skipped | waiting
            reason      TEXT,
            job_id      INTEGER,
            day         TEXT,                    -- local date the job was started (queued)
            created     REAL NOT NULL,
            PRIMARY KEY (rule, pool, item_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX rule_matches_state ON rule_matches (rule, state, day)",
        "CREATE INDEX rule_matches_song ON rule_matches (song_key, state)",
        "CREATE INDEX rule_matches_item ON rule_matches (pool, item_id)",
        # New tracks since a point in time, without reading the mirror: a pass's tracks share
        # one first_seen, so this index only ever grows at its end.
        "CREATE INDEX tracks_first_seen ON tracks (first_seen)",
    ]
)

# Checksums name their algorithm (`<algorithm>:<hex>`, downloader/digest.py): the library's is
# BLAKE3 from now on, and the SHA-256 values recorded before stay SHA-256 and are verified as
# such. The columns keep their old name `sha256`; they hold the named value.
MIGRATIONS.append(
    # 15: every recorded library checksum gets its algorithm's name.
    [
        f"UPDATE {table} SET {column} = 'sha256:' || lower({column}) "
        f"WHERE {column} IS NOT NULL AND instr({column}, ':') = 0"
        for table, column in (
            ("library", "sha256"),
            ("jobs", "final_sha256"),
            ("job_parts", "sha256"),
        )
    ]
)

# The library's rows the exports list, and the columns their entries are made of (store/exports.py
# `LIBRARY_COLUMNS`): a change to one of them is logged, so an export knows whether files were
# only added since the last one (docs/architecture.md, exports).
_LISTED_LIBRARY_COLUMNS = ("pool", "kind", "item_id", "path", "size", "state", "job_id", "created")
_LISTED_JOB_COLUMNS = ("origin", "ref", "plan", "artist", "title")
_LISTED_TRACK_COLUMNS = ("artist", "title", "genre", "bpm", "year", "mix", "length_s")


def _changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns)


MIGRATIONS.append(
    # 16: what changed in the library since the last export. Inserts are not logged: a new
    # entry has an id above every one the last export read. The tracks' and jobs' triggers
    # fire only for real changes of the columns the exports show (a sync rewrites a changed
    # track's row; the background pass's song keys are not shown).
    [
        """
        CREATE TABLE library_changes (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            library_id  INTEGER NOT NULL
        )
        """,
        "CREATE INDEX library_job ON library (job_id)",
        f"""
        CREATE TRIGGER library_changes_au
        AFTER UPDATE OF {", ".join(_LISTED_LIBRARY_COLUMNS)} ON library
        WHEN {_changed(_LISTED_LIBRARY_COLUMNS)} BEGIN
            INSERT INTO library_changes (library_id) VALUES (new.id);
        END
        """,
        """
        CREATE TRIGGER library_changes_ad AFTER DELETE ON library BEGIN
            INSERT INTO library_changes (library_id) VALUES (old.id);
        END
        """,
        f"""
        CREATE TRIGGER jobs_library_changes_au
        AFTER UPDATE OF {", ".join(_LISTED_JOB_COLUMNS)} ON jobs
        WHEN {_changed(_LISTED_JOB_COLUMNS)} BEGIN
            INSERT INTO library_changes (library_id) SELECT id FROM library WHERE job_id = new.id;
        END
        """,
        """
        CREATE TRIGGER jobs_library_changes_ad AFTER DELETE ON jobs BEGIN
            INSERT INTO library_changes (library_id) SELECT id FROM library WHERE job_id = old.id;
        END
        """,
        f"""
        CREATE TRIGGER tracks_library_changes_au
        AFTER UPDATE OF {", ".join(_LISTED_TRACK_COLUMNS)} ON tracks
        WHEN {_changed(_LISTED_TRACK_COLUMNS)} BEGIN
            INSERT INTO library_changes (library_id) SELECT id FROM library
            WHERE pool = new.pool AND kind = 'track' AND item_id = new.id;
        END
        """,
    ]
)

SCHEMA_VERSION = len(MIGRATIONS)
