"""Run the download engine until every item of a spec is done: the process the crash tests kill.

    python tests/downloader/crash_driver.py SPEC.json

SPEC names the state database, the library, the drop folder, [daemon] overrides, the items (parts
with their source URLs on the test's servers) and which of them are requested directly; the rest
arrive as drop-folder files the test writes. The spec is read again while the driver runs, so the
test can queue new work as old work finishes. Prints "SUBMITTED <item>" once a direct request is
accepted, exits 0 and prints "ALL DONE" when every item is done, exits 2 when a job failed.
`DAEMON_FAILPOINT=name[:N]` makes the process SIGKILL itself at that point.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from pooldaemon.daemon_config import DaemonConfig
from pooldaemon.downloader.engine import Engine
from pooldaemon.drop.parse import SubmitOutcome
from pooldaemon.drop.watcher import DropWatcher
from pooldaemon.events import EventBus
from pooldaemon.log import configure_logging
from pooldaemon.models import DownloadPlan, PlanPart, QueueItem, Request, Source
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.pools.http import PoolHttp
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store.db import Store

#: Where the driver's [daemon] differs from the daemon's defaults: no speed floor or free-space
#: reserve (the tests' servers are slowed on purpose, their disks small), untagged files.
DRIVER_DEFAULTS: dict[str, Any] = {
    "speed_floor_bps": 0,
    "min_free_space_bytes": 0,
    "write_tags": False,
    "file_template": "{pool}/{artist} - {title}",
}


def driver_config(library: Path, overrides: dict[str, Any]) -> DaemonConfig:
    """The daemon's own [daemon] defaults, with the driver's and the spec's (attribute names)."""
    unknown = set(overrides) - set(DaemonConfig.model_fields)
    if unknown:
        raise SystemExit(f"spec: no [daemon] setting named {', '.join(sorted(unknown))}")
    base = DaemonConfig.model_validate({"download_dir": str(library)})
    return base.model_copy(update={**DRIVER_DEFAULTS, **overrides})


class SpecPool(PoolAdapter):
    """Plans straight from the spec: every item's parts and sources are fixed."""

    type_name = "testpool"
    capabilities = frozenset({Capability.OUTBOX})
    kinds = ("track", "album")

    def __init__(
        self, session: aiohttp.ClientSession, items: dict[str, Any], spec_path: Path | None = None
    ) -> None:
        super().__init__("testpool", None, PoolHttp(session, "testpool"))
        self.items = items
        self.spec_path = spec_path

    async def sign_in(self) -> None:
        return None

    async def plan(self, request: Request, known: QueueItem | None = None) -> DownloadPlan:
        assert request.item_id is not None
        if request.item_id not in self.items and self.spec_path is not None:
            # A drop file can name an item queued a moment ago: read the spec again.
            self.items = json.loads(self.spec_path.read_text())["items"]
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


async def submit_batch(engine: Engine, requests: list[Request], key: str) -> list[SubmitOutcome]:
    """The drop folder's submit: one idempotency key per request, as the daemon's wiring does."""
    outcomes = []
    for index, request in enumerate(requests):
        job, _ = await engine.submit(request, "drop", key=f"{key}#{index}")
        outcomes.append(SubmitOutcome(job=job["id"]))
    return outcomes


async def main(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    configure_logging("json", stream=sys.stderr)
    store = await Store.open(Path(spec["state"]))
    config = driver_config(Path(spec["library"]), spec["config"])
    try:
        async with aiohttp.ClientSession() as session:
            pool = SpecPool(session, spec["items"], spec_path)
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
            watcher = None
            if spec.get("drop_dir"):
                watcher = DropWatcher(
                    Path(spec["drop_dir"]),
                    store,
                    lambda requests, key: submit_batch(engine, requests, key),
                    lambda: {"testpool": SpecPool.kinds},
                    EventBus(),
                    force_polling=True,
                    rescan_interval_s=0.1,
                    stable_s=0.1,
                )
                await watcher.start()
            print("STARTED", flush=True)
            submitted: set[str] = set()
            seen_mtime = -1.0
            while True:
                mtime = spec_path.stat().st_mtime
                if mtime != seen_mtime:
                    # The test queues new work by replacing the spec (written whole, renamed).
                    seen_mtime = mtime
                    spec = json.loads(spec_path.read_text())
                    pool.items = spec["items"]
                for item_id in spec.get("requests", list(spec["items"])):
                    if item_id not in submitted:
                        kind = spec["items"][item_id]["kind"]
                        await engine.submit(Request("testpool", item_id, kind), "request")
                        submitted.add(item_id)
                        print("SUBMITTED", item_id, flush=True)
                counts = await store_jobs.job_counts(store)
                if counts["failed"] or counts["paused"]:
                    for job in await store_jobs.list_jobs(store):
                        print(job["id"], job["state"], job["error"], file=sys.stderr)
                    await engine.stop(2.0)
                    return 2
                done = {
                    row["item_id"]
                    for row in await store.fetchall("SELECT item_id FROM jobs WHERE state = 'done'")
                }
                if done >= set(spec["items"]):
                    break
                await asyncio.sleep(0.02)
            # A done job's work folder goes just after "done" is recorded: stopping the engine
            # at once could cut that short (a loaded run left one). Bounded: a leftover fails
            # the test's own check, not this wait.
            work = Path(spec["library"]) / ".pooldaemon"
            deadline = time.monotonic() + 30
            while any(work.glob("job-*")) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if watcher is not None:
                await watcher.stop()
            await engine.stop(2.0)
    finally:
        await store.close()
    print("ALL DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]))))
