"""poolctl against a real `pooldaemon run` subprocess: tables, --json, exit codes (docs/interface.md
§1)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import (
    OFFLINE_CRATEQ,
    ConfigFactory,
    DaemonFactory,
    DaemonProcess,
    clean_env,
    short_dir,
)

from pooldaemon.cli.poolctl import main as poolctl
from pooldaemon.cli.render import WatchView, status_view
from pooldaemon.models import JobState, Request
from pooldaemon.store import Store
from pooldaemon.store import jobs as store_jobs

HOW_TO_START = "Start it with `systemctl --user start pooldaemon` or `pooldaemon run`."
POOLS = (
    OFFLINE_CRATEQ
    + """
[pools.promo]
type = "promoonly"
enabled = false
email = "dj@example.com"
password = "p-654321"
"""
)


def _seed_jobs(state_dir: Path) -> None:
    """Two jobs written by a second connection, as the engine will write them."""

    async def go() -> None:
        store = await Store.open(state_dir / "state.db")
        try:
            job, _ = await store_jobs.create_job(
                store, Request("crateq", "570291"), origin="test", title="Track", artist="Artist"
            )
            await store_jobs.create_job(store, Request("crateq", "570292"), origin="test")
            await store_jobs.transition(store, job["id"], JobState.CANCELLED)
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def daemon(
    module_config_factory: ConfigFactory, module_daemon_factory: DaemonFactory
) -> DaemonProcess:
    running = module_daemon_factory(module_config_factory(POOLS))
    # The downloader waits, so the seeded jobs keep the states the tests read.
    paused = ctl("--socket", str(running.socket_path), "pause")
    assert paused.exit_code == 0, paused.output
    _seed_jobs(running.state_dir)
    return running


def ctl(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(poolctl, list(args), env=env)


def sock(daemon: DaemonProcess) -> list[str]:
    return ["--socket", str(daemon.socket_path)]


# -- answers -----------------------------------------------------------------------------------


def test_status_table(daemon: DaemonProcess) -> None:
    result = ctl(*sock(daemon), "status")
    assert result.exit_code == 0, result.output
    assert "pooldaemon 0.1.0" in result.stdout
    assert "crateq" in result.stdout and "promo" in result.stdout
    assert "never" in result.stdout  # no sync yet
    assert "1 queued" in result.stdout and "1 cancelled" in result.stdout


def test_status_json_is_the_socket_answer(daemon: DaemonProcess) -> None:
    result = ctl(*sock(daemon), "--json", "status")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"version", "uptime_s", "pools", "jobs", "rate_bps"}
    assert data["pid"] == daemon.pid
    assert [p["name"] for p in data["pools"]] == ["crateq", "promo"]
    assert data["pools"][0] == {
        "name": "crateq",
        "type": "crateq",
        "enabled": True,
        "last_catalog_sync": None,
        "last_queue_sync": None,
        "last_error": None,
        "last_error_at": None,
        "blocked_reason": None,
        "notice": None,
    }
    assert data["jobs"]["queued"] == 1 and data["jobs"]["cancelled"] == 1
    assert data["rate_bps"] == 0


def test_pools(daemon: DaemonProcess) -> None:
    data = json.loads(ctl(*sock(daemon), "--json", "pools").stdout)
    assert [(p["name"], p["type"], p["enabled"]) for p in data] == [
        ("crateq", "crateq", True),
        ("promo", "promoonly", False),
    ]
    assert data[0]["queue_interval_s"] == 120.0
    table = ctl(*sock(daemon), "pools")
    assert table.exit_code == 0
    assert "promoonly" in table.stdout and "2m00s" in table.stdout


def test_jobs_table_and_filters(daemon: DaemonProcess) -> None:
    table = ctl(*sock(daemon), "jobs")
    assert table.exit_code == 0, table.output
    assert "crateq:570291" in table.stdout and "Artist - Track" in table.stdout
    everything = json.loads(ctl(*sock(daemon), "--json", "jobs").stdout)
    assert [(j["ref"], j["state"]) for j in everything["items"]] == [
        ("crateq:570292", "queued"),
        ("crateq:570291", "cancelled"),
    ]
    queued = json.loads(ctl(*sock(daemon), "--json", "jobs", "--state", "queued").stdout)
    assert [j["ref"] for j in queued["items"]] == ["crateq:570292"]
    other = json.loads(ctl(*sock(daemon), "--json", "jobs", "--pool", "promo").stdout)
    assert other == {"total": 0, "items": []}
    assert "no jobs" in ctl(*sock(daemon), "jobs", "--pool", "promo").stdout


def test_config_option_finds_the_socket(daemon: DaemonProcess) -> None:
    result = ctl("--config", str(daemon.config), "--json", "status")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pid"] == daemon.pid


# -- refusals: exit 1, reason on stderr --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["sync", "nosuch"], "poolctl: sync nosuch: no pool 'nosuch' (configured pools: crateq"),
        (["sync", "promo"], "pool 'promo' is disabled in the config"),
        (["get", "nosuch:1"], "unknown pool 'nosuch' (configured pools: crateq)"),
        (["get", "crateq:not/an/id"], "is not a valid ID"),
        (["redownload", "promo:1", "--reason", "corrupt"], "unknown pool 'promo'"),
        (["retry", "999"], "poolctl: retry job 999: no job 999"),
        (["cancel", "999"], "poolctl: cancel job 999: no job 999"),
        (["queue", "promo"], "no enabled pool 'promo'"),
    ],
)
def test_refusals_exit_1_with_the_reason(
    daemon: DaemonProcess, args: list[str], reason: str
) -> None:
    result = ctl(*sock(daemon), *args)
    assert result.exit_code == 1, result.output
    assert reason in result.stderr


def test_sync_json_maps_pool_to_result(daemon: DaemonProcess) -> None:
    result = ctl(*sock(daemon), "--json", "sync", "promo")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "promo": {
            "error": {
                "code": "conflict",
                "message": "pool 'promo' is disabled in the config (enabled = false)",
            }
        }
    }


# -- usage errors: exit 2 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["jobs", "--state", "lost"], "'lost' is not one of"),
        (["retry", "abc"], "'abc' is not a valid integer"),
        (["retry"], "Missing argument"),
        (["search", "--bpm", "fast"], "use N, N,M,… or N-M"),
        (["search", "--advisory", "maybe"], "'maybe' is not one of"),
        (["redownload", "crateq:1"], "Missing option '--reason'"),
        (["queue", "crateq", "add"], "queue crateq add needs an ID"),
        (["queue", "crateq", "shuffle"], "'shuffle' is not one of"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], complaint: str) -> None:
    result = ctl("--socket", str(tmp_path / "none.sock"), *args)
    assert result.exit_code == 2, result.output
    assert complaint in result.stderr


# -- no daemon: exit 3 with how to start it ----------------------------------------------------


def test_no_daemon_exits_3_saying_how_to_start(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    result = ctl("--socket", str(path), "status")
    assert result.exit_code == 3
    assert result.stderr == (
        f"poolctl: pooldaemon is not running (no socket at {path}). {HOW_TO_START}\n"
    )
    assert result.stdout == ""


def test_broken_config_falls_back_to_the_default_socket(tmp_path: Path) -> None:
    broken = tmp_path / "config.toml"
    broken.write_text("[daemon\n")
    runtime = short_dir()
    try:
        result = ctl("--config", str(broken), "status", env={"XDG_RUNTIME_DIR": str(runtime)})
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert result.exit_code == 3
    assert "poolctl: warning: cannot use the config" in result.stderr
    assert f"no socket at {runtime}/pooldaemon/control.sock" in result.stderr


def test_real_process_exit_codes(daemon: DaemonProcess, tmp_path: Path) -> None:
    """The same through a real `poolctl` process: what a shell script sees."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pooldaemon.cli.poolctl", *args],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )

    ok = run(*sock(daemon), "--json", "status")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["pid"] == daemon.pid
    gone = run("--socket", str(tmp_path / "x.sock"), "jobs")
    assert gone.returncode == 3
    assert HOW_TO_START in gone.stderr


