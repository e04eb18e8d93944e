"""Resume state of downloads: each job's parts and their chunk checkpoints.

Resume state is keyed by the job (one pool item and format) and the part key, and is valid only
for the part's expected size — never by URL, since URLs carry tokens that expire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


async def commit_progress(
    store: Store, claim: Callable[[], list[tuple[int, str, int, int]]]
) -> list[tuple[int, str, int, int]]:
    """Record many chunks' fsynced prefixes in one transaction (docs/reliability.md C7).

    `claim` runs once the write lock is held and returns (job, part, chunk, filled) rows; taking
    them only then lets a caller drop what changed while it waited for the lock.
    """
    async with store.transaction() as db:
        rows = claim()
        if rows:
            await db.executemany(
                "UPDATE chunks SET filled = ? WHERE job_id = ? AND part_key = ? AND idx = ? "
                "AND done = 0 AND filled < ?",
                [(filled, job, key, idx, filled) for job, key, idx, filled in rows],
            )
            for job_id in sorted({row[0] for row in rows}):
                await _sum_progress(db, job_id)
    return rows


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
