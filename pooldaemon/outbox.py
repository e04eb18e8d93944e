"""The pool outbox: calls a finished download owes its pool, delivered until acknowledged.

Some pools want to hear that a track was downloaded (docs/interface.md §6). The call is written
in the same transaction that records the download, so a crash never loses it; this component
delivers what is due, with back-off, and gives a call up only after many tries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import aiohttp

from pooldaemon.errors import PoolDaemonError, TransientError, Unsupported
from pooldaemon.log import get_logger, redact_text
from pooldaemon.pools.base import PoolAdapter
from pooldaemon.retry import backoff_s
from pooldaemon.store import outbox as store_outbox
from pooldaemon.store.db import Store

log = get_logger(__name__)


class Outbox:
    """Delivers owed pool calls in the background; `wake()` when new ones may be due."""

    def __init__(
        self,
        store: Store,
        adapters: Mapping[str, PoolAdapter],
        clock: Callable[[], float] = time.time,
        *,
        backoff_s: float = 30.0,
        backoff_max_s: float = 6 * 3600.0,
        max_attempts: int = 50,
    ) -> None:
        self.store = store
        self.adapters = adapters
        self.clock = clock
        self._backoff = (backoff_s, backoff_max_s)
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start delivering (calls left over from the last run first)."""
        self._running = True
        self._task = asyncio.create_task(self._loop(), name="outbox")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop delivering; an undelivered call stays in the store for the next run."""
        self._running = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=timeout_s)

    def wake(self) -> None:
        """A call may be due now (a download just finished)."""
        self._wake.set()

    async def _loop(self) -> None:
        """Deliver calls owed to pools until acknowledged, with back-off (docs/interface.md §6)."""
        while self._running:
            self._wake.clear()
            try:
                await self.deliver_due()
                next_due = await store_outbox.next_due(self.store)
            except PoolDaemonError as err:
                log.warning("outbox pass failed", error=str(err))
                next_due = self.clock() + 30
            timeout = None if next_due is None else max(0.05, next_due - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def deliver_due(self) -> None:
        """One pass: every call whose back-off has passed is tried once."""
        for entry in await store_outbox.pending(self.store, self.clock()):
            adapter = self.adapters.get(entry.call.pool)
            if adapter is None:
                await store_outbox.defer(
                    self.store, entry.id, "pool not configured", self.clock() + 3600
                )
                continue
            try:
                await adapter.deliver(entry.call)
            except Unsupported as err:
                await store_outbox.ack(self.store, entry.id, error=redact_text(str(err)))
                continue
            except (PoolDaemonError, aiohttp.ClientError, TimeoutError) as err:
                attempts = entry.attempts + 1
                message = redact_text(f"{type(err).__name__}: {err}")
                if attempts >= self._max_attempts:
                    await store_outbox.ack(
                        self.store, entry.id, error=f"given up after {attempts} tries: {message}"
                    )
                    log.warning("outbox call given up", pool=entry.call.pool, error=message)
                    continue
                delay = backoff_s(attempts, *self._backoff)
                if isinstance(err, TransientError) and err.retry_after_s:
                    delay = max(delay, err.retry_after_s)
                await store_outbox.defer(self.store, entry.id, message, self.clock() + delay)
                continue
            await store_outbox.ack(self.store, entry.id)
            log.info("outbox call delivered", pool=entry.call.pool, action=entry.call.action)
