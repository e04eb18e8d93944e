"""Bandwidth sharing between jobs and per-host gates."""

from __future__ import annotations

import asyncio

import pytest

from pooldaemon.downloader.fetch import TransferSettings
from pooldaemon.downloader.part import connection_floor
from pooldaemon.downloader.ratelimit import FairBucket, HostGates

from .conftest import KIB, MIB


async def test_bucket_serves_waiting_jobs_round_robin() -> None:
    # 64 KiB per grant at 8 MiB/s: each waits a few ms; only the order is asserted.
    bucket = FairBucket(8 * MIB, burst_s=0.0)
    await bucket.take("warmup", 64 * KIB)  # empty the bucket so everyone queues
    order: list[str] = []

    async def take(key: str, label: str) -> None:
        await bucket.take(key, 64 * KIB)
        order.append(label)

    tasks = [asyncio.create_task(take("A", f"a{i}")) for i in range(4)]
    tasks.append(asyncio.create_task(take("B", "b0")))
    await asyncio.gather(*tasks)
    # Job B with one connection is not starved by job A's four.
    assert order.index("b0") <= 1
    assert [x for x in order if x.startswith("a")] == ["a0", "a1", "a2", "a3"]


async def test_unlimited_bucket_never_waits() -> None:
    # Time stands still: a take that had to wait for tokens would suspend and never finish.
    bucket = FairBucket(0, clock=lambda: 0.0)
    for _ in range(1000):
        take = bucket.take("A", MIB)
        with pytest.raises(StopIteration):
            take.send(None)  # ran to its end without suspending once
    # The same check tells a waiting take apart: a limited bucket suspends.
    limited = FairBucket(64 * KIB, clock=lambda: 0.0)
    take = limited.take("A", MIB)
    assert isinstance(take.send(None), asyncio.Future)
    take.close()


def test_the_speed_floor_never_exceeds_a_connections_share_of_the_limit() -> None:
    """docs/reliability.md H6 under bandwidth_limit: the floor follows the limit in force and
    the connections streaming now, across all jobs."""
    settings = TransferSettings(connections=4, speed_floor_bps=64 * KIB)
    bucket = FairBucket(0)
    assert connection_floor(settings, bucket) == 16 * KIB  # unlimited: speed_floor / conns
    bucket.set_rate(32 * KIB)
    bucket.streams = 12  # three downloads, four connections each
    assert connection_floor(settings, bucket) == pytest.approx(32 * KIB / 12)
    bucket.set_rate(MIB)  # a schedule raised the limit: the configured floor again
    assert connection_floor(settings, bucket) == 16 * KIB
    bucket.set_rate(0)
    assert connection_floor(settings, bucket) == 16 * KIB


def test_host_gates_hold_a_host_until_its_time() -> None:
    now = [100.0]
    gates = HostGates(clock=lambda: now[0])
    gates.block("h:1", 5)
    assert gates.remaining("h:1") == 5
    gates.block("h:1", 1)  # never shortened
    assert gates.remaining("h:1") == 5
    assert gates.remaining("other:1") == 0
    now[0] = 106.0
    assert gates.remaining("h:1") == 0
