"""Run the download engine until every item of a spec is done: the process the crash tests kill.

    python tests/downloader/crash_driver.py SPEC.json

SPEC names the state database, the library, [daemon] overrides and the items (parts with their
source URLs on the test's servers). Exit 0 and "ALL DONE" when every job is done; exit 2 when a
job failed. `DAEMON_FAILPOINT=name[:N]` makes the process SIGKILL itself at that point.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pooldaemon.downloader.engine import Engine
from pooldaemon.events import EventBus
from pooldaemon.log import configure_logging
from pooldaemon.models import DownloadPlan, PlanPart, QueueItem, Request, Source
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.pools.http import PoolHttp
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store.db import Store


@dataclass
class DriverConfig:
    """The [daemon] settings the engine reads (pydantic stays out: a quicker restart)."""

    download_dir: Path
    chunk_size_bytes: int = 8 << 20
    connections_per_download: int = 4
    max_active_downloads: int = 3
    bandwidth_limit_bps: int = 0
    stall_timeout_s: float = 30.0
    speed_floor_bps: int = 0
    speed_grace_s: float = 20.0
    min_free_space_bytes: int = 0
    max_attempts: int = 5
    write_tags: bool = False
    file_template: str = "{pool}/{artist} - {title}"
    max_extract_size_bytes: int = 8 << 30
    max_extract_entries: int = 10_000
    max_extract_ratio: float = 100.0


class SpecPool(PoolAdapter):
    """Plans straight from the spec: every item's parts and sources are fixed."""

    type_name = "testpool"
    capabilities = frozenset({Capability.OUTBOX})
    kinds = ("track", "album")

    def __init__(self, session: aiohttp.ClientSession, items: dict[str, Any]) -> None:
        super().__init__("testpool", None, PoolHttp(session, "testpool"))
        self.items = items

    async def sign_in(self) -> None:
        return None

    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        assert request.item_id is not None
        spec = self.items[request.item_id]
        return DownloadPlan(
            pool=self.name,
            item_id=request.item_id,
            kind=request.kind,
            format=spec["parts"][0]["extension"],
            parts=[
                PlanPart(
                    key=p["key"],
                    sources=[Source(url, name) for name, url in p["sources"]],
                    expected_size=p["size"],
                    extension=p["extension"],
                )
                for p in spec["parts"]
            ],
            meta=spec["meta"],
            archive=spec.get("archive", False),
            name=spec.get("name"),
        )


async def main(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    configure_logging("json", stream=sys.stderr)
    store = await Store.open(Path(spec["state"]))
    config = DriverConfig(download_dir=Path(spec["library"]), **spec["config"])
    try:
        async with aiohttp.ClientSession() as session:
            pool = SpecPool(session, spec["items"])
            engine = Engine(
                store,
                session,
                {"testpool": pool},
                config,  # type: ignore[arg-type]
                EventBus(),
                retry_backoff_s=0.05,
                retry_backoff_max_s=0.2,
                server_cooldown_s=0.05,
            )
            await engine.start()
            print("STARTED", flush=True)
            for item_id, item in spec["items"].items():
                await engine.submit(Request("testpool", item_id, item["kind"]), "request")
            while True:
                counts = await store_jobs.job_counts(store)
                if counts["failed"] or counts["paused"]:
                    for job in await store_jobs.list_jobs(store):
                        print(job["id"], job["state"], job["error"], file=sys.stderr)
                    await engine.stop(2.0)
                    return 2
                if counts["done"] == len(spec["items"]):
                    break
                await asyncio.sleep(0.02)
            await engine.stop(2.0)
    finally:
        await store.close()
    print("ALL DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]))))
