"""The remote-queue and event endpoints answered by a real `pooldaemon run` process against the
Promo Only simulator (docs/interface.md §4): what `poolctl queue` and `poolctl watch` read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pooldaemon.control.client import ControlClient, DaemonRefused
from pooldaemon.sim.promoonly import PromoOnlySim
from tests.conftest import ConfigFactory, DaemonFactory, DaemonProcess


@pytest.fixture
async def sim() -> AsyncIterator[PromoOnlySim]:
    async with PromoOnlySim(tracks=5) as running:
        yield running


@pytest.fixture
def daemon(
    sim: PromoOnlySim, config_factory: ConfigFactory, daemon_factory: DaemonFactory
) -> DaemonProcess:
    # auto_download off: the queue is read and edited here, not downloaded behind the test.
    pools = sim.config_toml("promoonly") + "auto_download = false\n"
    return daemon_factory(config_factory(pools, write_tags=False))


async def test_the_remote_queue_is_read_and_edited_through_the_real_daemon(
    sim: PromoOnlySim, daemon: DaemonProcess
) -> None:
    first, second, third = sim.track_ids[:3]
    sim.add_to_queue([first, second])  # as the DJ did on the website
    async with ControlClient(daemon.socket_path) as client:
        listed = await client.get("/v1/pools/promoonly/queue")
        assert listed["pool"] == "promoonly"
        assert [item["ref"] for item in listed["items"]] == [
            f"promoonly:{first}",
            f"promoonly:{second}",
        ]
        item = listed["items"][0]
        assert item["artist"] == sim.tracks[first].artist and item["title"]
        assert "dl_token" not in item  # tokens stay inside the daemon

        added = await client.post("/v1/pools/promoonly/queue", {"add": third})
        assert f"promoonly:{third}" in {i["ref"] for i in added["items"]}
        assert "queued" in added["message"].lower()
        assert sim.queued(third) == 1

        removed = await client.post("/v1/pools/promoonly/queue", {"remove": str(first)})
        assert [i["ref"] for i in removed["items"]] == [
            f"promoonly:{second}",
            f"promoonly:{third}",
        ]
        assert sim.queued(first) == 0

        with pytest.raises(DaemonRefused) as refused:
            await client.get("/v1/pools/nosuch/queue")
        assert refused.value.code == "not_found"
    assert sim.queue_calls[third] == 1


async def _events(client: ControlClient, into: list[dict[str, Any]], ready: asyncio.Event) -> None:
    async for event in client.stream("/v1/events"):
        into.append(event)
        ready.set()


async def test_events_stream_sync_results_and_job_states_from_the_real_daemon(
    sim: PromoOnlySim, daemon: DaemonProcess, tmp_path: Path
) -> None:
    track = sim.track_ids[0]
    sim.add_to_queue([track])
    seen: list[dict[str, Any]] = []
    async with ControlClient(daemon.socket_path) as client:
        arrived = asyncio.Event()
        follower = asyncio.create_task(_events(client, seen, arrived))
        try:
            async with asyncio.timeout(30):
                # The stream is open once the daemon says anything (a heartbeat at least, or
                # the first event): sync until the stream has shown our sync.
                while not any(
                    e["type"] == "sync" and e.get("what") == "queue" and e.get("items") == 1
                    for e in seen
                ):
                    await client.post("/v1/pools/promoonly/sync", {})
                    arrived.clear()
                    await arrived.wait()
                accepted = await client.post("/v1/jobs", {"refs": [f"promoonly:{track}"]})
                job_id = accepted["accepted"][0]["job"]
                while not any(
                    e["type"] == "job.state"
                    and e["job"]["id"] == job_id
                    and e["job"]["state"] in ("done", "failed")
                    for e in seen
                ):
                    arrived.clear()
                    await arrived.wait()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    states = [e["job"]["state"] for e in seen if e["type"] == "job.state"]
    assert states[-1] == "done", [e for e in seen if e["type"] == "job.state"][-1]
    # The states a download passes, in order (each shown once it happened).
    order = ["resolving", "downloading", "verifying", "done"]
    assert [s for s in states if s in order] == [s for s in order if s in states]
    assert {"downloading", "done"} <= set(states)
    size = sim.tracks[track].size
    done = [e["job"] for e in seen if e["type"] == "job.state" and e["job"]["state"] == "done"]
    assert done[-1]["bytes_done"] == size
    progress = [e for e in seen if e["type"] == "job.progress" and e["job"] == job_id]
    assert progress and all(0 <= e["bytes_done"] <= size for e in progress)
