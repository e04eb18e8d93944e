"""The event stream for open dashboard tabs, as Server-Sent Events (docs/reliability.md W2).

One subscription to the daemon's event bus encodes each event once; every tab gets the same
bytes in its own small bounded queue. A tab that falls behind loses its backlog and is told to
reload its data (`{"type": "resync"}`) instead of holding memory or slowing the publisher, so
many tabs cost a bounded amount of memory and never hold up a download. Tabs are woken on a
common tick (4×/s), not per event: three downloads' progress costs each tab one write a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from pooldaemon.control.server import json_line
from pooldaemon.events import EventBus
from pooldaemon.tasks import cancel_and_wait

#: Events a tab may have waiting; progress comes at most 4×/s per job.
QUEUE_EVENTS = 64
MAX_CLIENTS = 256
#: How often waiting events go out: a progress bar needs no more.
FLUSH_INTERVAL_S = 0.25


def sse(event: dict[str, Any]) -> bytes:
    """One SSE message: `data: <json>` and a blank line (the JSON holds no newline)."""
    return b"data: " + json_line(event).rstrip(b"\n") + b"\n\n"


_RESYNC = sse({"type": "resync"})


class TooManyStreams(Exception):
    """Every stream slot is taken."""


class Client:
    """One tab's queue of encoded messages."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.closed = False
        self.resyncs = 0

    def push(self, message: bytes) -> None:
        if len(self._queue) >= self._size:
            # Behind by a whole queue: what is waiting is stale; the tab reloads its data.
            self._queue.clear()
            self._queue.append(_RESYNC)
            self.resyncs += 1
        self._queue.append(message)

    def flush(self) -> None:
        """Wake the tab's writer if anything waits."""
        if self._queue:
            self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self, timeout_s: float) -> bytes | None:
        """What is waiting, joined (None after `timeout_s` of nothing, or when closed)."""
        if not self._queue and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
        self._ready.clear()
        if not self._queue:
            return None
        data = b"".join(self._queue)
        self._queue.clear()
        return data


class SseHub:
    """Fans the event bus out to dashboard tabs until `stop()`."""

    def __init__(
        self,
        bus: EventBus,
        *,
        queue_events: int = QUEUE_EVENTS,
        max_clients: int = MAX_CLIENTS,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._bus = bus
        self._queue_events = queue_events
        self._max_clients = max_clients
        self._flush_interval_s = flush_interval_s
        self._clients: set[Client] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        ready = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run(ready), name="web-events"),
            asyncio.create_task(self._flush(), name="web-events-flush"),
        ]
        await ready.wait()

    async def stop(self) -> None:
        for client in self._clients:
            client.close()
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        """A tab's queue for the time it is connected; TooManyStreams when none is free."""
        if len(self._clients) >= self._max_clients:
            raise TooManyStreams(f"{self._max_clients} dashboard event streams are open already")
        client = Client(self._queue_events)
        self._clients.add(client)
        try:
            yield client
        finally:
            self._clients.discard(client)

    async def _run(self, ready: asyncio.Event) -> None:
        async with self._bus.subscribe() as stream:
            ready.set()
            async for event in stream:
                if not self._clients:
                    continue
                message = sse(event)
                for client in self._clients:
                    client.push(message)

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            for client in self._clients:
                client.flush()


def hello() -> bytes:
    """The first bytes of a stream: the reconnect delay and a `subscribed` message."""
    return b"retry: 3000\n\n" + sse({"type": "subscribed", "time": time.time()})
