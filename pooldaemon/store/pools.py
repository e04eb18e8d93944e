"""Per-pool status rows: last syncs, last error, adapter state kept across restarts."""

from __future__ import annotations

import json
import time
from typing import Any

from pooldaemon.store.db import Store


async def ensure_pools(store: Store, pools: dict[str, str]) -> None:
    """Make sure every configured pool (name → type) has a row."""
    async with store.transaction() as db:
        for name, kind in pools.items():
            await db.execute(
                "INSERT INTO pools (name, type) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET type = excluded.type",
                (name, kind),
            )


async def pool_rows(store: Store) -> dict[str, dict[str, Any]]:
    """Every pool's row, read on the searches' connection (`Store.reads`), which sees the last
    commit at once: behind the writer, `GET /v1/status` waited out a 1,000-track sync page
    (p50 166 ms during a full sync of 174,420) or a whole index build at its end (issue 13)."""
    rows = await store.reads.fetchall(
        "SELECT name, type, last_catalog_sync, last_queue_sync, last_error, last_error_at, "
        "failing_since, blocked_reason, catalog_cursor FROM pools"
    )
    return {r["name"]: dict(r) for r in rows}


async def record_success(store: Store, pool: str, what: str, *, cursor: str | None = None) -> None:
    """A catalog or queue pass finished: clear the error, remember when."""
    column = "last_catalog_sync" if what == "catalog" else "last_queue_sync"
    sql = f"UPDATE pools SET {column} = ?, last_error = NULL, failing_since = NULL"
    params: list[Any] = [time.time()]
    if cursor is not None:
        sql += ", catalog_cursor = ?"
        params.append(cursor)
    await store.execute(sql + " WHERE name = ?", (*params, pool))


async def record_error(store: Store, pool: str, message: str) -> bool:
    """Keep the last error; returns True when the pool was not failing before (log it then)."""
    now = time.time()
    async with store.transaction() as db:
        async with db.execute("SELECT failing_since FROM pools WHERE name = ?", (pool,)) as cur:
            row = await cur.fetchone()
        started = row is None or row[0] is None
        await db.execute(
            "UPDATE pools SET last_error = ?, last_error_at = ?, "
            "failing_since = COALESCE(failing_since, ?) WHERE name = ?",
            (message, now, now, pool),
        )
    return started


async def set_blocked(store: Store, pool: str, reason: str | None) -> None:
    """Downloads for this pool stop (or resume, with None) on the pool's own word."""
    await store.execute("UPDATE pools SET blocked_reason = ? WHERE name = ?", (reason, pool))


async def load_state(store: Store, pool: str) -> dict[str, Any]:
    row = await store.fetchone("SELECT state FROM pools WHERE name = ?", (pool,))
    return json.loads(row[0]) if row and row[0] else {}


async def save_state(store: Store, pool: str, state: dict[str, Any]) -> None:
    await store.execute("UPDATE pools SET state = ? WHERE name = ?", (json.dumps(state), pool))
