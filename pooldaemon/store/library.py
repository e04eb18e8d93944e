"""The library: what finished downloads became (downloaded / deleted / lost / failed)."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pooldaemon.errors import Conflict, NotFound
from pooldaemon.models import JOB_TRANSITIONS, JobState, LibraryState, OutboxCall
from pooldaemon.store.catalog import track_song
from pooldaemon.store.db import Store
from pooldaemon.store.jobs import JOB_COLUMNS, job_dict
from pooldaemon.store.outbox import enqueue_in


async def record_download(
    store: Store,
    job_id: int,
    *,
    path: str,
    size: int,
    sha256: str,
    calls: Iterable[OutboxCall] = (),
) -> dict[str, Any]:
    """Library entry, job `done` and the calls owed to the pool, in one transaction (issue 4).

    A crash before the commit leaves the job unfinished with its file adoptable (docs/reliability.md
    C4); after it, all three are there — a call owed is never lost and never made for a file that
    is not in the library.
    """
    now = time.time()
    async with store.transaction() as db:
        async with db.execute(
            "SELECT state, pool, kind, item_id, format, song_key, version FROM jobs WHERE id = ?",
            (job_id,),
        ) as cur:
            job = await cur.fetchone()
        if job is None:
            raise NotFound(f"no job {job_id}")
        current = JobState(job["state"])
        if JobState.DONE not in JOB_TRANSITIONS[current]:
            raise Conflict(f"job {job_id} is {current}; it cannot become done")
        # The entry knows its song from the start (rules' "already in the library?" looks it up
        # by song key); a job without one (a redownload) takes the mirrored track's.
        song: tuple[str | None, str | None] = (job["song_key"], job["version"])
        if song[0] is None and job["kind"] == "track" and job["item_id"]:
            async with db.execute(_TRACK_SONG_SQL, (job["pool"], job["item_id"])) as cur:
                track = await cur.fetchone()
            if track is not None:
                song = _track_song(track)
        async with db.execute(
            "SELECT id FROM library WHERE path = ? AND state = ?", (path, LibraryState.DOWNLOADED)
        ) as cur:
            existing = await cur.fetchone()
        if existing is not None:
            # The same file adopted again (an identical earlier download): one entry per path.
            await db.execute(
                "UPDATE library SET size = ?, sha256 = ?, job_id = ?, updated = ? WHERE id = ?",
                (size, sha256, job_id, now, existing[0]),
            )
        else:
            await db.execute(
                "INSERT INTO library (pool, kind, item_id, format, path, size, sha256, state, "
                "job_id, created, updated, song_key, version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job["pool"],
                    job["kind"],
                    job["item_id"] or "",
                    job["format"],
                    path,
                    size,
                    sha256,
                    LibraryState.DOWNLOADED,
                    job_id,
                    now,
                    now,
                    song[0],
                    song[1],
                ),
            )
        await db.execute(
            "UPDATE jobs SET state = ?, path = ?, final_sha256 = ?, error = NULL, "
            "error_code = NULL, not_before = NULL, bytes_done = ?, bytes_total = ?, updated = ? "
            "WHERE id = ?",
            (JobState.DONE, path, sha256, size, size, now, job_id),
        )
        await enqueue_in(db, calls, job_id)
        async with db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
    return job_dict(row)


async def recent_downloads(store: Store, since: float) -> list[dict[str, Any]]:
    """Entries recorded since `since` whose job is still done (docs/reliability.md C4's window)."""
    rows = await store.fetchall(
        "SELECT l.id, l.job_id, l.path, l.size, l.sha256 FROM library l "
        "JOIN jobs j ON j.id = l.job_id "
        "WHERE l.state = ? AND l.updated >= ? AND j.state = 'done' ORDER BY l.id",
        (LibraryState.DOWNLOADED, since),
    )
    return [dict(r) for r in rows]


async def mark_lost_and_requeue(store: Store, entry_id: int, job_id: int, reason: str) -> None:
    """The file of a done job is gone: the entry becomes `lost` and the job is queued again."""
    now = time.time()
    async with store.transaction() as db:
        await db.execute(
            "UPDATE library SET state = ?, reason = ?, updated = ? WHERE id = ?",
            (LibraryState.LOST, reason, now, entry_id),
        )
        await db.execute(
            "UPDATE jobs SET state = ?, path = NULL, final_sha256 = NULL, error = ?, "
            "error_code = 'lost', attempts = 0, not_before = NULL, bytes_done = 0, updated = ? "
            "WHERE id = ? AND state = 'done'",
            (JobState.QUEUED, reason, now, job_id),
        )


async def entries_for_item(
    store: Store, pool: str, item_id: str, kind: str = "track"
) -> list[dict[str, Any]]:
    rows = await store.fetchall(
        "SELECT id, pool, kind, item_id, format, path, size, sha256, state, reason, job_id, "
        "created, updated FROM library WHERE pool = ? AND kind = ? AND item_id = ? ORDER BY id",
        (pool, kind, item_id),
    )
    return [dict(r) for r in rows]


async def set_state(
    store: Store, entry_id: int, state: LibraryState, reason: str | None = None
) -> None:
    await store.execute(
        "UPDATE library SET state = ?, reason = ?, updated = ? WHERE id = ?",
        (state, reason, time.time(), entry_id),
    )


# -- the library as one good copy of each song (docs/interface.md §8) ---------------------------

#: States in which an entry stands for "the library holds this song+version": files present,
#: a file the user deleted (never fetched again on its own) and one being healed.
HELD_STATES = (
    LibraryState.DOWNLOADED,
    LibraryState.ADOPTED,
    LibraryState.DELETED,
    LibraryState.LOST,
)
#: States whose file is on disk and audited.
PRESENT_STATES = (LibraryState.DOWNLOADED, LibraryState.ADOPTED)

_HELD_SQL = ", ".join(f"'{state.value}'" for state in HELD_STATES)
_PRESENT_SQL = ", ".join(f"'{state.value}'" for state in PRESENT_STATES)

ENTRY_COLUMNS = (
    "id, pool, kind, item_id, format, path, size, sha256, state, reason, job_id, created, "
    "updated, song_key, version, length_s, audio_hash, mtime_ns, inode, checked, heal_job"
)


async def library_has(store: Store, song_key: str, version: str) -> str | None:
    """The path of a library entry holding this song+version (downloaded, adopted, deleted by
    the user or being healed), or None. One lookup through the `library_song` index."""
    row = await store.fetchone(
        f"SELECT path FROM library WHERE song_key = ? AND version = ? AND state IN ({_HELD_SQL}) "
        "ORDER BY id LIMIT 1",
        (song_key, version),
    )
    return None if row is None else str(row[0])


async def library_has_many(
    store: Store, songs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """`library_has` for many (song key, version) pairs at once: the pairs held, with a path."""
    wanted = sorted(set(songs))
    held: dict[tuple[str, str], str] = {}
    step = 400  # two parameters each: well under SQLite's limit
    for start in range(0, len(wanted), step):
        batch = wanted[start : start + step]
        values = ", ".join(["(?, ?)"] * len(batch))
        rows = await store.fetchall(
            f"WITH want (k, v) AS (VALUES {values}) SELECT w.k, w.v, "
            f"(SELECT l.path FROM library l WHERE l.song_key = w.k AND l.version = w.v "
            f"AND l.state IN ({_HELD_SQL}) ORDER BY l.id LIMIT 1) FROM want w",
            [value for pair in batch for value in pair],
        )
        held.update({(row[0], row[1]): str(row[2]) for row in rows if row[2] is not None})
    return held


#: What rules count as already in the library (docs/interface.md §7): a file downloaded or
#: adopted, or one the user deleted. A `lost` one is left to heal, which fetches it again.
RULES_HELD_STATES = (LibraryState.DOWNLOADED, LibraryState.ADOPTED, LibraryState.DELETED)


@dataclass(frozen=True, slots=True)
class Held:
    """One library entry of a song: its version, length, state and where it is."""

    ref: str
    version: str
    length_s: float | None
    state: str
    path: str


async def held_songs(store: Store, song_keys: Collection[str]) -> dict[str, list[Held]]:
    """The track entries rules count as held (`RULES_HELD_STATES`) of these songs, by song key,
    oldest first; through the `library_song` index. The length is the mirrored track's (the
    one a new track is compared with), or the entry's own when the mirror no longer has it."""
    keys = sorted(set(song_keys))
    held: dict[str, list[Held]] = {}
    states = ", ".join(f"'{state.value}'" for state in RULES_HELD_STATES)
    step = 500
    for start in range(0, len(keys), step):
        rows = await store.fetchall(
            "SELECT l.song_key, l.pool, l.item_id, l.version, COALESCE(t.length_s, l.length_s), "
            "l.state, l.path FROM json_each(?) w JOIN library l ON l.song_key = w.value "
            "LEFT JOIN tracks t ON t.pool = l.pool AND t.id = l.item_id "
            # The first state list is the index's own: SQLite uses a partial index only then.
            f"WHERE l.state IN ({_HELD_SQL}) AND l.state IN ({states}) AND l.kind = 'track' "
            "ORDER BY l.id",
            (json.dumps(keys[start : start + step]),),
        )
        for row in rows:
            held.setdefault(str(row[0]), []).append(
                Held(
                    ref=f"{row[1]}:{row[2]}",
                    version=str(row[3] or ""),
                    length_s=row[4],
                    state=str(row[5]),
                    path=str(row[6]),
                )
            )
    return held


_TRACK_SONG_SQL = (
    "SELECT song_key, version, artist, title, mix, advisory, video, quality FROM tracks "
    "WHERE pool = ? AND id = ?"
)


def _track_song(row: Any) -> tuple[str, str]:
    """(song key, version) of a `_TRACK_SONG_SQL` row: as stored, or computed now."""
    if row[0] is not None:
        return str(row[0]), str(row[1] or "")
    parsed = track_song(row[2], row[3], row[4], row[5], row[6], row[7])
    return parsed.key, parsed.version.label


async def track_song_of(store: Store, pool: str, item_id: str) -> tuple[str, str] | None:
    """A mirrored track's (song key, version), stored or computed now; None if not mirrored."""
    row = await store.fetchone(_TRACK_SONG_SQL, (pool, item_id))
    return None if row is None else _track_song(row)


async def duplicate_of(store: Store, pool: str, kind: str, item_id: str | None) -> str | None:
    """The library file that already holds this item's song+version, or None (also None for
    an item the mirror does not know: nothing to compare)."""
    if kind != "track" or not item_id:
        return None
    song = await track_song_of(store, pool, item_id)
    if song is None or not song[0].strip("/"):
        return None
    return await library_has(store, *song)


def entry_dict(row: Any) -> dict[str, Any]:
    """A library entry as `GET /v1/library` shows it (docs/interface.md §8)."""
    pool, kind, item_id = row["pool"], row["kind"], row["item_id"]
    if not item_id:
        ref = None
    elif kind == "track":
        ref = f"{pool}:{item_id}"
    else:
        ref = f"{pool}:{kind}:{item_id}"
    return {
        "ref": ref,
        "pool": pool,
        "id": item_id or None,
        "path": row["path"],
        "state": row["state"],
        "song": row["song_key"],
        "version": row["version"],
        "size_bytes": row["size"],
        "audio_hash": row["audio_hash"] or None,  # "": an album's folder
        "added": row["created"],
        "checked": row["checked"],
    }


async def list_entries(
    store: Store,
    *,
    state: str | None = None,
    pool: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """`GET /v1/library`: `{"total", "items"}`, newest first, filtered by state, pool and text
    (in the path or the song key)."""
    where, args = [], []
    if state:
        where.append("state = ?")
        args.append(state)
    if pool:
        where.append("pool = ?")
        args.append(pool)
    if q:
        where.append("(path LIKE ? ESCAPE '\\' OR song_key LIKE ? ESCAPE '\\')")
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [like, like]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = await store.fetchone(f"SELECT COUNT(*) FROM library {clause}", args)
    rows = await store.fetchall(
        f"SELECT {ENTRY_COLUMNS} FROM library {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    return {"total": int(total[0]), "items": [entry_dict(row) for row in rows]}


async def state_counts(store: Store) -> dict[str, int]:
    """How many entries are in each state (for `status` and `poolctl library`), read on the
    searches' connection like the job counts: on the writer's, `GET /v1/status` waited out
    each sync page and a first sync's word batches and index builds (p95 0.3-1.9 s, max
    8-9 s during a 1,000,000-track first sync, issue 13)."""
    rows = await store.reads.fetchall("SELECT state, COUNT(*) FROM library GROUP BY state")
    return {str(row[0]): int(row[1]) for row in rows}


async def duplicate_groups(store: Store) -> list[dict[str, Any]]:
    """`GET /v1/library/duplicates`: groups of present files holding one song+version."""
    rows = await store.fetchall(
        f"SELECT {ENTRY_COLUMNS} FROM library WHERE state IN ({_PRESENT_SQL}) AND "
        "song_key IS NOT NULL AND (song_key, version) IN (SELECT song_key, version FROM library "
        f"WHERE state IN ({_PRESENT_SQL}) AND song_key IS NOT NULL "
        "GROUP BY song_key, version HAVING COUNT(*) > 1) ORDER BY song_key, version, id"
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["song_key"], row["version"]), []).append(entry_dict(row))
    return [
        {"song": song, "version": version, "items": items}
        for (song, version), items in groups.items()
    ]


# -- background pass: song keys and audio checksums not computed yet ----------------------------


async def unkeyed_tracks(store: Store, after_rowid: int, limit: int) -> list[Any]:
    """Mirrored tracks after `after_rowid` whose song key is not stored yet."""
    return await store.fetchall(
        "SELECT rowid, artist, title, mix, advisory, video, quality FROM tracks "
        "WHERE rowid > ? AND song_key IS NULL ORDER BY rowid LIMIT ?",
        (after_rowid, limit),
    )


async def store_track_songs(store: Store, rows: Iterable[tuple[str, str, int]]) -> None:
    """(song key, version, rowid) rows into the mirror (only where still not computed)."""
    await store.executemany(
        "UPDATE tracks SET song_key = ?, version = ? WHERE rowid = ? AND song_key IS NULL", rows
    )


async def entries_missing(store: Store, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Entries without a song key (from before the library knew them) or, for files present,
    without an audio checksum; with what the mirror and the job know of their track."""
    rows = await store.fetchall(
        "SELECT l.id, l.pool, l.item_id, l.path, l.song_key, l.version AS l_version, "
        "l.audio_hash, l.state, l.length_s AS l_length, "
        "t.song_key AS t_key, t.version AS t_version, t.artist, t.title, t.mix, t.advisory, "
        "t.video, t.quality, t.length_s, j.artist AS j_artist, j.title AS j_title "
        "FROM library l LEFT JOIN tracks t ON t.pool = l.pool AND t.id = l.item_id "
        "AND l.kind = 'track' LEFT JOIN jobs j ON j.id = l.job_id "
        f"WHERE l.id > ? AND (l.song_key IS NULL OR (l.audio_hash IS NULL AND l.state IN "
        f"({_PRESENT_SQL}))) ORDER BY l.id LIMIT ?",
        (after_id, limit),
    )
    return [dict(row) for row in rows]


async def fill_entry(
    store: Store,
    entry_id: int,
    *,
    song_key: str,
    version: str,
    length_s: float | None,
    audio_hash: str | None,
    size: int | None,
    mtime_ns: int | None,
    inode: int | None,
) -> None:
    """Store what the background pass computed for an entry (nothing it already has is lost)."""
    await store.execute(
        "UPDATE library SET song_key = ?, version = ?, length_s = COALESCE(length_s, ?), "
        "audio_hash = COALESCE(?, audio_hash), size = COALESCE(?, size), "
        "mtime_ns = COALESCE(?, mtime_ns), inode = COALESCE(?, inode), "
        "checked = CASE WHEN ? IS NULL THEN checked ELSE ? END WHERE id = ?",
        (
            song_key,
            version,
            length_s,
            audio_hash,
            size,
            mtime_ns,
            inode,
            audio_hash,
            time.time(),
            entry_id,
        ),
    )


# -- audit and heal -----------------------------------------------------------------------------


async def present_entries(store: Store, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Entries whose file should be on disk, by id (the audit walks them in pages)."""
    rows = await store.fetchall(
        f"SELECT {ENTRY_COLUMNS} FROM library WHERE id > ? AND state IN ({_PRESENT_SQL}) "
        "ORDER BY id LIMIT ?",
        (after_id, limit),
    )
    return [dict(row) for row in rows]


async def record_check(
    store: Store,
    entry_id: int,
    *,
    state: LibraryState | None = None,
    reason: str | None = None,
    size: int | None = None,
    mtime_ns: int | None = None,
    inode: int | None = None,
    audio_hash: str | None = None,
) -> None:
    """An audit's verdict on one entry: its new state (None: unchanged) and what it saw."""
    now = time.time()
    await store.execute(
        "UPDATE library SET state = COALESCE(?, state), reason = CASE WHEN ? IS NULL THEN "
        "reason ELSE ? END, size = COALESCE(?, size), mtime_ns = COALESCE(?, mtime_ns), "
        "inode = COALESCE(?, inode), audio_hash = COALESCE(?, audio_hash), checked = ?, "
        "updated = CASE WHEN ? IS NULL THEN updated ELSE ? END WHERE id = ?",
        (state, state, reason, size, mtime_ns, inode, audio_hash, now, state, now, entry_id),
    )


async def lost_entries(store: Store) -> list[dict[str, Any]]:
    """Entries marked `lost`, oldest first."""
    rows = await store.fetchall(
        f"SELECT {ENTRY_COLUMNS} FROM library WHERE state = ? ORDER BY id", (LibraryState.LOST,)
    )
    return [dict(row) for row in rows]


async def set_heal_job(store: Store, entry_id: int, job_id: int) -> None:
    await store.execute("UPDATE library SET heal_job = ? WHERE id = ?", (job_id, entry_id))


async def entry_healing(store: Store, job_id: int) -> dict[str, Any] | None:
    """The lost entry a finished job was fetched to heal, if any."""
    row = await store.fetchone(
        f"SELECT {ENTRY_COLUMNS} FROM library WHERE heal_job = ? AND state = ?",
        (job_id, LibraryState.LOST),
    )
    return None if row is None else dict(row)


async def finish_heal(store: Store, lost_id: int, job_id: int, path: str) -> None:
    """The healed file is back at `path`: the job's new entry takes the lost one's place (its
    path and its song), and the lost entry goes, in one transaction."""
    now = time.time()
    async with store.transaction() as db:
        async with db.execute(
            "SELECT song_key, version, length_s, created FROM library WHERE id = ?", (lost_id,)
        ) as cur:
            lost = await cur.fetchone()
        await db.execute("DELETE FROM library WHERE id = ?", (lost_id,))
        if lost is not None:
            await db.execute(
                "UPDATE library SET path = ?, song_key = COALESCE(?, song_key), "
                "version = COALESCE(?, version), length_s = COALESCE(length_s, ?), "
                "audio_hash = NULL, created = ?, updated = ?, reason = 'healed' "
                "WHERE job_id = ? AND state = ?",
                (path, lost[0], lost[1], lost[2], lost[3], now, job_id, LibraryState.DOWNLOADED),
            )
        await db.execute("UPDATE jobs SET path = ?, updated = ? WHERE id = ?", (path, now, job_id))


# -- adopting files the user already has --------------------------------------------------------


async def cached_files(store: Store, paths: Iterable[str]) -> dict[str, Any]:
    """What earlier adopt scans read of these files, by path."""
    found: dict[str, Any] = {}
    wanted = list(paths)
    step = 500
    for start in range(0, len(wanted), step):
        batch = wanted[start : start + step]
        rows = await store.fetchall(
            "SELECT path, size, mtime_ns, inode, song_key, version, name_key, name_version, "
            "length_s, problem "
            f"FROM adopt_files WHERE path IN ({', '.join('?' * len(batch))})",
            batch,
        )
        found.update({row[0]: row for row in rows})
    return found


async def remember_files(store: Store, rows: Iterable[Sequence[Any]]) -> None:
    """(path, size, mtime_ns, inode, song_key, version, name_key, name_version, length_s,
    problem) of files read."""
    now = time.time()
    await store.executemany(
        "INSERT OR REPLACE INTO adopt_files (path, size, mtime_ns, inode, song_key, version, "
        "name_key, name_version, length_s, problem, scanned) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row, now) for row in rows],
    )


async def tracks_for_songs(
    store: Store, songs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[tuple[str, str, str, float | None]]]:
    """Mirrored, not removed tracks by (song key, version): (pool, id, kind, length_s) each."""
    found: dict[tuple[str, str], list[tuple[str, str, str, float | None]]] = {}
    wanted = sorted(set(songs))
    step = 400
    for start in range(0, len(wanted), step):
        batch = wanted[start : start + step]
        values = ", ".join(["(?, ?)"] * len(batch))
        rows = await store.fetchall(
            f"WITH want (k, v) AS (VALUES {values}) SELECT t.song_key, t.version, t.pool, t.id, "
            "t.length_s FROM want w CROSS JOIN tracks t ON t.song_key = w.k AND t.version = w.v "
            "WHERE t.removed = 0",
            [value for pair in batch for value in pair],
        )
        for row in rows:
            found.setdefault((row[0], row[1]), []).append((row[2], row[3], "track", row[4]))
    return found


async def known_paths(store: Store, paths: Iterable[str]) -> set[str]:
    """Which of these paths a library entry (in any state but failed) already names."""
    wanted = list(paths)
    known: set[str] = set()
    step = 500
    for start in range(0, len(wanted), step):
        batch = wanted[start : start + step]
        rows = await store.fetchall(
            f"SELECT path FROM library WHERE path IN ({', '.join('?' * len(batch))}) "
            "AND state != 'failed'",
            batch,
        )
        known.update(str(row[0]) for row in rows)
    return known


async def record_adopted(store: Store, rows: Iterable[dict[str, Any]]) -> int:
    """Adopted files as library entries (one per path); how many were new."""
    now = time.time()
    values = [
        (
            row["pool"],
            row["kind"],
            row["item_id"],
            row["path"],
            row["size"],
            LibraryState.ADOPTED,
            row["song_key"],
            row["version"],
            row["length_s"],
            row["mtime_ns"],
            row["inode"],
            now,
            now,
        )
        for row in rows
    ]
    async with store.transaction() as db:
        before = db.total_changes
        await db.executemany(
            "INSERT OR IGNORE INTO library (pool, kind, item_id, format, path, size, sha256, "
            "state, song_key, version, length_s, mtime_ns, inode, created, updated) "
            "VALUES (?, ?, ?, '', ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        added = db.total_changes - before
    return added
