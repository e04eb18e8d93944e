"""Bandwidth and politeness: one fair token bucket for all jobs, and per-host Retry-After gates."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

Clock = Callable[[], float]


class FairBucket:
    """A global `bandwidth_limit` shared fairly: waiting jobs are served round-robin.

    Callers take tokens after reading bytes (debt-based): a reader that must wait stops reading,
    so TCP flow control slows the server down too. Each key (a job) gets one turn per round
    however many connections it has, so four connections do not starve a job with one.
    A rate of 0 means unlimited and costs nothing.
    """

    def __init__(self, rate_bps: int = 0, *, burst_s: float = 0.25, clock: Clock = time.monotonic):
        self._clock = clock
        self._burst_s = burst_s
        self._waiters: OrderedDict[Hashable, deque[tuple[int, asyncio.Future[None]]]] = (
            OrderedDict()
        )
        self._timer: asyncio.TimerHandle | None = None
        self.rate_bps = 0
        self._capacity = 0.0
        self._tokens = 0.0
        self._last = clock()
        #: Connections streaming a body now, across all jobs (what the limit is shared by).
        self.streams = 0
        self.set_rate(rate_bps)

    def share_bps(self) -> float:
        """One connection's share of the limit in force now; 0 when unlimited.

        Read at the moment it is needed: the limit can change while downloads run.
        """
        if not self.rate_bps:
            return 0.0
        return self.rate_bps / max(1, self.streams)

    def set_rate(self, rate_bps: int) -> None:
        """Change the limit; waiting callers are re-evaluated at once."""
        self._refill()
        self.rate_bps = max(0, int(rate_bps))
        # Enough for a few reads at once so small limits still get whole socket reads through.
        self._capacity = max(self.rate_bps * self._burst_s, 64 * 1024.0)
        self._tokens = min(self._tokens, self._capacity)
        if self.rate_bps == 0:
            for queue in self._waiters.values():
                for _, fut in queue:
                    if not fut.done():
                        fut.set_result(None)
            self._waiters.clear()
        else:
            self._pump()

    async def take(self, key: Hashable, nbytes: int) -> None:
        """Wait until `nbytes` may be passed on for `key` (immediately when unlimited)."""
        if self.rate_bps == 0 or nbytes <= 0:
            return
        self._refill()
        if not self._waiters and self._tokens >= min(nbytes, self._capacity):
            self._tokens -= nbytes
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, deque()).append((nbytes, fut))
        self._pump()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted as we were cancelled: give the tokens back to the others.
                self._tokens += nbytes
            self._pump()
            raise

    def _refill(self) -> None:
        now = self._clock()
        if self.rate_bps:
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate_bps)
        self._last = now

    def _pump(self) -> None:
        """Grant waiting heads round-robin while tokens last; else arm a timer for the next."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._refill()
        while self._waiters:
            key, queue = next(iter(self._waiters.items()))
            while queue and queue[0][1].done():  # cancelled waiters
                queue.popleft()
            if not queue:
                del self._waiters[key]
                continue
            nbytes, fut = queue[0]
            need = min(nbytes, self._capacity)
            if self._tokens < need:
                delay = (need - self._tokens) / self.rate_bps
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(delay, self._pump)
                return
            self._tokens -= nbytes
            queue.popleft()
            fut.set_result(None)
            # The key goes to the back of the round, whether or not it has more waiting.
            self._waiters.move_to_end(key)
            if not queue:
                del self._waiters[key]


class HostGates:
    """Per-host "not before" times from 429/503 `Retry-After`, shared by workers (H7)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def block(self, host: str, seconds: float) -> None:
        """No request to `host` for `seconds` (never shortens an existing block)."""
        until = self._clock() + max(0.0, seconds)
        if until > self._until.get(host, 0.0):
            self._until[host] = until

    def remaining(self, host: str) -> float:
        """Seconds until `host` may be asked again (0 when open)."""
        until = self._until.get(host)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[host]
            return 0.0
        return left

    async def wait(self, host: str) -> None:
        """Sleep until `host` is open (re-checking: another worker may extend the block)."""
        while (left := self.remaining(host)) > 0:
            await asyncio.sleep(left)
