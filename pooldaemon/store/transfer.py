"""The downloader's SQL: parts and chunk checkpoints, server health, scheduling reads, plans.

Resume state is keyed by the job (one pool item and format) and the part key, and is valid only
for the part's expected size — never by URL, since URLs carry tokens that expire (issue 4).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from pooldaemon.models import DownloadPlan, PlanPart, QueueItem, Source
from pooldaemon.store.db import Store


@dataclass
class PartState:
    """One part's resume record (table job_parts)."""

    job_id: int
    part_key: str
    expected_size: int | None
    etag: str | None
    last_modified: str | None
    range_ok: bool | None
    work_path: str | None
    chunk_size: int | None
    done: bool
    sha256: str | None
    identity_server: str | None


@dataclass
class ChunkState:
    """One chunk's checkpoint: `filled` bytes from `start` are fsynced; `done` when all are."""

    idx: int
    start: int
    end: int  # inclusive, as in a Range header
    done: bool
    filled: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1


_PART_COLUMNS = (
    "job_id, part_key, expected_size, etag, last_modified, range_ok, work_path, chunk_size, "
    "done, sha256, identity_server"
)


def _part(row: Any) -> PartState:
    return PartState(
        job_id=row["job_id"],
        part_key=row["part_key"],
        expected_size=row["expected_size"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        range_ok=None if row["range_ok"] is None else bool(row["range_ok"]),
        work_path=row["work_path"],
        chunk_size=row["chunk_size"],
        done=bool(row["done"]),
        sha256=row["sha256"],
        identity_server=row["identity_server"],
    )


async def load_parts(store: Store, job_id: int) -> dict[str, PartState]:
    rows = await store.fetchall(
        f"SELECT {_PART_COLUMNS} FROM job_parts WHERE job_id = ?", (job_id,)
    )
    return {r["part_key"]: _part(r) for r in rows}


async def load_chunks(store: Store, job_id: int, part_key: str) -> list[ChunkState]:
    rows = await store.fetchall(
        "SELECT idx, start, end, done, filled FROM chunks WHERE job_id = ? AND part_key = ? "
        "ORDER BY idx",
        (job_id, part_key),
    )
    return [ChunkState(r["idx"], r["start"], r["end"], bool(r["done"]), r["filled"]) for r in rows]


async def init_part(store: Store, part: PartState, chunks: list[ChunkState]) -> None:
    """Replace the part's record and chunk table in one transaction (a fresh partial)."""
    async with store.transaction() as db:
        await db.execute(
            "DELETE FROM chunks WHERE job_id = ? AND part_key = ?", (part.job_id, part.part_key)
        )
        await db.execute(
            "DELETE FROM job_parts WHERE job_id = ? AND part_key = ?",
            (part.job_id, part.part_key),
        )
        await db.execute(
            f"INSERT INTO job_parts ({_PART_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                part.job_id,
                part.part_key,
                part.expected_size,
                part.etag,
                part.last_modified,
                None if part.range_ok is None else int(part.range_ok),
                part.work_path,
                part.chunk_size,
                int(part.done),
                part.sha256,
                part.identity_server,
            ),
        )
        await db.executemany(
            "INSERT INTO chunks (job_id, part_key, idx, start, end, done, filled) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (part.job_id, part.part_key, c.idx, c.start, c.end, int(c.done), c.filled)
                for c in chunks
            ],
        )
        await _sum_progress(db, part.job_id)


async def update_identity(
    store: Store,
    job_id: int,
    part_key: str,
    *,
    etag: str | None,
    last_modified: str | None,
    server: str | None,
) -> None:
    await store.execute(
        "UPDATE job_parts SET etag = ?, last_modified = ?, identity_server = ? "
        "WHERE job_id = ? AND part_key = ?",
        (etag, last_modified, server, job_id, part_key),
    )


async def commit_chunk(
    store: Store, job_id: int, part_key: str, idx: int, filled: int, done: bool
) -> None:
    """Record fsynced progress of one chunk (call only after the data is durable, C2)."""
    async with store.transaction() as db:
        await db.execute(
            "UPDATE chunks SET filled = ?, done = ? WHERE job_id = ? AND part_key = ? AND idx = ?",
            (filled, int(done), job_id, part_key, idx),
        )
        await _sum_progress(db, job_id)


async def _sum_progress(db: Any, job_id: int) -> None:
    await db.execute(
        "UPDATE jobs SET bytes_done = (SELECT COALESCE(SUM(filled), 0) FROM chunks "
        "WHERE job_id = ?) WHERE id = ?",
        (job_id, job_id),
    )


async def mark_part_done(store: Store, job_id: int, part_key: str, sha256: str | None) -> None:
    await store.execute(
        "UPDATE job_parts SET done = 1, sha256 = ? WHERE job_id = ? AND part_key = ?",
        (sha256, job_id, part_key),
    )


async def reset_parts(store: Store, job_id: int, part_keys: list[str] | None = None) -> None:
    """Forget resume state (all parts, or some): the next attempt starts them afresh."""
    async with store.transaction() as db:
        if part_keys is None:
            await db.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))
            await db.execute("DELETE FROM job_parts WHERE job_id = ?", (job_id,))
        else:
            for key in part_keys:
                await db.execute(
                    "DELETE FROM chunks WHERE job_id = ? AND part_key = ?", (job_id, key)
                )
                await db.execute(
                    "DELETE FROM job_parts WHERE job_id = ? AND part_key = ?", (job_id, key)
                )
        await _sum_progress(db, job_id)


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


async def job_extra(store: Store, job_id: int) -> dict[str, Any]:
    """Columns the API's job dict leaves out: the request's format, reason-free origin, intent."""
    row = await store.fetchone(
        "SELECT format, origin, final_sha256, path, item_id, kind, pool FROM jobs WHERE id = ?",
        (job_id,),
    )
    return dict(row) if row else {}


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


# -- server health -----------------------------------------------------------------------------


@dataclass
class ServerHealth:
    """How a download server has behaved lately (table server_health)."""

    failures: int = 0
    cooldown_until: float | None = None
    no_range: bool = False
    last_error: str | None = None


async def load_health(store: Store, pool: str) -> dict[str, ServerHealth]:
    rows = await store.fetchall(
        "SELECT server, failures, cooldown_until, no_range, last_error FROM server_health "
        "WHERE pool = ?",
        (pool,),
    )
    return {
        r["server"]: ServerHealth(
            r["failures"], r["cooldown_until"], bool(r["no_range"]), r["last_error"]
        )
        for r in rows
    }


async def save_health(store: Store, pool: str, server: str, health: ServerHealth) -> None:
    await store.execute(
        "INSERT INTO server_health (pool, server, failures, cooldown_until, no_range, last_error, "
        "updated) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pool, server) DO UPDATE SET "
        "failures = excluded.failures, cooldown_until = excluded.cooldown_until, "
        "no_range = excluded.no_range, last_error = excluded.last_error, "
        "updated = excluded.updated",
        (
            pool,
            server,
            health.failures,
            health.cooldown_until,
            int(health.no_range),
            health.last_error,
            time.time(),
        ),
    )


# -- plans as stored JSON (tokens inside: the database is mode 0600) ---------------------------


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
