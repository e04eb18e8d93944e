"""Notifications to the DJ through Apprise: finished downloads (batched), failures, account, disk.

docs/interface.md §10 and docs/reliability.md N1: the calls (`done`, `failed`, `account`, `disk`)
only put a message on a bounded queue and return; an owned task batches finished downloads into
at most one message per minute and hands every message to one channel per destination. Each
channel has its own task and retries its oldest message until it is delivered or has failed for
ten minutes, then drops it with one log line, so a service that hangs, answers 500 or is
unreachable never delays downloads or the other destinations. Apprise is synchronous (requests),
so delivery runs on the module's own threads, never on the event loop. Destinations are secrets
and are logged only as `urls[N] (scheme://…)`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pooldaemon.informed_config import NotifyConfig
from pooldaemon.log import get_logger
from pooldaemon.tasks import cancel_and_wait

if TYPE_CHECKING:
    import apprise

log = get_logger(__name__)

AlertKind = Literal["done", "failed", "account", "disk"]
Sender = Callable[[str, str], Awaitable[bool]]  # (title, body) → delivered
Clock = Callable[[], float]
_NAMES_SHOWN = 10


@dataclass
class _Message:
    kind: AlertKind
    title: str
    body: str


@dataclass
class _Pending:
    message: _Message
    first_try: float
    tries: int = 0


@dataclass
class Timing:
    """The intervals of docs/interface.md §10; tests shorten them."""

    batch_s: float = 60.0  # at most one "new tracks" message per this
    give_up_s: float = 600.0  # a message failing this long is dropped
    retry_s: float = 30.0  # between tries of a failing message
    send_timeout_s: float = 30.0  # one try
    backlog: int = 50  # messages a channel holds while its service is down
    # The same account or disk problem is told again only after this: the caller may report a
    # state every time it sees it, the DJ hears of it once an evening.
    repeat_s: float = 6 * 3600.0


@dataclass
class Channel:
    """One destination: its own backlog and task, so one dead service never holds up another."""

    name: str  # safe to log: never the URL itself
    send: Sender
    timing: Timing
    clock: Clock = time.monotonic
    backlog: deque[_Pending] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failing: bool = False
    sending: bool = False
    overflowing: int = 0

    def put(self, message: _Message) -> None:
        if len(self.backlog) >= self.timing.backlog:
            self.backlog.popleft()  # the oldest goes: newer news is worth more
            if not self.overflowing:
                log.warning("alert.backlog_full", channel=self.name, limit=self.timing.backlog)
            self.overflowing += 1
        self.backlog.append(_Pending(message, self.clock()))
        self.wake.set()

    def idle(self) -> bool:
        return not self.backlog and not self.sending

    async def run(self) -> None:
        error = ""
        while True:
            if not self.backlog:
                self.wake.clear()
                await self.wake.wait()
                continue
            self._drop_expired(error)
            if not self.backlog:
                continue
            pending = self.backlog[0]
            pending.tries += 1
            self.sending = True
            try:
                delivered, error = await self._try(pending.message)
            finally:
                self.sending = False
            if delivered:
                self.backlog.popleft()
                if self.failing:
                    log.info("alert.channel_recovered", channel=self.name)
                    self.failing = False
                continue
            if not self.failing:
                log.warning("alert.channel_failing", channel=self.name, error=error)
                self.failing = True
            await asyncio.sleep(self.timing.retry_s)

    def _drop_expired(self, error: str) -> None:
        """Let go of messages older than give_up_s, all in one log line."""
        limit = self.clock() - self.timing.give_up_s
        dropped: list[_Pending] = []
        while self.backlog and self.backlog[0].first_try <= limit:
            dropped.append(self.backlog.popleft())
        if dropped:
            log.warning(
                "alert.dropped",
                channel=self.name,
                count=len(dropped),
                kinds=sorted({item.message.kind for item in dropped}),
                tries=sum(item.tries for item in dropped),
                reason=f"failing for {self.timing.give_up_s:g}s: {error}",
            )
        if self.overflowing and len(self.backlog) < self.timing.backlog:
            log.info("alert.backlog_recovered", channel=self.name, dropped=self.overflowing)
            self.overflowing = 0

    async def _try(self, message: _Message) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self.timing.send_timeout_s):
                ok = await self.send(message.title, message.body)
        except TimeoutError:
            return False, f"no answer in {self.timing.send_timeout_s:g}s"
        except Exception as err:  # a plugin's bug is this channel's failure, nothing more
            return False, type(err).__name__
        return ok, "" if ok else "the service refused it or could not be reached"


def channel_name(index: int, url: str) -> str:
    """How logs name a destination: its position and scheme, never the URL (it holds secrets)."""
    scheme = url.partition("://")[0] if "://" in url else "?"
    return f"urls[{index}] ({scheme}://…)"


def desktop_url(env: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """The Apprise URL of the desktop's notification centre, if this process has a session."""
    if platform == "darwin":
        return "macosx://"
    if platform.startswith("linux") and env.get("DBUS_SESSION_BUS_ADDRESS"):
        return "dbus://"
    return None


