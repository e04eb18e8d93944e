"""Calls owed to pools (Promo Only's download/success), kept until acknowledged (docs/interface.md
§6)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pooldaemon.models import OutboxCall
from pooldaemon.store.db import Store


@dataclass(frozen=True)
class OutboxEntry:
    """One owed call as stored."""

    id: int
    call: OutboxCall
    job_id: int | None
    attempts: int
    last_error: str | None


async def enqueue_in(db: Any, calls: Iterable[OutboxCall], job_id: int | None) -> None:
    """Insert calls using an open transaction (so they commit with the job's "done")."""
    now = time.time()
    for call in calls:
        await db.execute(
            "INSERT INTO outbox (pool, action, payload, job_id, created) VALUES (?, ?, ?, ?, ?)",
            (call.pool, call.action, json.dumps(call.payload), job_id, now),
        )


async def enqueue(store: Store, calls: Iterable[OutboxCall], job_id: int | None = None) -> None:
    async with store.transaction() as db:
        await enqueue_in(db, calls, job_id)


async def pending(store: Store, now: float, limit: int = 50) -> list[OutboxEntry]:
    """Unacknowledged calls whose back-off has passed, oldest first."""
    rows = await store.fetchall(
        "SELECT id, pool, action, payload, job_id, attempts, last_error FROM outbox "
        "WHERE done_at IS NULL AND (not_before IS NULL OR not_before <= ?) ORDER BY id LIMIT ?",
        (now, limit),
    )
    return [
        OutboxEntry(
            id=r["id"],
            call=OutboxCall(r["pool"], r["action"], json.loads(r["payload"])),
            job_id=r["job_id"],
            attempts=r["attempts"],
            last_error=r["last_error"],
        )
        for r in rows
    ]


async def next_due(store: Store) -> float | None:
    """When the next deferred call falls due (None: nothing owed, or due now)."""
    row = await store.fetchone(
        "SELECT MIN(COALESCE(not_before, 0)) FROM outbox WHERE done_at IS NULL"
    )
    return None if row is None else row[0]


async def ack(store: Store, entry_id: int, *, error: str | None = None) -> None:
    """The pool acknowledged the call (or, with `error`, it was given up for good)."""
    await store.execute(
        "UPDATE outbox SET done_at = ?, last_error = COALESCE(?, last_error) WHERE id = ?",
        (time.time(), error, entry_id),
    )


async def defer(store: Store, entry_id: int, error: str, not_before: float) -> None:
    """A delivery failed: count it and try again after `not_before`."""
    await store.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, not_before = ? WHERE id = ?",
        (error, not_before, entry_id),
    )


async def owed(store: Store, pool: str | None = None) -> list[dict[str, Any]]:
    """Every unacknowledged call (for status and tests)."""
    sql = "SELECT id, pool, action, payload, job_id, attempts, last_error FROM outbox "
    sql += "WHERE done_at IS NULL" + (" AND pool = ?" if pool else "") + " ORDER BY id"
    rows = await store.fetchall(sql, (pool,) if pool else ())
    return [dict(r) for r in rows]
