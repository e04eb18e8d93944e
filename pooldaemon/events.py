"""The in-process event bus feeding `GET /v1/events` and `poolctl watch`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class EventBus:
    """Fan-out of small JSON-able events to any number of subscribers.

    A slow subscriber never slows the daemon: its queue is bounded and, when full, it misses
    events (counted in a `dropped` event) rather than blocking the publisher.
    """

    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self._dropped: dict[int, int] = {}

    def publish(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, "time": time.time(), **fields}
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._dropped[id(queue)] = self._dropped.get(id(queue), 0) + 1

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield self._drain(queue)
        finally:
            self._subscribers.discard(queue)
            self._dropped.pop(id(queue), None)

    async def _drain(self, queue: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await queue.get()
            dropped = self._dropped.pop(id(queue), 0)
            if dropped:
                yield {"type": "dropped", "time": time.time(), "count": dropped}
            yield event

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
