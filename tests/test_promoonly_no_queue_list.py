"""Promo Only against a pool without the assumed queue list and remove endpoints: requested
tracks still download through the documented flow, the queue GET is never repeated (even across
a SIGKILL right after it), `status` and the log say once that the website's queue cannot be read,
and `poolctl sync` exits 0 (docs/interface.md §6, docs/reliability.md C6)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from pooldaemon.control.client import ControlClient
from pooldaemon.errors import Conflict, Unsupported
from pooldaemon.events import EventBus
from pooldaemon.models import Request
from pooldaemon.pools.http import PoolHttp
from pooldaemon.pools.promoonly import PromoOnlyAdapter
from pooldaemon.sim.promoonly import PromoOnlySim
from pooldaemon.store.db import Store
from pooldaemon.sync import PoolSync
from tests.conftest import ConfigFactory, DaemonFactory
from tests.pools.test_promoonly import make_config

UNFINISHED = {"queued", "resolving", "downloading", "verifying"}


@pytest.fixture
async def sim() -> AsyncIterator[PromoOnlySim]:
    async with PromoOnlySim(queue_list=False) as running:
        yield running


async def _no_sleep(_: float) -> None:
    return None


async def _synced_adapter(
    sim: PromoOnlySim, session: aiohttp.ClientSession, store: Store
) -> tuple[PromoOnlyAdapter, PoolSync]:
    """An adapter wired as the daemon wires it: its state saved through a PoolSync."""
    http = PoolHttp(session, "promoonly", timeout_s=10.0, attempts=3, sleep=_no_sleep)
    adapter = PromoOnlyAdapter("promoonly", make_config(sim), http, clock=sim.clock)
    sync = PoolSync("promoonly", adapter, store, EventBus(), auto_download=False)
    await sync.restore()
    return adapter, sync


async def test_the_simulator_switch_turns_both_assumed_endpoints_off(sim: PromoOnlySim) -> None:
    track = sim.track_ids[0]
    sim.add_to_queue([track])
    async with aiohttp.ClientSession() as session:
        for path in ("/download/queue", f"/download/remove/{track}"):
            async with session.get(sim.base_url + path) as resp:
                assert resp.status == 404, path
        sim.queue_list = True
        async with session.get(sim.base_url + "/download/queue") as resp:
            assert resp.status == 401  # exists again: it wants a token
    assert sim.queued(track) == 1


async def test_sync_succeeds_and_says_once_that_the_queue_cannot_be_read(
    sim: PromoOnlySim, tmp_path: Path
) -> None:
    store = await Store.open(tmp_path / "state.db")
    try:
        async with aiohttp.ClientSession() as session:
            adapter, sync = await _synced_adapter(sim, session, store)
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    assert await sync.sync() == {
                        "added": 0,
                        "updated": 0,
                        "removed": 0,
                        "queue_new": 0,
                    }
            said = [entry for entry in logs if entry["event"] == "promoonly.queue_unreadable"]
            assert len(said) == 1 and said[0]["log_level"] == "warning"
            (notice,) = adapter.notices()
            assert "cannot be read" in notice and "404" in notice
            assert (await sync.queue())["notice"] == notice
            with pytest.raises(Unsupported, match="remove 374210 on the website"):
                await adapter.queue_remove("374210")
            # Remembered across a restart: a new adapter over the same state says it at once,
            # and logs nothing new.
            second, _ = await _synced_adapter(sim, session, store)
            with structlog.testing.capture_logs() as logs:
                await second.remote_queue()
            assert second.notices() == [notice]
            assert not [e for e in logs if e["event"] == "promoonly.queue_unreadable"]
            assert sim.log.calls["404"] >= 5  # it is asked each time, said once
    finally:
        await store.close()


async def test_a_plan_queues_once_and_a_new_adapter_on_the_same_state_reuses_the_answer(
    sim: PromoOnlySim, tmp_path: Path
) -> None:
    track = str(sim.track_ids[1])
    store = await Store.open(tmp_path / "state.db")
    try:
        async with aiohttp.ClientSession() as session:
            adapter, _ = await _synced_adapter(sim, session, store)
            first = await adapter.plan(Request("promoonly", track))
            assert sim.queue_calls[int(track)] == 1
            again = await adapter.plan(Request("promoonly", track))
            renewed = await adapter.renew_plan(first)
            # As after a crash: a fresh adapter reads only what the store kept.
            reborn, _ = await _synced_adapter(sim, session, store)
            after = await reborn.plan(Request("promoonly", track))
        assert sim.queue_calls[int(track)] == 1 and sim.queued(track) == 1
        tokens = {p.context["dl_token"] for p in (first, again, renewed, after)}
        assert tokens == {sim.queue_entries()[0]["dl_token"]}
    finally:
        await store.close()


async def test_a_queue_get_whose_answer_was_lost_is_not_sent_again_unless_the_user_asks(
    sim: PromoOnlySim, tmp_path: Path
) -> None:
    track = str(sim.track_ids[2])
    store = await Store.open(tmp_path / "state.db")
    try:
        async with aiohttp.ClientSession() as session:
            adapter, _ = await _synced_adapter(sim, session, store)
            # The pool applies the GET, then the connection drops before the answer.
            sim.faults.drop(None, match="queue", count=1, after_apply=True)
            with pytest.raises(Exception) as lost:
                await adapter.plan(Request("promoonly", track))
            assert sim.queue_calls[int(track)] == 1
            reborn, _ = await _synced_adapter(sim, session, store)
            with pytest.raises(Conflict) as refused:
                await reborn.plan(Request("promoonly", track))
            assert "was lost" in refused.value.message
            assert f"poolctl queue promoonly add {track}" in refused.value.message
            assert sim.queue_calls[int(track)] == 1, lost.value
            # The user's own word asks again; the job's retry then uses that answer.
            await reborn.queue_add(track)
            plan = await reborn.plan(Request("promoonly", track))
        assert sim.queue_calls[int(track)] == 2
        assert plan.context["dl_token"] == sim.queue_entries()[-1]["dl_token"]
    finally:
        await store.close()


# -- the real daemon ------------------------------------------------------------------------------


async def _poolctl(socket_path: Path, *args: str) -> tuple[int, str]:
    """A real `poolctl` process (async: the simulator answers from this event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pooldaemon.cli.poolctl",
        "--socket",
        str(socket_path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _job(client: ControlClient, job_id: int) -> dict[str, Any]:
    return dict(await client.get(f"/v1/jobs/{job_id}"))


async def test_a_sigkill_right_after_the_queue_get_neither_repeats_it_nor_loses_the_track(
    sim: PromoOnlySim, config_factory: ConfigFactory, daemon_factory: DaemonFactory
) -> None:
    track = sim.track_ids[3]
    config = config_factory(sim.config_toml("promoonly"), write_tags=False)
    daemon = daemon_factory(config)
    # The next call after the queue GET (the server list) hangs: the daemon is killed there.
    sim.faults.stall(None, match="server")
    async with ControlClient(daemon.socket_path) as client:
        accepted = await client.post("/v1/jobs", {"refs": [f"promoonly:{track}"]})
        job_id = accepted["accepted"][0]["job"]
        async with asyncio.timeout(20):
            while not sim.log.for_endpoint("server"):
                await asyncio.sleep(0.02)
    assert sim.queue_calls[track] == 1
    daemon.send(signal.SIGKILL)
    assert daemon.wait() == -signal.SIGKILL
    sim.faults.clear()

    again = daemon_factory(config)
    async with ControlClient(again.socket_path) as client:
        async with asyncio.timeout(30):
            while (job := await _job(client, job_id))["state"] in UNFINISHED:
                await asyncio.sleep(0.05)
        assert job["state"] == "done", job["error"]
        expected = hashlib.sha256(b"".join(sim.media.iter_sync(str(track)))).hexdigest()
        assert hashlib.sha256(Path(job["path"]).read_bytes()).hexdigest() == expected
        await asyncio.wait_for(sim.wait_for_successes(1), 20)
        assert sim.successes[0]["trackid"] == track
        assert sim.queue_calls[track] == 1  # never repeated

        code, out = await _poolctl(again.socket_path, "sync", "promoonly")
        assert code == 0, out
        status = await client.get("/v1/status")
        (pool,) = status["pools"]
        assert "cannot be read" in pool["notice"] and pool["last_error"] is None
        code, out = await _poolctl(again.socket_path, "--json", "status")
        assert code == 0 and "cannot be read" in json.loads(out)["pools"][0]["notice"]
    said = [
        line
        for line in (daemon.stderr() + again.stderr()).splitlines()
        if "promoonly.queue_unreadable" in line
    ]
    assert len(said) == 1, said
