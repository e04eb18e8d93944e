"""Rules through the control socket and `poolctl` (docs/interface.md §7): the real daemon in this
process, the simulated CrateQ on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import short_dir

from pooldaemon.cli.poolctl import main as poolctl
from pooldaemon.config import load_config
from pooldaemon.control.client import ControlClient, DaemonRefused
from pooldaemon.daemon import Daemon
from pooldaemon.sim.crateq import CrateQSim

RULES = """
[[rules]]
name = "club"
mix = ["Club"]
folder = "Rules/{rule}"

[[rules]]
name = "later"
enabled = false
"""


class Running:
    def __init__(self, daemon: Daemon, sim: CrateQSim, socket_path: Path) -> None:
        self.daemon = daemon
        self.sim = sim
        self.socket_path = socket_path


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    sock = short_dir()
    async with CrateQSim(records=400, seed="rules-api") as sim:
        text = (
            "[daemon]\n"
            f'download_dir = "{tmp_path / "library"}"\n'
            f'state_dir = "{tmp_path / "state"}"\n'
            f'socket_path = "{sock / "control.sock"}"\n\n' + sim.config_toml("crateq") + RULES
        )
        path = tmp_path / "config.toml"
        path.write_text(text)
        path.chmod(0o600)
        daemon = Daemon(load_config(path, env={}), env={})
        await daemon.start()
        await daemon.pause_all()  # jobs stay queued: the test reads them
        try:
            yield Running(daemon, sim, sock / "control.sock")
        finally:
            await daemon.stop()
            shutil.rmtree(sock, ignore_errors=True)


async def ctl(running: Running, *args: str) -> Result:
    """`poolctl` as a user runs it (it has its own event loop: a thread of its own)."""
    argv = ["--socket", str(running.socket_path), *args]
    return await asyncio.to_thread(CliRunner().invoke, poolctl, argv)


def document(result: Result) -> Any:
    """poolctl's JSON answer (this process's log lines share its stdout here)."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("{", "[", "{}"))
    return json.loads("\n".join(lines[start:]))


async def test_rules_list_preview_and_backfill_over_the_socket(running: Running) -> None:
    async with ControlClient(running.socket_path) as client:
        await client.post("/v1/pools/crateq/sync", {})
        listed = await client.get("/v1/rules")
        assert listed == {
            "items": [
                {
                    "name": "club",
                    "enabled": True,
                    "matched": 0,
                    "queued": 0,
                    "skipped": 0,
                    "waiting": 0,
                    "last_match": None,
                },
                {
                    "name": "later",
                    "enabled": False,
                    "matched": 0,
                    "queued": 0,
                    "skipped": 0,
                    "waiting": 0,
                    "last_match": None,
                },
            ]
        }
        clubs = sorted(
            (rec["date"], rec["mediaId"])
            for rec in running.sim.catalog.records()
            if rec["tool"] == "Club"
        )
        preview = await client.get("/v1/rules/club/preview", {"limit": "3", "offset": "1"})
        assert preview["total"] == len(clubs)
        assert [item["id"] for item in preview["items"]] == [
            str(media_id) for _, media_id in clubs[::-1][1:4]
        ]
        assert all(item["in_library"] is False for item in preview["items"])
        assert {"song", "version"} <= set(preview["items"][0])
        assert (await client.get("/v1/jobs"))["items"] == []  # a preview downloads nothing
        ran = await client.post("/v1/rules/club/run", {"backfill": True})
        # Skipped: another copy of a song+version already taken (the generator repeats a few).
        assert set(ran) == {"queued", "skipped"} and ran["queued"] + ran["skipped"] == len(clubs)
        assert ran["skipped"] <= 2
        jobs = (await client.get("/v1/jobs"))["items"]
        assert len(jobs) == ran["queued"]
        assert {job["ref"] for job in jobs} <= {f"crateq:{i}" for _, i in clubs}
        assert await client.post("/v1/rules/club/run", {"backfill": True}) == {
            "queued": 0,
            "skipped": 0,
        }
        for path, body, code, message in [
            ("/v1/rules/nope/run", {"backfill": True}, "not_found", "no rule 'nope'"),
            ("/v1/rules/club/run", {}, "bad_request", 'give "backfill": true'),
            ("/v1/rules/club/run", {"backfill": 1}, "bad_request", '"backfill" must be'),
            ("/v1/rules/later/run", {"backfill": True}, "conflict", "is disabled"),
        ]:
            with pytest.raises(DaemonRefused) as info:
                await client.post(path, body)
            assert info.value.code == code and message in info.value.message
        with pytest.raises(DaemonRefused) as info:
            await client.get("/v1/rules/club/preview", {"limit": "0"})
        assert "limit: must be between 1 and 500" in info.value.message


async def test_poolctl_rules_commands(running: Running) -> None:
    async with ControlClient(running.socket_path) as client:
        await client.post("/v1/pools/crateq/sync", {})
    shown = await ctl(running, "rules")
    assert shown.exit_code == 0, shown.output
    assert "club" in shown.output and "later" in shown.output
    as_json = await ctl(running, "--json", "rules")
    assert document(as_json)["items"][0]["name"] == "club"
    tested = await ctl(running, "--json", "rules", "test", "club", "--limit", "2")
    answer: dict[str, Any] = document(tested)
    assert tested.exit_code == 0 and len(answer["items"]) == 2 and answer["total"] > 2
    table = await ctl(running, "rules", "test", "club", "--limit", "2")
    assert f"2 of {answer['total']}" in table.output
    since = max(rec["date"] for rec in running.sim.catalog.records())
    ran = await ctl(running, "--json", "rules", "run", "club", "--backfill", "--since", since)
    assert ran.exit_code == 0, ran.output
    want = sum(
        1 for rec in running.sim.catalog.records() if rec["tool"] == "Club" and rec["date"] >= since
    )
    assert sum(document(ran).values()) == want
    usage = await ctl(running, "rules", "run", "club")
    assert usage.exit_code == 2 and "--backfill" in usage.output
    bad_date = await ctl(running, "rules", "run", "club", "--backfill", "--since", "May")
    assert bad_date.exit_code == 2 and "YYYY-MM-DD" in bad_date.output
    missing = await ctl(running, "rules", "test", "nope")
    assert missing.exit_code == 1 and "no rule 'nope'" in missing.output


async def test_a_rules_file_lands_in_its_folder(running: Running, tmp_path: Path) -> None:
    async with ControlClient(running.socket_path) as client:
        await client.post("/v1/pools/crateq/sync", {})  # the back catalog: nothing
        running.sim.advance(3600)
        (new,) = running.sim.catalog.add(1, tool="Club", video=False, quality="")
        await client.post("/v1/pools/crateq/sync", {})
        (job,) = (await client.get("/v1/jobs"))["items"]
        assert job["ref"] == f"crateq:{new}"
        await client.post("/v1/resume")
        deadline = asyncio.get_running_loop().time() + 30
        while job["state"] != "done":
            assert job["state"] not in ("failed", "cancelled"), job
            assert asyncio.get_running_loop().time() < deadline, job
            await asyncio.sleep(0.05)
            job = await client.get(f"/v1/jobs/{job['id']}")
    path = Path(job["path"])
    assert path.is_file()
    assert path.relative_to(tmp_path / "library").parts[:3] == ("Rules", "club", "crateq")
