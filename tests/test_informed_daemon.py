"""Notifications, hooks, schedule windows and gig mode in a whole daemon (docs/interface.md §10).

Everything real: the CrateQ simulator, the daemon with its socket, a local HTTP receiver that
Apprise posts to (`json://127.0.0.1:PORT/…`), hook scripts run as processes, a fake DJ app found
by its process name, `poolctl` run as a program.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pooldaemon.alerts import Timing
from pooldaemon.config import Config, load_config
from pooldaemon.control.client import ControlClient, DaemonRefused
from pooldaemon.daemon import Daemon
from pooldaemon.sim.crateq import CrateQSim

MIB = 1024 * 1024
# Not "rekordbox" itself: a test run elsewhere on the machine with the default [gig] apps would
# see it and pause its own downloads. Matching is case-insensitive, so the config says it in
# capitals and the process is named in lower case.
FAKE_APP = "rekordbox-pdtest"
UNFINISHED = {"queued", "resolving", "downloading", "verifying"}


class Receiver:
    """A local HTTP server that records what Apprise's `json://` posts; `hang` never answers.

    It runs on its own thread and event loop, so a daemon that blocked its loop on a delivery
    could not hide it by also stopping the receiver.
    """

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.messages: list[dict[str, Any]] = []
        self.open_requests = 0
        self.first_request_at: float | None = None  # time.monotonic(), the same on every thread
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.first_request_at is None:
            self.first_request_at = time.monotonic()
        self.open_requests += 1
        try:
            if self.hang:
                assert self._release is not None
                await self._release.wait()
            self.messages.append(body)
        finally:
            self.open_requests -= 1
        return web.json_response({})

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        assert self._release is not None and self._runner is not None
        self._release.set()
        await self._runner.cleanup()

    async def __aenter__(self) -> Receiver:
        self._thread.start()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._start(), self._loop))
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()

    @property
    def url(self) -> str:
        # rto: Apprise's read timeout (4 s by default) well past the test, so a hanging receiver
        # hangs the delivery for as long as the daemon lets it.
        return f"json://127.0.0.1:{self.port}/notify?rto=120"


async def until(check: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> float:
    """Wait for `check()`; the seconds it took (fails after `deadline_s`)."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > deadline_s:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


