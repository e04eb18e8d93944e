"""How each pool's download servers behaved lately (table server_health)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pooldaemon.store.db import Store


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
