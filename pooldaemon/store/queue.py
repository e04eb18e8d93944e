"""Remote queues as last read: the items each pool says are waiting for us (`remote_queue`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pooldaemon.models import QueueItem
from pooldaemon.store.db import Store


async def queue_keys(store: Store, pool: str) -> set[tuple[str, str]]:
    """(kind, item_id) of every queue item seen before."""
    rows = await store.fetchall("SELECT kind, item_id FROM remote_queue WHERE pool = ?", (pool,))
    return {(row[0], row[1]) for row in rows}


async def save_queue(
    store: Store, pool: str, items: Sequence[QueueItem], *, seen_at: float
) -> None:
    """Make the stored queue what the pool listed (a complete answer: the adapter checks)."""
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO remote_queue (pool, item_id, kind, queue_id, queued_at, extra, "
            "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (pool, item_id, kind) DO UPDATE SET queue_id = excluded.queue_id, "
            "queued_at = excluded.queued_at, extra = excluded.extra, "
            "last_seen = excluded.last_seen",
            [
                (
                    pool,
                    item.item_id,
                    item.kind,
                    item.queue_id,
                    item.queued_at,
                    json.dumps(item.extra),
                    seen_at,
                    seen_at,
                )
                for item in items
            ],
        )
        await db.execute(
            "DELETE FROM remote_queue WHERE pool = ? AND last_seen < ?", (pool, seen_at)
        )


async def queue_items(store: Store, pool: str) -> list[QueueItem]:
    """The stored queue as last read, oldest sighting first."""
    rows = await store.fetchall(
        "SELECT item_id, kind, queue_id, queued_at, extra FROM remote_queue WHERE pool = ? "
        "ORDER BY first_seen, item_id",
        (pool,),
    )
    return [_item(pool, row) for row in rows]


def _item(pool: str, row: Any) -> QueueItem:
    return QueueItem(
        pool=pool,
        item_id=row[0],
        kind=row[1],
        queue_id=row[2],
        queued_at=row[3],
        extra=json.loads(row[4]) if row[4] else {},
    )
