"""SIGTERM of a real `pooldaemon run` with three downloads in flight: it exits 0 within 10 s, and
a new process finishes the downloads byte-exact (docs/reliability.md C1, docs/interface.md §1)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from pathlib import Path
from typing import Any

from conftest import ConfigFactory, DaemonFactory

from pooldaemon.control.client import ControlClient
from pooldaemon.sim.crateq import CrateQSim

MIB = 1024 * 1024
SIZE = 6 * MIB + 123
#: Per answer: each download takes several seconds, so all three are mid-transfer at once.
RATE = 256 * 1024


async def jobs_of(socket_path: Path) -> list[dict[str, Any]]:
    async with ControlClient(socket_path) as client:
        return list((await client.get("/v1/jobs"))["items"])


async def test_sigterm_with_three_downloads_in_flight_exits_0_and_a_restart_finishes_them(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory
) -> None:
    async with CrateQSim(records=40, seed="sigterm") as crateq:
        wanted = crateq.catalog.ids()[:3]
        for media_id in wanted:
            crateq.set_media_size(media_id, SIZE)
        crateq.faults.throttle_bps = RATE
        config = config_factory(
            crateq.config_toml("crateq"),
            chunk_size="1 MiB",
            max_active_downloads=3,
            write_tags=False,
        )
        # The daemon runs in threads' waits: this loop keeps serving the simulator meanwhile.
        first = await asyncio.to_thread(daemon_factory, config)
        async with ControlClient(first.socket_path) as client:
            await client.post("/v1/pools/crateq/sync", {"full": True})
            accepted = await client.post("/v1/jobs", {"refs": [f"crateq:{i}" for i in wanted]})
        assert len(accepted["accepted"]) == 3, accepted
        async with asyncio.timeout(60):
            while True:
                jobs = await jobs_of(first.socket_path)
                moving = [j for j in jobs if j["state"] == "downloading" and j["bytes_done"] > 0]
                if len(moving) == 3:
                    break
                assert not [j for j in jobs if j["state"] in ("done", "failed")], jobs
                await asyncio.sleep(0.05)
        sent = time.monotonic()
        first.send(signal.SIGTERM)
        code = await asyncio.to_thread(first.wait, 15.0)
        took = time.monotonic() - sent
        assert code == 0, first.stderr()[-3000:]
        assert took < 10.0, took
        # Nothing unfinished at a final path.
        library = config.parent / "library"
        assert not [p for p in (library / "crateq").rglob("*") if p.is_file()]

        crateq.faults.throttle_bps = None
        second = await asyncio.to_thread(daemon_factory, config)
        async with asyncio.timeout(60):
            while True:
                jobs = await jobs_of(second.socket_path)
                if len(jobs) == 3 and all(j["state"] == "done" for j in jobs):
                    break
                assert not [j for j in jobs if j["state"] == "failed"], jobs
                await asyncio.sleep(0.05)
        for job in jobs:
            media_id = int(job["ref"].split(":")[1])
            data = Path(job["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == crateq.sha256(media_id), job
        assert await asyncio.to_thread(second.stop) == 0
