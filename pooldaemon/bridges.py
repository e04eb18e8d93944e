"""Components that only connect two others for the daemon's lifecycle (wired in wiring.py).

`GovernedDownloads` turns the governor's throttle into the engine's rate and holds;
`Informing` runs the informer (hooks and notifications) as a started and stopped component.
"""

from __future__ import annotations

import asyncio

from pooldaemon.errors import PoolDaemonError
from pooldaemon.events import EventBus
from pooldaemon.governor import Governor, Throttle
from pooldaemon.informed import Informer
from pooldaemon.log import get_logger
from pooldaemon.ports import EnginePort

log = get_logger(__name__)


class GovernedDownloads:
    """The governor wired to the engine (docs/interface.md §10): each change of the throttle
    sets the engine's rate at once, and holds or releases the whole downloader.

    Started before the engine, so a window or a gig in force at start-up holds downloads before
    the first job starts; stopped after it. Holding waits for the transfers to checkpoint, so it
    runs in an owned task; one task at a time, in order, so a quick hold-release-hold ends in the
    last state.
    """

    def __init__(self, governor: Governor, engine: EnginePort, events: EventBus) -> None:
        self.governor = governor
        self._engine = engine
        self._events = events
        self._latest: Throttle | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        throttle = self.governor.evaluate()
        await self._apply(throttle)
        self.governor.subscribe(self._on_change)
        self._task = asyncio.create_task(self._follow(), name="governed-downloads")
        self.governor.start()

    async def stop(self) -> None:
        await self.governor.stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    def _on_change(self, throttle: Throttle) -> None:
        # The rate at once, without waiting for a transfer: in-flight reads slow down now.
        self._set_rate(throttle)
        self._latest = throttle
        self._changed.set()

    async def _follow(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._latest is None:
                continue
            try:
                await self._apply(self._latest)
            except PoolDaemonError as err:  # the next change tries again
                log.error("throttle not applied", error=err.message)

    def _set_rate(self, throttle: Throttle) -> None:
        # A pause has no limit of its own: the last one stays while transfers stop, rather
        # than "unlimited" letting them burst on their way out.
        if not throttle.paused:
            self._engine.set_rate(throttle.limit_bps or 0)

    async def _apply(self, throttle: Throttle) -> None:
        self._set_rate(throttle)
        if throttle.paused:
            await self._engine.hold(throttle.reason or "schedule")
        else:
            self._engine.release()
        self._events.publish(
            "downloader.throttle",
            paused=throttle.paused,
            limit_bps=throttle.limit_bps,
            reason=throttle.reason,
        )


class Informing:
    """Hooks and notifications from the event bus (informed.py), as a component."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer

    async def start(self) -> None:
        self.informer.start()
        # Subscribed before the engine starts: no job's end is missed.
        await self.informer.wait_subscribed()

    async def stop(self) -> None:
        await self.informer.stop()
