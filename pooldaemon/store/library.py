"""The library: what finished downloads became (downloaded / deleted / lost / failed)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pooldaemon.errors import Conflict, NotFound
from pooldaemon.models import JOB_TRANSITIONS, JobState, LibraryState, OutboxCall
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

    A crash before the commit leaves the job unfinished with its file adoptable (RELIABILITY C4);
    after it, all three are there — a call owed is never lost and never made for a file that
    is not in the library.
    """
    now = time.time()
    async with store.transaction() as db:
        async with db.execute(
            "SELECT state, pool, kind, item_id, format FROM jobs WHERE id = ?", (job_id,)
        ) as cur:
            job = await cur.fetchone()
        if job is None:
            raise NotFound(f"no job {job_id}")
        current = JobState(job["state"])
        if JobState.DONE not in JOB_TRANSITIONS[current]:
            raise Conflict(f"job {job_id} is {current}; it cannot become done")
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
                "job_id, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    """Entries recorded since `since` whose job is still done (RELIABILITY C4's window)."""
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