# -- watch -------------------------------------------------------------------------------------


@pytest.fixture
def watched(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory
) -> Iterator[DaemonProcess]:
    yield daemon_factory(config_factory())


def test_watch_exits_3_when_the_daemon_stops(watched: DaemonProcess) -> None:
    """`watch --json` streams the events; both forms end with exit 3 when the daemon goes."""

    def watch(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "pooldaemon.cli.poolctl", *sock(watched), *args, "watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )

    as_json, as_table = watch("--json"), watch()
    try:
        assert as_json.stdout is not None and as_json.stderr is not None
        assert json.loads(as_json.stdout.readline())["type"] == "subscribed"
        assert watched.stop() == 0
        assert json.loads(as_json.stdout.readline())["type"] == "shutdown"
        assert as_json.wait(timeout=30) == 3
        assert "pooldaemon is stopping" in as_json.stderr.read()
        # The table view (subscribed or not yet) ends the same way, without a traceback.
        assert as_table.wait(timeout=30) == 3
        assert as_table.stderr is not None
        err = as_table.stderr.read()
        assert "Traceback" not in err and "pooldaemon is" in err
    finally:
        for proc in (as_json, as_table):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_watch_without_daemon_exits_3(tmp_path: Path) -> None:
    result = ctl("--socket", str(tmp_path / "x.sock"), "watch")
    assert result.exit_code == 3
    assert HOW_TO_START in result.stderr


def test_watch_view_follows_progress_and_state_events() -> None:
    view = WatchView([{"id": 1, "state": "downloading", "ref": "crateq:1", "bytes_done": 0}])
    progress = {"type": "job.progress", "job": 1, "bytes_done": 50, "bytes_total": 100}
    assert view.apply(progress) is None  # progress moves the bar, prints nothing
    assert view.jobs[1]["bytes_done"] == 50 and view.jobs[1]["bytes_total"] == 100
    assert view.apply({"type": "job.progress", "job": 9, "bytes_done": 1}) is None  # unknown job
    view.apply({"type": "job.state", "job": {"id": 2, "state": "queued", "ref": "crateq:2"}})
    assert set(view.jobs) == {1, 2}
    line = view.apply({"type": "job.state", "job": {"id": 1, "state": "done", "ref": "crateq:1"}})
    assert line is not None and "job 1 done" in line
    assert set(view.jobs) == {2}
    assert view.apply({"type": "sync", "pool": "crateq", "result": {"added": 3}}) == (
        "sync crateq: added 3"
    )
    assert view.apply({"type": "sync", "pool": "crateq", "error": {"message": "401"}}) == (
        "sync crateq: failed: 401"
    )
    assert view.apply({"type": "heartbeat"}) is None


def test_status_view_renders_errors_and_paused() -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    data: dict[str, Any] = {
        "version": "9",
        "uptime_s": 3700,
        "paused": True,
        "rate_bps": 2048,
        "pools": [{"name": "p", "type": "crateq", "last_error": "401 refused"}],
        "jobs": {"failed": 2},
    }
    console.print(status_view(data))
    text = console.export_text()
    assert "up 1h01m" in text and "2.0 KiB/s" in text and "downloads paused" in text
    assert "401 refused" in text and "2 failed" in text
