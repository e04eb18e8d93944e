"""The whole daemon against the simulated pools: queue → job → verified file; drop folder → job;
the socket API as poolctl uses it. Everything real: servers, sockets, SQLite, files."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pooldaemon.config import Config
from pooldaemon.control.client import ControlClient, DaemonRefused
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.harvest import HarvestSim
from pooldaemon.sim.promoonly import PromoOnlySim
from tests.conftest import started_daemon

UNFINISHED = {"queued", "resolving", "downloading", "verifying"}


class Running:
    """A started daemon, its client and the simulators behind it."""

    def __init__(
        self, config: Config, client: ControlClient, crateq: CrateQSim, harvest: HarvestSim
    ) -> None:
        self.config = config
        self.client = client
        self.crateq = crateq
        self.harvest = harvest

    async def jobs(self) -> list[dict[str, Any]]:
        return list((await self.client.get("/v1/jobs"))["items"])

    async def settle(self, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Wait until `count` jobs exist and none is unfinished."""
        async with asyncio.timeout(timeout_s):
            while True:
                jobs = await self.jobs()
                if len(jobs) >= count and not any(j["state"] in UNFINISHED for j in jobs):
                    return jobs
                await asyncio.sleep(0.05)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    # Harvest starts with no favourites, so nothing downloads until a test marks some.
    async with (
        CrateQSim(records=300, seed="e2e") as crateq,
        PromoOnlySim(tracks=4) as promo,
        HarvestSim(seed="e2e", favourites=0) as harvest,
        started_daemon(
            tmp_path,
            crateq.config_toml("crateq"),
            promo.config_toml("promoonly"),
            harvest.config_toml("harvest"),
            chunk_size="256 KiB",
            write_tags=False,
        ) as (config, _, client),
    ):
        yield Running(config, client, crateq, harvest)


async def test_queued_tracks_arrive_byte_identical_and_searchable(running: Running) -> None:
    sim = running.crateq
    queued = sim.catalog.ids()[:2]
    sim.add_to_queue(queued)
    result = await running.client.post("/v1/pools/crateq/sync", {"full": True})
    assert result == {"added": 300, "updated": 0, "removed": 0, "queue_new": 2}
    jobs = await running.settle(2)
    assert {j["ref"] for j in jobs} == {f"crateq:{i}" for i in queued}
    for job in jobs:
        assert job["state"] == "done", job["error"]
        path = Path(job["path"])
        assert path.is_relative_to(running.config.daemon.download_dir / "crateq")
        media_id = int(job["ref"].split(":")[1])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sim.sha256(media_id)
    # Asking again points at the existing job; nothing downloads twice (docs/interface.md §3).
    again = await running.client.post("/v1/jobs", {"refs": [f"crateq:{queued[0]}"]})
    assert again["accepted"][0]["job"] in {j["id"] for j in jobs}
    assert len(await running.jobs()) == 2
    found = await running.client.get("/v1/catalog", {"pool": "crateq", "limit": "500"})
    assert found["total"] == 300


async def test_a_dropped_request_file_becomes_a_job_and_a_result(running: Running) -> None:
    drop = running.config.daemon.drop_dir
    media_id = running.crateq.catalog.ids()[5]
    await running.client.post("/v1/pools/crateq/sync", {"full": True})
    (drop / "wanted.txt").write_text(f"# from a script\ncrateq:{media_id}\nnosuch:1\n")
    result_file = drop / "processed" / "wanted.txt.result.json"
    async with asyncio.timeout(20):
        while not result_file.exists():
            await asyncio.sleep(0.05)
    result = json.loads(result_file.read_text())
    assert [(a["line"], a["ref"]) for a in result["accepted"]] == [(2, f"crateq:{media_id}")]
    assert result["rejected"][0]["line"] == 3
    assert "crateq, harvest, promoonly" in result["rejected"][0]["reason"]
    assert (drop / "processed" / "wanted.txt").read_text().startswith("# from a script")
    (job,) = await running.settle(1)
    assert job["id"] == result["accepted"][0]["job"] and job["state"] == "done"


async def test_the_socket_refuses_bad_requests_clearly_and_keeps_serving(running: Running) -> None:
    with pytest.raises(DaemonRefused) as refused:
        await running.client.post("/v1/jobs", {"refs": "crateq:1"})
    assert refused.value.code == "bad_request"
    with pytest.raises(DaemonRefused) as missing:
        await running.client.get("/v1/jobs/999")
    assert missing.value.code == "not_found" and "999" in missing.value.message
    status = await running.client.get("/v1/status")
    assert [p["name"] for p in status["pools"]] == ["crateq", "promoonly", "harvest"]


def _tree_bytes(path: Path) -> list[bytes]:
    """The bytes of a finished download: the file, or every file of an extracted folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return sorted(f.read_bytes() for f in files)


async def test_harvest_favourites_arrive_through_the_zip_path_byte_identical(
    running: Running,
) -> None:
    sim = running.harvest
    wanted = sorted(sim.tracks)[:2]
    for track_id in wanted:
        sim.add_favourite(track_id)  # as the DJ did on the Harvest website
    result = await running.client.post("/v1/pools/harvest/sync", {"full": True})
    assert result["queue_new"] == 2
    jobs = await running.settle(2)
    assert {j["ref"] for j in jobs} == {f"harvest:{t}" for t in wanted}
    for job in jobs:
        assert job["state"] == "done", job["error"]
        path = Path(job["path"])
        assert path.is_relative_to(running.config.daemon.download_dir / "harvest")
        track_id = job["ref"].split(":", 1)[1]
        expected = sim.expected_entries("track", track_id, "mp3")
        assert _tree_bytes(path) == sorted(expected.values())
    # The mirror has Harvest's latest albums too, searchable beside CrateQ's catalog.
    found = await running.client.get("/v1/catalog", {"pool": "harvest", "limit": "1"})
    assert found["total"] > 0
