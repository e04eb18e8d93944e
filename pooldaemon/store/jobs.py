"""Download jobs' SQL: creation with de-duplication, legal state changes, scheduling reads,
non-state updates, and the stored plan."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from typing import Any

from pooldaemon.errors import Conflict, NotFound
from pooldaemon.models import (
    JOB_TRANSITIONS,
    DownloadPlan,
    Job,
    JobState,
    PlanPart,
    QueueItem,
    Request,
    Source,
)
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

#: The jobs table's columns a `Job` holds, in `Job`'s order: `job_from_row` reads by position.
_COLUMN_NAMES = tuple(f.name for f in fields(Job))
JOB_COLUMNS = ", ".join(_COLUMN_NAMES)
_STATE_AT, _WIDTH = _COLUMN_NAMES.index("state"), len(_COLUMN_NAMES)


async def find_live_job(store: Store, req: Request, fmt: str = "") -> dict[str, Any] | None:
    """The job already standing for this item, if any (docs/interface.md §3: never twice)."""
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
    song: tuple[str, str] | None = None,
    skipped: str | None = None,
    automatic: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Queue a job, or return the live one for the same item. Returns (job, created).

    A redownload always creates a new job (docs/interface.md §3). An idempotency `key` is
    recorded in the same transaction as the job, so a replay of the request creates none.
    `song` is the item's (song key, version), kept for the library's duplicate check;
    `skipped` creates the job `skipped` with that reason (docs/interface.md §8).
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
            "created, updated, song_key, version, error, error_code, automatic) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                req.pool,
                req.kind,
                req.item_id,
                fmt,
                req.ref,
                "redownload" if req.redownload else origin,
                title,
                artist,
                JobState.QUEUED if skipped is None else JobState.SKIPPED,
                now,
                now,
                song[0] if song else None,
                song[1] if song else None,
                skipped,
                None if skipped is None else "duplicate",
                int(automatic),
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


async def load_job(store: Store, job_id: int) -> Job:
    """One job, typed; NotFound when there is none."""
    row = await store.fetchone(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise NotFound(f"no job {job_id}")
    return job_from_row(row)


async def get_job(store: Store, job_id: int) -> dict[str, Any]:
    """One job as the socket API shows it."""
    return (await load_job(store, job_id)).to_api()


def jobs_filter(state: str | None, pool: str | None) -> tuple[str, list[str]]:
    """The WHERE clause ("" when none) and its parameters for a job list by state and pool."""
    where, params = [], []
    if state:
        where.append("state = ?")
        params.append(state)
    if pool:
        where.append("pool = ?")
        params.append(pool)
    return (" WHERE " + " AND ".join(where)) if where else "", params


async def list_jobs(
    store: Store, *, state: str | None = None, pool: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    clause, params = jobs_filter(state, pool)
    rows = await store.fetchall(
        f"SELECT {JOB_COLUMNS} FROM jobs{clause} ORDER BY id DESC LIMIT ?", (*params, limit)
    )
    return [job_dict(r) for r in rows]


async def job_counts(store: Store) -> dict[str, int]:
    """Jobs per state, read on the searches' connection (`Store.reads`): `GET /v1/status` and
    the systemd status line never wait behind a catalog page or index build (issue 13)."""
    rows = await store.reads.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
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


def job_from_row(row: Any) -> Job:
    """A row that starts with the columns of `JOB_COLUMNS`, in their order, as a `Job`.

    Read by position: by name, a row of 20 columns cost ~12 µs, a third of listing 1,000 queued
    jobs through the socket (issue 13)."""
    values: list[Any] = list(row)[:_WIDTH]
    values[_STATE_AT] = JobState(values[_STATE_AT])
    return Job(*values)


def job_dict(row: Any) -> dict[str, Any]:
    """A job as the socket API shows it (docs/interface.md §4), plus a few extra keys."""
    return job_from_row(row).to_api()


# -- jobs: scheduling reads and non-state updates ----------------------------------------------


async def due_jobs(store: Store, now: float, limit: int) -> list[int]:
    """Queued jobs whose back-off has passed, oldest first."""
    rows = await store.fetchall(
        "SELECT id FROM jobs WHERE state = 'queued' AND (not_before IS NULL OR not_before <= ?) "
        "ORDER BY id LIMIT ?",
        (now, limit),
    )
    return [r[0] for r in rows]


async def next_due(store: Store) -> float | None:
    """The earliest back-off end among queued jobs (None: none is waiting on one)."""
    row = await store.fetchone(
        "SELECT MIN(not_before) FROM jobs WHERE state = 'queued' AND not_before IS NOT NULL"
    )
    return row[0] if row else None


async def jobs_in(store: Store, states: tuple[str, ...]) -> list[int]:
    rows = await store.fetchall(
        f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(states))}) ORDER BY id",
        states,
    )
    return [r[0] for r in rows]


async def paused_for(store: Store, error_code: str) -> list[int]:
    rows = await store.fetchall(
        "SELECT id FROM jobs WHERE state = 'paused' AND error_code = ? ORDER BY id",
        (error_code,),
    )
    return [r[0] for r in rows]


async def update_job(store: Store, job_id: int, **fields: Any) -> None:
    """Change columns of a job without changing its state."""
    if not fields:
        return
    fields["updated"] = time.time()
    assignments = ", ".join(f"{col} = ?" for col in fields)
    await store.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))


async def queue_entry(store: Store, pool: str, kind: str, item_id: str) -> QueueItem | None:
    """The remote-queue entry we hold for an item (its per-track token, when the pool has one)."""
    row = await store.fetchone(
        "SELECT pool, item_id, kind, queue_id, queued_at, extra FROM remote_queue "
        "WHERE pool = ? AND item_id = ? AND kind = ?",
        (pool, item_id, kind),
    )
    if row is None:
        return None
    try:
        extra = json.loads(row["extra"] or "{}")
    except ValueError:
        extra = {}
    return QueueItem(
        pool=row["pool"],
        item_id=row["item_id"],
        kind=row["kind"],
        queue_id=row["queue_id"],
        queued_at=row["queued_at"],
        extra=extra if isinstance(extra, dict) else {},
    )


# -- plans as stored JSON (tokens inside: the database is mode 0600) ----------------------------


def plan_to_dict(plan: DownloadPlan) -> dict[str, Any]:
    return asdict(plan)


def plan_from_dict(data: dict[str, Any]) -> DownloadPlan:
    parts = [
        PlanPart(
            key=str(p["key"]),
            sources=[Source(**s) for s in p.get("sources", [])],
            expected_size=p.get("expected_size"),
            extension=p.get("extension"),
            expires_at=p.get("expires_at"),
            sha256=p.get("sha256"),
            md5=p.get("md5"),
        )
        for p in data.get("parts", [])
    ]
    return DownloadPlan(
        pool=data["pool"],
        item_id=data["item_id"],
        kind=data.get("kind", "track"),
        format=data.get("format", ""),
        parts=parts,
        meta=dict(data.get("meta") or {}),
        archive=bool(data.get("archive", False)),
        name=data.get("name"),
        context=dict(data.get("context") or {}),
        sent_by_email=bool(data.get("sent_by_email", False)),
    )


async def live_job_for_song(
    store: Store, song_key: str, version: str, *, not_item: tuple[str, str]
) -> tuple[dict[str, Any], bool] | None:
    """A job (queued … done) standing for this song+version, other than for `not_item`, and
    whether it was fetched automatically."""
    row = await store.fetchone(
        f"SELECT {JOB_COLUMNS}, automatic FROM jobs WHERE song_key = ? AND version = ? "
        f"AND state IN ({','.join('?' * len(LIVE_STATES))}) AND NOT (pool = ? AND item_id IS ?) "
        "ORDER BY id LIMIT 1",
        (song_key, version, *LIVE_STATES, *not_item),
    )
    return (job_dict(row), bool(row["automatic"])) if row else None
