"""The one "throttle now": [daemon] bandwidth_limit, the [[schedule]] windows and gig mode combined.

docs/interface.md §10: the limit in force changes live; gig mode starts within 5 s of a DJ app
starting and ends within 5 s of it quitting; `status` shows why downloads are slow or paused.
The governor owns two tasks: one re-reads the clock every second (windows start and end on the
minute), one scans for DJ apps every two seconds (a scan is cheap; see gig.py). Subscribers are
called, on the event loop, only when the throttle changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pooldaemon.gig import running_app
from pooldaemon.informed_config import GigConfig, ScheduleWindow
from pooldaemon.localzone import LocalClock
from pooldaemon.log import get_logger
from pooldaemon.schedule import Policy, policy_at
from pooldaemon.tasks import cancel_and_wait

log = get_logger(__name__)

AppScanner = Callable[[Sequence[str]], Awaitable[str | None]]


@dataclass(frozen=True)
class Throttle:
    """What transfers may do now: paused, or limited to `limit_bps` (None: unlimited), and why."""

    paused: bool
    limit_bps: int | None
    reason: str | None  # "schedule mon 01:00-07:00", "gig: rekordbox", None: the daemon's limit


class Governor:
    """Re-evaluates the throttle every second and tells subscribers when it changes."""

    def __init__(
        self,
        *,
        bandwidth_limit_bps: int,
        schedule: Sequence[ScheduleWindow],
        gig: GigConfig,
        clock: LocalClock,
        scan: AppScanner = running_app,
        tick_s: float = 1.0,
        gig_interval_s: float = 2.0,
    ) -> None:
        self._default_bps = bandwidth_limit_bps
        self._windows = tuple(schedule)
        self._gig = gig
        self._clock = clock
        self._scan = scan
        self._tick_s = tick_s
        self._gig_interval_s = gig_interval_s
        self._policy = policy_at(self._windows, self._default_bps, self._clock())
        self._app: str | None = None
        self._scan_failing = False
        self._throttle = self._combine()
        self._subscribers: list[Callable[[Throttle], None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def throttle(self) -> Throttle:
        """The throttle in force now."""
        return self._throttle

    def subscribe(self, callback: Callable[[Throttle], None]) -> None:
        """Call `callback(throttle)` on every change (not with the current one: read `throttle`)."""
        self._subscribers.append(callback)

    def reconfigure(
        self, *, bandwidth_limit_bps: int, schedule: Sequence[ScheduleWindow], gig: GigConfig
    ) -> None:
        """Take new settings (a config reload); subscribers hear of the change at once."""
        self._default_bps = bandwidth_limit_bps
        self._windows = tuple(schedule)
        self._gig = gig
        if not gig.apps:
            self._app = None
        self.evaluate()

    def evaluate(self) -> Throttle:
        """Read the clock now, recompute, and notify subscribers if the throttle changed."""
        self._policy = policy_at(self._windows, self._default_bps, self._clock())
        self._publish()
        return self._throttle

    async def scan_now(self) -> str | None:
        """Look for DJ apps now (also done every couple of seconds by the owned task)."""
        try:
            app = await self._scan(self._gig.apps)
        except (OSError, TimeoutError) as err:
            # Logged once when it starts failing; meanwhile no app counts as seen, so a broken
            # `ps` cannot hold downloads paused for ever.
            if not self._scan_failing:
                log.warning("gig.scan_failing", error=str(err))
            self._scan_failing = True
            app = None
        else:
            if self._scan_failing:
                log.info("gig.scan_recovered")
            self._scan_failing = False
        if app != self._app:
            if app is not None:
                log.info("gig.started", app=app, action=self._gig.action)
            else:
                log.info("gig.ended", app=self._app)
            self._app = app
            self._publish()
        return app

    def start(self) -> None:
        """Start the owned tasks (clock and app scan)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._clock_loop(), name="governor-clock"),
            asyncio.create_task(self._gig_loop(), name="governor-gig"),
        ]

    async def stop(self) -> None:
        """Cancel and await the owned tasks."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    def status(self) -> dict[str, Any]:
        """The `"schedule"` and `"gig"` entries of `status` (docs/interface.md §10)."""
        policy = self._policy
        schedule = {
            "window": policy.window.label() if policy.window else None,
            "downloads": policy.downloads,
            "limit_bps": self._throttle.limit_bps,
            "paused": self._throttle.paused,
            "reason": self._throttle.reason,
            "next_change": policy.next_change.isoformat() if policy.next_change else None,
        }
        gig = None
        if self._app is not None:
            gig = {
                "app": self._app,
                "action": self._gig.action,
                "limit_bps": self._gig.bandwidth_limit_bps if self._gig.action == "limit" else None,
            }
        return {"schedule": schedule, "gig": gig}

    def _combine(self) -> Throttle:
        policy: Policy = self._policy
        window = f"schedule {policy.window.label()}" if policy.window else None
        if self._app is not None and self._gig.action == "pause":
            return Throttle(True, None, f"gig: {self._app}")
        if not policy.downloads:
            return Throttle(True, None, window)
        if self._app is not None:
            gig_bps = self._gig.bandwidth_limit_bps
            if policy.limit_bps is None or gig_bps <= policy.limit_bps:
                return Throttle(False, gig_bps, f"gig: {self._app}")
        return Throttle(False, policy.limit_bps, window)

    def _publish(self) -> None:
        throttle = self._combine()
        if throttle == self._throttle:
            return
        self._throttle = throttle
        log.info(
            "throttle.changed",
            paused=throttle.paused,
            limit_bps=throttle.limit_bps,
            reason=throttle.reason,
        )
        for callback in list(self._subscribers):
            try:
                callback(throttle)
            except Exception:  # a subscriber's bug must not stop the governor
                log.exception("throttle.subscriber_failed")

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.evaluate()

    async def _gig_loop(self) -> None:
        while True:
            if self._gig.apps:
                await self.scan_now()
            await asyncio.sleep(self._gig_interval_s)
