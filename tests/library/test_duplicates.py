"""One good copy of each song across the three simulated pools (docs/interface.md §8,
docs/reliability.md R2): automatic fetches skip what the library or another pool's job holds,
`prefer_pools` decides between two pools, by-name requests download anyway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pooldaemon.control.client import ControlClient
from pooldaemon.daemon import Daemon
from pooldaemon.downloader import dupes
from pooldaemon.library_config import LibraryConfig
from pooldaemon.models import Request
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.harvest import HarvestSim
from pooldaemon.sim.promoonly import PromoOnlySim
from tests.conftest import started_daemon

UNFINISHED = {"queued", "resolving", "downloading", "verifying"}


@dataclass
class Pools:
    daemon: Daemon
    client: ControlClient
    crateq: CrateQSim
    harvest: HarvestSim
    promo: PromoOnlySim

    async def job(self, job_id: int) -> dict[str, Any]:
        return dict(await self.client.get(f"/v1/jobs/{job_id}"))

    async def settled(self, job_id: int) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                job = await self.job(job_id)
                if job["state"] not in UNFINISHED:
                    return job
                await asyncio.sleep(0.05)


@pytest.fixture
async def pools(tmp_path: Path) -> AsyncIterator[Pools]:
    async with (
        CrateQSim(records=200, seed="dupes") as crateq,
        HarvestSim() as harvest,
        PromoOnlySim(tracks=2) as promo,
        started_daemon(
            tmp_path,
            crateq.config_toml("crateq"),
            harvest.config_toml("harvest"),
            promo.config_toml("promoonly"),
            "",
            "[library]",
            'prefer_pools = ["harvest", "crateq", "promoonly"]',
        ) as (_, daemon, client),
    ):
        yield Pools(daemon, client, crateq, harvest, promo)


async def test_one_copy_of_a_song_across_pools(pools: Pools) -> None:
    client = pools.client
    await client.post("/v1/pools/harvest/sync", {"full": True})
    found = await client.get("/v1/catalog", {"pool": "harvest", "limit": "500"})
    theirs = next(t for t in found["items"] if t["artist"] and t["title"] and not t["video"])
    # CrateQ carries the same recording from another source, spelled its own way.
    ours = pools.crateq.catalog.ids()[0]
    pools.crateq.catalog.update(
        [ours],
        artist=f"{theirs['artist']} feat. Somebody",
        title=theirs["title"].upper(),
        tool=theirs["mix"] or "",
        advisory=theirs["advisory"] or "",
        video=False,
        audio=True,
        quality="",
    )
    await client.post("/v1/pools/crateq/sync", {"full": True})
    (mirrored,) = (await client.get("/v1/catalog", {"q": str(theirs["title"]), "pool": "crateq"}))[
        "items"
    ]
    assert (mirrored["song"], mirrored["version"]) == (theirs["song"], theirs["version"])

    # Two pools offer the song while the downloader waits: the preferred pool's copy is taken.
    await client.post("/v1/pause")
    submit = pools.daemon.submit_request
    first = await submit(Request("crateq", str(ours)), "rule", automatic=True)
    second = await submit(Request("harvest", theirs["id"]), "rule", automatic=True)
    assert first["state"] == "queued" and second["state"] == "queued"
    given_way = await pools.job(first["id"])
    assert given_way["state"] == "skipped"
    assert given_way["error"] == f"duplicate of {theirs['ref']} (prefer_pools)"
    # Asked again automatically while the preferred copy is on its way: skipped.
    third = await submit(Request("crateq", str(ours)), "rule", automatic=True)
    assert third["state"] == "skipped" and theirs["ref"] in third["error"]
    await client.post("/v1/resume")
    done = await pools.settled(second["id"])
    assert done["state"] == "done", done["error"]

    # The library holds it now: an automatic fetch from any pool ends skipped, with the path.
    fourth = await submit(Request("crateq", str(ours)), "rule", automatic=True)
    assert fourth["state"] == "skipped"
    assert fourth["error"] == f"duplicate of {done['path']}"
    # Asked for by name, it downloads anyway (duplicates = "skip").
    answer = await client.post("/v1/jobs", {"refs": [f"crateq:{ours}"]})
    by_name = await pools.settled(answer["accepted"][0]["job"])
    assert by_name["state"] == "done", by_name["error"]
    # So does a Promo Only track (no mirror there: nothing to compare).
    promo = await client.post("/v1/jobs", {"refs": [f"promoonly:{pools.promo.track_ids[1]}"]})
    assert (await pools.settled(promo["accepted"][0]["job"]))["state"] == "done"

    async def grouped() -> list[dict[str, Any]]:
        return list((await client.get("/v1/library/duplicates"))["items"])

    async with asyncio.timeout(20):
        while not (groups := await grouped()):
            await asyncio.sleep(0.05)
    (group,) = groups
    assert (group["song"], group["version"]) == (theirs["song"], theirs["version"])
    assert sorted(item["ref"] for item in group["items"]) == sorted(
        [theirs["ref"], f"crateq:{ours}"]
    )
    jobs = (await client.get("/v1/jobs", {"state": "skipped"}))["items"]
    assert len(jobs) == 3

    # skip_all: even what is asked for by name is not fetched twice.
    store = pools.daemon.store
    assert store is not None
    verdict = await dupes.check(
        store, LibraryConfig(duplicates="skip_all"), Request("crateq", str(ours)), automatic=False
    )
    assert verdict.skipped is not None and verdict.skipped.startswith("duplicate of ")
    plain = await dupes.check(
        store, LibraryConfig(duplicates="skip"), Request("crateq", str(ours)), automatic=False
    )
    assert plain.skipped is None
