"""Turns the daemon's events into hooks and notifications (docs/interface.md §10).

It listens on the event bus like any `poolctl watch`, so the downloader and sync know nothing of
hooks or Apprise: a job that reaches `done` or `failed` runs the matching hook and is told to the
DJ; a job paused for a full disk, or refused for its account, is told once in a while; a
`pool.failing` event (pool, code, error, since; sync.py publishes one on every failed pass) tells
of a refused account at once and of a pool failing for hours once a spell.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pooldaemon.alerts import Alerts
from pooldaemon.events import EventBus
from pooldaemon.hooks import HookEvent, HookRunner
from pooldaemon.log import get_logger
from pooldaemon.tasks import cancel_and_wait

log = get_logger(__name__)

# Error codes of errors.py that only the DJ can fix at the pool's site.
ACCOUNT_CODES = frozenset({"auth", "account"})
DISK_CODE = "disk_full"
# A pool failing this long is an account-level problem worth telling (docs/interface.md §10).
POOL_FAILING_TELL_S = 6 * 3600.0
_SEEN_MAX = 4096


def _text(job: Mapping[str, Any], key: str) -> str:
    value = job.get(key)
    return "" if value is None else str(value)


class Informer:
    """Owns one task reading the event bus; each event is handled without waiting on anyone."""

    def __init__(self, events: EventBus, *, hooks: HookRunner, alerts: Alerts) -> None:
        self._events = events
        self._hooks = hooks
        self._alerts = alerts
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # A job's final state may be published again (adopted on restart, re-read): its hook
        # runs once.
        self._seen: OrderedDict[tuple[Any, str], None] = OrderedDict()
        # Pools already told as failing for hours: once a failing spell, until `pool.recovered`
        # (sync publishes `pool.failing` on every failed pass, and the hours keep growing).
        self._long_failing: set[str] = set()

    def start(self) -> None:
        """Start the hook runner, the notifier and the task reading the event bus."""
        self._hooks.start()
        self._alerts.start()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="informer")

    async def wait_subscribed(self) -> None:
        """Until the bus delivers to us (events published before are not seen)."""
        await self._subscribed.wait()

    async def stop(self) -> None:
        """Stop reading, then stop the hook runner and the notifier."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        await self._hooks.stop()
        await self._alerts.stop()

    def handle(self, event: Mapping[str, Any]) -> None:
        """React to one bus event (never raises, never waits)."""
        kind = event.get("type")
        if kind == "job.state" and isinstance(event.get("job"), Mapping):
            self._job(event["job"])
        elif kind == "pool.failing":
            self._pool_failing(event)
        elif kind == "pool.recovered":
            self._long_failing.discard(_text(event, "pool"))

    def _job(self, job: Mapping[str, Any]) -> None:
        state, code = _text(job, "state"), _text(job, "error_code")
        if code == DISK_CODE and state == "paused":
            self._alerts.disk(_text(job, "error") or "no space left for downloads")
        if code in ACCOUNT_CODES and state in ("paused", "failed"):
            self._alerts.account(_text(job, "pool"), _text(job, "error"))
        if state not in ("done", "failed") or not self._first_time(job.get("id"), state):
            return
        artist, title = _text(job, "artist"), _text(job, "title") or _text(job, "ref")
        self._hooks.submit(
            HookEvent(
                event="done" if state == "done" else "failed",
                ref=_text(job, "ref"),
                pool=_text(job, "pool"),
                job=_text(job, "id"),
                path=_text(job, "path"),
                artist=artist,
                title=_text(job, "title"),
                error=_text(job, "error") if state == "failed" else "",
            )
        )
        if state == "done":
            self._alerts.done(artist, title)
        else:
            reason = _text(job, "error") or "unknown error"
            self._alerts.failed(artist, title, _text(job, "ref"), reason)

    def _pool_failing(self, event: Mapping[str, Any]) -> None:
        pool, code, error = _text(event, "pool"), _text(event, "code"), _text(event, "error")
        since = event.get("since")
        hours = (time.time() - since) / 3600 if isinstance(since, int | float) else 0.0
        if code in ACCOUNT_CODES:
            self._alerts.account(pool, error)
        elif hours * 3600 >= POOL_FAILING_TELL_S and pool not in self._long_failing:
            self._long_failing.add(pool)
            self._alerts.account(pool, f"failing for {hours:.0f} hours: {error}")

    def _first_time(self, job_id: Any, state: str) -> bool:
        key = (job_id, state)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    async def _run(self) -> None:
        async with self._events.subscribe() as stream:
            self._subscribed.set()
            async for event in stream:
                try:
                    self.handle(event)
                except Exception:  # a malformed event must not end hooks and notifications
                    log.exception("informer.bad_event", type=event.get("type"))
