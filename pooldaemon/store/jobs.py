"""Download jobs: creation with de-duplication, legal state changes, and reads for the API."""

from __future__ import annotations

import json
import time
from typing import Any

from pooldaemon.errors import Conflict, NotFound
from pooldaemon.models import JOB_TRANSITIONS, JobState, Request
from pooldaemon.store.db import Store

#: States in which a job still stands for "this item will be / has been downloaded".
LIVE_STATES = (
    JobState.QUEUED,
    JobState.RESOLVING,
    JobState.DOWNLOADING,
    JobState.VERIFYING,
    JobState.PAUSED,
    JobState.DONE,
)

JOB_COLUMNS = (
    "id, pool, kind, item_id, format, ref, origin, title, artist, state, attempts, error, "
    "error_code, bytes_done, bytes_total, path, not_before, created, updated"
)


async def find_live_job(store: Store, req: Request, fmt: str = "") -> dict[str, Any] | None:
    """The job already standing for this item, if any (CONTRACT §3: never download twice)."""
    row = await store.fetchone(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE pool = ? AND kind = ? AND item_id IS ? "
        f"AND format = ? AND state IN ({','.join('?' * len(LIVE_STATES))}) "
        "ORDER BY id DESC LIMIT 1",
        (req.pool, req.kind, req.item_id, fmt, *LIVE_STATES),
    )
    return job_dict(row) if row else None


async def create_job(
    store: Store,
    req: Request,
    *,
    origin: str,
    fmt: str = "",
    title: str | None = None,
    artist: str | None = None,
    key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Queue a job, or return the live one for the same item. Returns (job, created).

    A redownload always creates a new job (CONTRACT §3). An idempotency `key` is recorded in
    the same transaction as the job, so a replay of the same request finds it and creates none.
    """
    now = time.time()
    async with store.transaction() as db:
        if key is not None:
            async with db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = "
                "(SELECT job_id FROM submit_keys WHERE key = ?)",
                (key,),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return job_dict(row), False
        if not req.redownload:
            async with db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE pool = ? AND kind = ? AND item_id IS ? "
                f"AND format = ? AND state IN ({','.join('?' * len(LIVE_STATES))}) "
                "ORDER BY id DESC LIMIT 1",
                (req.pool, req.kind, req.item_id, fmt, *LIVE_STATES),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                if key is not None:
                    await _remember_key(db, key, row["id"])
                return job_dict(row), False
        if (title is None or artist is None) and req.kind == "track" and req.item_id:
            # A request names only the item (`poolctl get`, the drop folder, a pool's queue
            # handed over): the job shows what the mirror knows of it from the start, not only
            # if the pool's download answer happens to carry it (Harvest's does not).
            async with db.execute(
                "SELECT title, artist FROM tracks WHERE pool = ? AND id = ?",
                (req.pool, req.item_id),
            ) as cur:
                known = await cur.fetchone()
            if known is not None:
                title, artist = title or known[0], artist or known[1]
        cur = await db.execute(
            "INSERT INTO jobs (pool, kind, item_id, format, ref, origin, title, artist, state, "
            "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                req.pool,
                req.kind,
                req.item_id,
                fmt,
                req.ref,
                "redownload" if req.redownload else origin,
                title,
                artist,
                JobState.QUEUED,
                now,
                now,
            ),
        )
        job_id = cur.lastrowid
        if key is not None:
            await _remember_key(db, key, job_id)
        async with db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)) as cur2:
            row = await cur2.fetchone()
    return job_dict(row), True


async def _remember_key(db: Any, key: str, job_id: int | None) -> None:
    await db.execute(
        "INSERT OR IGNORE INTO submit_keys (key, job_id, created) VALUES (?, ?, ?)",
        (key, job_id, time.time()),
    )


async def job_for_key(store: Store, key: str) -> dict[str, Any] | None:
    """The job an earlier submit with this idempotency key made or pointed at."""
    row = await store.fetchone(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM submit_keys WHERE key = ?)",
        (key,),
    )
    return job_dict(row) if row else None


async def get_job(store: Store, job_id: int) -> dict[str, Any]:
    row = await store.fetchone(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise NotFound(f"no job {job_id}")
    return job_dict(row)


async def list_jobs(
    store: Store, *, state: str | None = None, pool: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    where, params = [], []
    if state:
        where.append("state = ?")
        params.append(state)
    if pool:
        where.append("pool = ?")
        params.append(pool)
    sql = f"SELECT {JOB_COLUMNS} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    rows = await store.fetchall(sql, (*params, limit))
    return [job_dict(r) for r in rows]


async def job_counts(store: Store) -> dict[str, int]:
    rows = await store.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
    counts = {state.value: 0 for state in JobState}
    counts.update({r[0]: r[1] for r in rows})
    return counts


async def transition(
    store: Store,
    job_id: int,
    to: JobState,
    *,
    error: str | None = None,
    error_code: str | None = None,
    expect: frozenset[JobState] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Move a job to `to` if the transition is legal; other columns may change with it."""
    async with store.transaction() as db:
        async with db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no job {job_id}")
        current = JobState(row[0])
        if expect is not None and current not in expect:
            raise Conflict(f"job {job_id} is {current}, not {' or '.join(sorted(expect))}")
        if current != to and to not in JOB_TRANSITIONS[current]:
            raise Conflict(f"job {job_id} is {current}; it cannot become {to}")
        sets = {"state": to.value, "updated": time.time(), **fields}
        if error is not None or to in (JobState.QUEUED, JobState.DONE):
            sets["error"] = error
            sets["error_code"] = error_code
        assignments = ", ".join(f"{col} = ?" for col in sets)
        await db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*sets.values(), job_id))
        async with db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)) as cur:
            updated = await cur.fetchone()
    return job_dict(updated)


async def save_plan(store: Store, job_id: int, plan: dict[str, Any]) -> None:
    await store.execute(
        "UPDATE jobs SET plan = ?, updated = ? WHERE id = ?",
        (json.dumps(plan), time.time(), job_id),
    )


async def load_plan(store: Store, job_id: int) -> dict[str, Any] | None:
    row = await store.fetchone("SELECT plan FROM jobs WHERE id = ?", (job_id,))
    return json.loads(row[0]) if row and row[0] else None


def job_dict(row: Any) -> dict[str, Any]:
    """A job as the socket API shows it (CONTRACT §4), plus a few extra keys."""
    return {
        "id": row["id"],
        "ref": row["ref"],
        "pool": row["pool"],
        "kind": row["kind"],
        "title": row["title"],
        "artist": row["artist"],
        "state": row["state"],
        "bytes_done": row["bytes_done"],
        "bytes_total": row["bytes_total"],
        "rate_bps": 0,
        "attempts": row["attempts"],
        "error": row["error"],
        "error_code": row["error_code"],
        "path": row["path"],
        "origin": row["origin"],
        "created": row["created"],
        "updated": row["updated"],
    }