class Running:
    def __init__(self, daemon: Daemon, client: ControlClient, config: Config, sim: CrateQSim):
        self.daemon = daemon
        self.client = client
        self.config = config
        self.sim = sim

    async def job(self, job_id: int) -> dict[str, Any]:
        return dict(await self.client.get(f"/v1/jobs/{job_id}"))

    async def get(self, *refs: str) -> list[int]:
        answer = await self.client.post("/v1/jobs", {"refs": list(refs)})
        assert not answer["rejected"], answer
        return [int(item["job"]) for item in answer["accepted"]]

    async def settle(self, ids: list[int], deadline_s: float = 60) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []

        async def finished() -> bool:
            nonlocal jobs
            jobs = [await self.job(i) for i in ids]
            return not any(j["state"] in UNFINISHED for j in jobs)

        await until(finished, deadline_s, "jobs finished")
        return jobs

    async def poolctl(self, *args: str) -> str:
        """Run the real `poolctl` program against this daemon; its stdout."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pooldaemon.cli.poolctl",
            "--socket",
            str(self.config.daemon.socket_path),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    sim: CrateQSim,
    extra: str = "",
    *,
    daemon_lines: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timing: Timing | None = None,
) -> AsyncIterator[Running]:
    sock_dir = Path(tempfile.mkdtemp(prefix="pdinf-"))
    root = tmp_path / "d"
    config_path = root / "config.toml"
    root.mkdir()
    (root / "library").mkdir()
    config_path.write_text(
        "\n".join(
            [
                "[daemon]",
                f"download_dir = {json.dumps(str(root / 'library'))}",
                f"drop_dir = {json.dumps(str(root / 'drop'))}",
                f"state_dir = {json.dumps(str(root / 'state'))}",
                f"socket_path = {json.dumps(str(sock_dir / 'c.sock'))}",
                'chunk_size = "256 KiB"',
                "write_tags = false",
                *daemon_lines,
                "",
                sim.config_toml("crateq"),
                extra,
            ]
        )
    )
    config_path.chmod(0o600)
    config = load_config(config_path, env={})
    daemon = Daemon(config, env=env or {}, alert_timing=timing)
    await daemon.start()
    try:
        async with ControlClient(config.daemon.socket_path) as client:
            yield Running(daemon, client, config, sim)
    finally:
        await daemon.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


async def test_gig_mode_pauses_a_download_while_a_dj_app_runs(tmp_path: Path) -> None:
    app_path = tmp_path / FAKE_APP
    shutil.copy("/bin/sleep", app_path)
    async with CrateQSim(records=20, seed="gig") as sim:
        media_id = sim.catalog.ids()[0]
        sim.set_media_size(media_id, 24 * MIB)
        gig = f'[gig]\napps = ["{FAKE_APP.upper()}"]\naction = "pause"\n'
        async with running(tmp_path, sim, gig, daemon_lines=('bandwidth_limit = "2 MiB"',)) as d:
            (job_id,) = await d.get(f"crateq:{media_id}")

            async def has_bytes() -> bool:
                return (await d.job(job_id))["bytes_done"] >= MIB

            await until(has_bytes, 30, "the download started")
            app = await asyncio.create_subprocess_exec(app_path, "600")
            try:
                started = time.monotonic()

                async def gig_on() -> bool:
                    return (await d.client.get("/v1/status"))["gig"] is not None

                async def held() -> bool:
                    return (await d.job(job_id))["state"] == "queued"

                # docs/interface.md §10: gig mode starts within 5 s of the app starting; the
                # transfers then checkpoint and go back to the queue (a second or two, more on
                # a loaded machine: that wait carries no number of its own).
                await until(gig_on, 5, "gig mode on")
                assert time.monotonic() - started < 5
                await until(held, 15, "the transfer stopped")
                status = json.loads(await d.poolctl("--json", "status"))
                assert status["gig"]["app"] == FAKE_APP.upper()
                assert status["gig"]["action"] == "pause"
                assert status["schedule"]["paused"] is True
                job = await d.job(job_id)
                assert job["waiting"] == f"gig: {FAKE_APP.upper()}"
                frozen = job["bytes_done"]
                assert 0 < frozen < 24 * MIB
                shown = await d.poolctl("status")
                assert f"downloads held: gig: {FAKE_APP.upper()}" in shown
                # `poolctl resume` is the user's: it does not override gig mode.
                await d.poolctl("resume")
                again = await d.job(job_id)
                assert again["state"] == "queued" and again["bytes_done"] == frozen
            finally:
                app.kill()
                await app.wait()
            ended = time.monotonic()

            async def gig_off() -> bool:
                return (await d.client.get("/v1/status"))["gig"] is None

            async def moving() -> bool:
                return (await d.job(job_id))["bytes_done"] > frozen

            # Gig mode ends within 5 s of the app quitting; the job then starts again from its
            # checkpoint (a new link and connection first: no number is promised for that).
            await until(gig_off, 5, "gig mode off")
            assert time.monotonic() - ended < 5
            await until(moving, 30, "the download resumed")
            (job,) = await d.settle([job_id])
        assert job["state"] == "done", job["error"]
        assert job["attempts"] <= 1  # the pause cost no attempt
        assert sha256(job["path"]) == sim.sha256(media_id)


async def test_a_window_without_downloads_holds_jobs_and_the_users_resume_does_not_start_them(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    window = (
        f'[[schedule]]\nfrom = "{start:%H:%M}"\nto = "{end:%H:%M}"\ndownloads = false\n'
        "[gig]\napps = []\n"
    )
    label = f"schedule every day {start:%H:%M}-{end:%H:%M}"
    async with CrateQSim(records=20, seed="window") as sim:
        media_id = sim.catalog.ids()[1]
        async with running(tmp_path, sim, window, env={"TZ": "UTC"}) as d:
            status = await d.client.get("/v1/status")
            assert status["schedule"]["paused"] is True
            assert status["schedule"]["window"] == label[len("schedule ") :]
            assert status["gig"] is None
            (job_id,) = await d.get(f"crateq:{media_id}")
            assert (await d.job(job_id))["waiting"] == label
            assert f"downloads held: {label}" in await d.poolctl("status")
            await d.poolctl("pause")
            await d.poolctl("resume")
            # A second of the engine's scheduler passes after the resume: the job still waits.
            watch_until = time.monotonic() + 1.0
            while time.monotonic() < watch_until:
                job = await d.job(job_id)
                assert job["state"] == "queued" and job["bytes_done"] == 0, job
                await asyncio.sleep(0.05)
            assert "waiting: " + label in await d.poolctl("--wide", "jobs")
            # The window goes (as a config reload would take it away): the job runs.
            governed = d.daemon.components.governed
            assert governed is not None
            governed.governor.reconfigure(bandwidth_limit_bps=0, schedule=(), gig=d.config.gig)
            (job,) = await d.settle([job_id])
        assert job["state"] == "done", job["error"]
        assert sha256(job["path"]) == sim.sha256(media_id)


HOOK = """#!{python}
import json, os, sys
seen = {{k: v for k, v in os.environ.items() if k.startswith("POOLDAEMON_")}}
with open(os.path.join({out!r}, seen["POOLDAEMON_EVENT"] + "-" + seen["POOLDAEMON_JOB"]), "w") as f:
    json.dump(seen, f)