class Alerts:
    """The notification front door: non-blocking calls, batching, one channel per destination."""

    def __init__(
        self,
        config: NotifyConfig,
        *,
        env: Mapping[str, str],
        timing: Timing | None = None,
        senders: Sequence[tuple[str, Sender]] | None = None,
        queue_size: int = 256,
        clock: Clock = time.monotonic,
    ) -> None:
        self._on = set(config.on)
        self._clock = clock
        self._told: dict[tuple[str, ...], float] = {}
        self.timing = timing or Timing()
        self._queue: asyncio.Queue[_Message] = asyncio.Queue(queue_size)
        self._executor: ThreadPoolExecutor | None = None
        if senders is None:
            senders = self._apprise_senders(config, env)
        self.channels = [Channel(name, send, self.timing, clock) for name, send in senders]
        self._done: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._overflowing = 0

    # -- the calls the daemon makes (never block, never raise) ---------------------------------

    def done(self, artist: str, title: str) -> None:
        """A download finished: counted into the next "N new tracks" message."""
        self._put(_Message("done", "", _track(artist, title)))

    def failed(self, artist: str, title: str, ref: str, reason: str) -> None:
        """A download failed for good."""
        body = f"{_track(artist, title)} ({ref}): {reason}"
        self._put(_Message("failed", "pooldaemon: download failed", body))

    def account(self, pool: str, problem: str) -> None:
        """A pool account needs the DJ: login rejected, blocked, failing for hours."""
        if self._first_in_a_while(("account", pool, problem)):
            self._put(_Message("account", f"pooldaemon: {pool} needs attention", problem))

    def disk(self, detail: str) -> None:
        """Downloads wait for disk space; `detail` says where and how much."""
        if self._first_in_a_while(("disk",)):
            self._put(_Message("disk", "pooldaemon: disk almost full", detail))

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the batching task and one task per destination."""
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._dispatch(), name="alerts")]
        self._tasks += [
            asyncio.create_task(channel.run(), name=f"alerts-{n}")
            for n, channel in enumerate(self.channels)
        ]

    async def stop(self) -> None:
        """Cancel the tasks; undelivered messages are let go (they are not worth a slow stop)."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self._executor is not None:
            # A thread stuck in a hanging HTTP call ends at Apprise's own socket timeouts.
            self._executor.shutdown(wait=False, cancel_futures=True)

    def idle(self) -> bool:
        """Nothing queued, batched or being delivered."""
        return self._queue.empty() and not self._done and all(ch.idle() for ch in self.channels)

    # -- inside --------------------------------------------------------------------------------

    def _first_in_a_while(self, key: tuple[str, ...]) -> bool:
        now = self._clock()
        last = self._told.get(key)
        if last is not None and now - last < self.timing.repeat_s:
            return False
        self._told[key] = now
        return True

    def _put(self, message: _Message) -> None:
        if message.kind not in self._on or not self.channels:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            if not self._overflowing:
                log.warning("alert.queue_full", kind=message.kind)
            self._overflowing += 1
            return
        if self._overflowing:
            log.info("alert.queue_recovered", dropped=self._overflowing)
            self._overflowing = 0

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        flush_at: float | None = None
        while True:
            timeout = None if flush_at is None else max(0.0, flush_at - loop.time())
            try:
                async with asyncio.timeout(timeout):
                    message = await self._queue.get()
            except TimeoutError:
                self._fan_out(_batch(self._done))
                self._done = []
                flush_at = None
                continue
            if message.kind == "done":
                self._done.append(message.body)
                if flush_at is None:
                    # The batch opens with its first track and closes a minute later, so
                    # a busy hour gives at most one message a minute, and a quiet one a single.
                    flush_at = loop.time() + self.timing.batch_s
            else:
                self._fan_out(message)

    def _fan_out(self, message: _Message) -> None:
        for channel in self.channels:
            channel.put(message)

    def _apprise_senders(
        self, config: NotifyConfig, env: Mapping[str, str]
    ) -> list[tuple[str, Sender]]:
        # Apprise logs through the standard library; its lines bypass our redactor, so keep
        # them out of the log (our own lines say what failed, without the URL).
        quiet = logging.getLogger("apprise")
        quiet.propagate = False
        quiet.setLevel(logging.CRITICAL + 1)
        urls = [(channel_name(n, url), url) for n, url in enumerate(config.url_values())]
        if config.desktop and (desktop := desktop_url(env)) is not None:
            urls.append(("desktop", desktop))
        senders: list[tuple[str, Sender]] = []
        if not urls:
            return senders
        # Imported only when there is somewhere to send: apprise and its plugins are several
        # MiB a daemon without [notify] urls would carry for nothing (issue 13).
        import apprise

        for name, url in urls:
            client = apprise.Apprise()
            if not client.add(url):
                if name != "desktop":  # no desktop support here: silently off
                    log.warning("alert.unusable_url", channel=name)
                continue
            senders.append((name, self._sender(client)))
        if senders:
            self._executor = ThreadPoolExecutor(2 * len(senders), thread_name_prefix="alerts")
        return senders

    def _sender(self, client: apprise.Apprise) -> Sender:
        async def send(title: str, body: str) -> bool:
            assert self._executor is not None
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._executor, lambda: client.notify(body=body, title=title)
            )
            return bool(result)

        return send


def _track(artist: str, title: str) -> str:
    return f"{artist} – {title}" if artist else title


def _batch(tracks: list[str]) -> _Message:
    count = len(tracks)
    noun = "new track" if count == 1 else "new tracks"
    shown = ", ".join(tracks[:_NAMES_SHOWN])
    more = f", and {count - _NAMES_SHOWN} more" if count > _NAMES_SHOWN else ""
    return _Message("done", f"pooldaemon: {count} {noun}", f"{count} {noun}: {shown}{more}")
