"""The shared bandwidth limit changes live: in-flight consumers slow down or speed up at once."""

from __future__ import annotations

import asyncio
import time

from pooldaemon.downloader.ratelimit import FairBucket
from tests.conftest import eventually

KIB = 1024
MIB = 1024 * KIB
READ = 64 * KIB


class Consumer:
    """A transfer's read loop: take tokens for each read, count the bytes passed on."""

    def __init__(self, bucket: FairBucket) -> None:
        self.bucket = bucket
        self.passed = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.bucket.take("job", READ)
            self.passed += READ
            await asyncio.sleep(0)  # a socket read would yield here

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


async def test_a_running_consumer_slows_down_when_a_limit_is_set() -> None:
    bucket = FairBucket(0)
    consumer = Consumer(bucket)
    try:
        await eventually(lambda: consumer.passed >= 64 * MIB)  # unlimited: fast
        rate = 1 * MIB
        bucket.set_rate(rate)
        changed_at, mark = time.monotonic(), consumer.passed
        # The next 1.5 MiB take at least (1.5 MiB - one burst) / rate: about 1.25 s.
        took = await eventually(lambda: consumer.passed - mark >= 3 * MIB // 2)
        burst = max(rate * 0.25, 64 * KIB) + READ
        assert took >= (3 * MIB // 2 - burst) / rate * 0.95
        assert took <= 3.0  # and it keeps flowing at the limit
        # The rate measured over the last stretch is the limit (within scheduling slack).
        mark, start = consumer.passed, time.monotonic()
        await eventually(lambda: consumer.passed - mark >= MIB)
        measured = (consumer.passed - mark) / (time.monotonic() - start)
        assert rate * 0.8 <= measured <= rate * 1.3, measured
        assert time.monotonic() - changed_at < 5
    finally:
        await consumer.stop()


async def test_a_consumer_waiting_on_a_tiny_limit_is_released_when_it_is_raised() -> None:
    bucket = FairBucket(1 * KIB)  # 64 KiB reads would wait about a minute each
    consumer = Consumer(bucket)
    try:
        for _ in range(3):  # let the consumer reach its first take, where it must wait
            await asyncio.sleep(0)
        assert consumer.passed == 0
        stuck_at = consumer.passed
        bucket.set_rate(4 * MIB)
        took = await eventually(lambda: consumer.passed >= stuck_at + 2 * MIB, deadline_s=3.0)
        assert took < 1.5
        bucket.set_rate(0)  # unlimited: the waiters are released at once
        mark = consumer.passed
        await eventually(lambda: consumer.passed >= mark + 32 * MIB, deadline_s=3.0)
    finally:
        await consumer.stop()