"""


async def test_notifications_and_hooks_from_a_real_run(tmp_path: Path) -> None:
    out = tmp_path / "hooks"
    out.mkdir()
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK.format(python=sys.executable, out=str(out)))
    hook.chmod(0o755)
    async with Receiver() as receiver, CrateQSim(records=20, seed="informed") as sim:
        ids = sim.catalog.ids()[:2]
        missing = max(sim.catalog.ids()) + 1000
        extra = (
            f'[notify]\nurls = ["{receiver.url}"]\ndesktop = false\n'
            f'[hooks]\non_done = "{hook}"\non_failed = "{hook}"\n'
            "[gig]\napps = []\n"
        )
        timing = Timing(batch_s=3.0, retry_s=0.2, send_timeout_s=10)
        async with running(tmp_path, sim, extra, timing=timing) as d:
            job_ids = await d.get(*(f"crateq:{i}" for i in ids), f"crateq:{missing}")
            jobs = await d.settle(job_ids)

            async def told() -> bool:
                return len(receiver.messages) >= 2

            await until(told, 20, "two notifications")

            async def hooks_ran() -> bool:
                return len(list(out.iterdir())) >= 3

            await until(hooks_ran, 20, "three hooks")
        done = [j for j in jobs if j["state"] == "done"]
        (failed,) = [j for j in jobs if j["state"] == "failed"]
        assert len(done) == 2
        assert len(receiver.messages) == 2  # the two tracks in one batch, the failure alone
        by_title = {m["title"]: m["message"] for m in receiver.messages}
        names = []
        for media_id in ids:
            record = sim.catalog.get(media_id)
            assert record is not None
            names.append(f"{record['artist']} – {record['title']}")
        batch = by_title["pooldaemon: 2 new tracks"]
        assert batch.startswith("2 new tracks: ")
        assert sorted(batch.removeprefix("2 new tracks: ").split(", ")) == sorted(names)
        failure = by_title["pooldaemon: download failed"]
        assert f"(crateq:{missing}): " in failure and failed["error"] in failure
        seen = {p.name: json.loads(p.read_text()) for p in out.iterdir()}
        for job in done:
            env = seen[f"done-{job['id']}"]
            media_id = int(job["ref"].split(":")[1])
            record = sim.catalog.get(media_id)
            assert record is not None
            assert env == {
                "POOLDAEMON_EVENT": "done",
                "POOLDAEMON_REF": f"crateq:{media_id}",
                "POOLDAEMON_POOL": "crateq",
                "POOLDAEMON_JOB": str(job["id"]),
                "POOLDAEMON_PATH": job["path"],
                "POOLDAEMON_ARTIST": record["artist"],
                "POOLDAEMON_TITLE": record["title"],
                "POOLDAEMON_ERROR": "",
            }
            assert Path(env["POOLDAEMON_PATH"]).is_file()
        env = seen[f"failed-{failed['id']}"]
        assert env["POOLDAEMON_REF"] == f"crateq:{missing}"
        assert env["POOLDAEMON_ERROR"] == failed["error"] and env["POOLDAEMON_PATH"] == ""


async def test_a_hanging_notification_service_and_hook_do_not_slow_downloads(
    tmp_path: Path,
) -> None:
    hook = tmp_path / "hang.sh"
    hook.write_text("#!/bin/sh\nexec /bin/sleep 600\n")
    hook.chmod(0o755)
    async with Receiver(hang=True) as receiver, CrateQSim(records=20, seed="hang") as sim:
        ids = sim.catalog.ids()[:4]
        for media_id in ids:
            sim.set_media_size(media_id, 4 * MIB)
        missing = max(sim.catalog.ids()) + 1000
        extra = (
            f'[notify]\nurls = ["{receiver.url}"]\ndesktop = false\n'
            f'[hooks]\non_done = "{hook}"\non_failed = "{hook}"\n'
            "[gig]\napps = []\n"
        )
        limit = ('bandwidth_limit = "4 MiB"',)
        async with running(tmp_path, sim, extra, daemon_lines=limit) as d:
            started = time.monotonic()
            # The failure is told at once, while the four downloads take about 4 s at the limit.
            failing, *job_ids = await d.get(f"crateq:{missing}", *(f"crateq:{i}" for i in ids))
            jobs = await d.settle(job_ids, deadline_s=60)
            took = time.monotonic() - started
            (failed,) = await d.settle([failing])
            # The delivery hung from before the downloads ended until after: they went on at
            # the limit's speed. A delivery holding up the event loop would have stopped them
            # for Apprise's timeout (a minute).
            assert receiver.first_request_at is not None
            assert receiver.first_request_at - started < took
            assert receiver.open_requests > 0
            assert took < 15, took
            assert receiver.messages == []
        assert failed["state"] == "failed"
        assert [j["state"] for j in jobs] == ["done"] * 4
        assert all(j["attempts"] <= 1 for j in jobs)


async def test_a_refused_account_is_told_once(tmp_path: Path) -> None:
    async with Receiver() as receiver, CrateQSim(records=20, seed="account") as sim:
        extra = f'[notify]\nurls = ["{receiver.url}"]\ndesktop = false\n[gig]\napps = []\n'
        timing = Timing(retry_s=0.2, send_timeout_s=10)
        async with running(tmp_path, sim, extra, timing=timing) as d:
            sim.account_status = "suspended"
            sim.account_msg = "Payment declined."
            for _ in range(2):  # the same refusal twice: one message
                with pytest.raises(DaemonRefused):
                    await d.client.post("/v1/pools/crateq/sync", {"full": False})

            async def told() -> bool:
                return len(receiver.messages) >= 1

            await until(told, 20, "the account notification")
            status = await d.client.get("/v1/status")
        assert status["pools"][0]["blocked_reason"] == (
            "crateq: account is suspended: Payment declined."
        )
        assert [(m["title"], m["message"]) for m in receiver.messages] == [
            (
                "pooldaemon: crateq needs attention",
                "crateq: account is suspended: Payment declined.",
            )
        ]
