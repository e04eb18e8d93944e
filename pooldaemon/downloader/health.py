"""The engine-wide server health book: which download servers failed, cool down, ignore Range.

One book is shared by every job of the engine, so a server one job saw failing is avoided by the
others too; it is written through to the store and survives restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pooldaemon.log import redact_text
from pooldaemon.retry import backoff_s
from pooldaemon.store import health as store_health
from pooldaemon.store.db import Store
from pooldaemon.store.health import ServerHealth


class HealthBook:
    """Server health shared by all jobs of the engine, written through to the store."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        cooldown_s: float = 2.0,
        cooldown_max_s: float = 300.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._cooldown_s = cooldown_s
        self._cooldown_max_s = cooldown_max_s
        self._pools: dict[str, dict[str, ServerHealth]] = {}

    async def load(self, pool: str) -> None:
        """Read a pool's servers from the store, once."""
        if pool not in self._pools:
            self._pools[pool] = await store_health.load_health(self._store, pool)

    def get(self, pool: str, server: str) -> ServerHealth:
        """The record of one server (a fresh one if it never failed)."""
        return self._pools.setdefault(pool, {}).setdefault(server, ServerHealth())

    def cooling_s(self, pool: str, server: str) -> float:
        """Seconds the server still cools down (0: it may be asked now)."""
        until = self.get(pool, server).cooldown_until
        return 0.0 if until is None else max(0.0, until - self._clock())

    async def failure(
        self, pool: str, server: str, error: str, cooldown_s: float | None = None
    ) -> None:
        health = self.get(pool, server)
        health.failures += 1
        if cooldown_s is None:
            cooldown_s = backoff_s(health.failures, self._cooldown_s, self._cooldown_max_s)
        health.cooldown_until = self._clock() + cooldown_s
        health.last_error = redact_text(error)
        await store_health.save_health(self._store, pool, server, health)

    async def success(self, pool: str, server: str) -> None:
        health = self.get(pool, server)
        if health.failures or health.cooldown_until:
            health.failures = 0
            health.cooldown_until = None
            await store_health.save_health(self._store, pool, server, health)

    async def set_no_range(self, pool: str, server: str, flag: bool) -> None:
        health = self.get(pool, server)
        if health.no_range != flag:
            health.no_range = flag
            await store_health.save_health(self._store, pool, server, health)

    def forgive(self, pool: str, servers: Iterable[str]) -> None:
        """A renewed plan gets a fresh try at its servers (in memory only)."""
        for server in servers:
            self.get(pool, server).cooldown_until = None
