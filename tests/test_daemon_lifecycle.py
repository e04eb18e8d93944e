"""`pooldaemon run` as a real subprocess: start-up, notify protocol, lock, SIGTERM, secrets
(issue 2 "Done when"; docs/reliability.md S3, S4)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from conftest import (
    ConfigFactory,
    DaemonFactory,
    DaemonProcess,
    NotifyReceiver,
    answers_status,
    clean_env,
    short_dir,
)

from pooldaemon import daemon as daemon_module
from pooldaemon.cli.daemon import main as pooldaemon_cli
from pooldaemon.config import load_config
from pooldaemon.control.client import ControlClient, DaemonRefused
from pooldaemon.control.server import SocketSetupError
from pooldaemon.daemon import Components, Daemon, Wiring
from pooldaemon.lock import InstanceLock
from pooldaemon.models import Request
from pooldaemon.store import Store
from pooldaemon.store import pools as store_pools

REPO = Path(__file__).resolve().parent.parent
CANARY_KEY = "CanaryApiKey-7f3a9q"
CANARY_PASSWORD = "CanaryPassw0rd-x1y2"
CANARY_TOKEN = "CanaryToken-55aa77"
CRATEQ = f"""
[pools.crateq]
type = "crateq"
api_key = "{CANARY_KEY}"
username = "dj"
password = "{CANARY_PASSWORD}"
"""


def api(socket_path: Path, method: str, path: str, body: Any = None) -> Any:
    """One request to the daemon's socket, from outside its event loop."""

    async def go() -> Any:
        async with ControlClient(socket_path) as client:
            return await client.request(method, path, body=body)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def under_systemd(
    module_config_factory: ConfigFactory, module_daemon_factory: DaemonFactory
) -> Iterator[tuple[DaemonProcess, NotifyReceiver]]:
    """One daemon started as systemd would: abstract NOTIFY_SOCKET, watchdog every 50 ms."""
    receiver = NotifyReceiver(abstract=True)
    daemon = module_daemon_factory(
        module_config_factory(CRATEQ),
        wait=False,
        NOTIFY_SOCKET=receiver.address,
        WATCHDOG_USEC="100000",
    )
    receiver.wait_for("READY=1")
    yield daemon, receiver
    receiver.close()


def test_ready_means_the_socket_answers_with_a_status_line(
    under_systemd: tuple[DaemonProcess, NotifyReceiver],
) -> None:
    daemon, receiver = under_systemd
    # READY is what makes `systemctl start` return: the socket must answer by then. The
    # fixture asked nothing of the socket before READY arrived.
    assert api(daemon.socket_path, "GET", "/v1/status")["pid"] == daemon.pid
    ready = next(m for m in receiver.messages if "READY=1" in m.split("\n"))
    assert ready.split("\n") == ["READY=1", f"MAINPID={daemon.pid}", "STATUS=1 pool"]
    assert sum("READY=1" in m.split("\n") for m in receiver.messages) == 1


def test_watchdog_pings_keep_coming(under_systemd: tuple[DaemonProcess, NotifyReceiver]) -> None:
    _, receiver = under_systemd
    receiver.wait_for("WATCHDOG=1")
    receiver.wait_for("WATCHDOG=1")


def test_socket_modes_and_lock_file(under_systemd: tuple[DaemonProcess, NotifyReceiver]) -> None:
    daemon, _ = under_systemd
    # docs/interface.md §4 modes, on the directory the daemon made itself.
    assert stat.S_IMODE(daemon.socket_path.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(daemon.socket_path.stat().st_mode)
    assert stat.S_IMODE(daemon.socket_path.parent.stat().st_mode) == 0o700
    assert (daemon.state_dir / "pooldaemon.lock").read_text() == f"{daemon.pid}\n"


def test_second_instance_exits_1_naming_the_pid(
    under_systemd: tuple[DaemonProcess, NotifyReceiver], daemon_factory: DaemonFactory
) -> None:
    first, _ = under_systemd
    second = daemon_factory(first.config, wait=False)
    assert second.wait(timeout=20) == 1
    message = f"pooldaemon is already running (pid {first.pid}) for state dir {first.state_dir}"
    assert message in second.stderr()
    # The first one is untouched and still answers on its socket.
    assert api(first.socket_path, "GET", "/v1/status")["pid"] == first.pid


def test_sigterm_sends_stopping_exits_0_and_closes_the_database(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory, notify_receiver: type
) -> None:
    receiver: NotifyReceiver = notify_receiver()
    daemon = daemon_factory(config_factory(CRATEQ), wait=False, NOTIFY_SOCKET=receiver.address)
    receiver.wait_for("READY=1")
    daemon.send(signal.SIGTERM)
    receiver.wait_for("STOPPING=1")
    assert daemon.wait(timeout=10) == 0
    # No WATCHDOG_USEC, no pings.
    assert not [m for m in receiver.messages if "WATCHDOG=1" in m.split("\n")]
    # The last connection closed cleanly: the WAL was checkpointed and removed.
    db = daemon.state_dir / "state.db"
    assert not db.with_name("state.db-wal").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT name, type FROM pools").fetchall() == [("crateq", "crateq")]
    assert not daemon.socket_path.exists()
    assert (daemon.state_dir / "pooldaemon.lock").read_text() == ""
    log = daemon.stderr()
    assert '"event": "pooldaemon stopped"' in log
    assert "Traceback" not in log


def _seed_pool_error(state_dir: Path, message: str) -> None:
    async def go() -> None:
        store = await Store.open(state_dir / "state.db")
        try:
            await store_pools.ensure_pools(store, {"crateq": "crateq"})
            await store_pools.record_error(store, "crateq", message)
        finally:
            await store.close()

    asyncio.run(go())


def test_secrets_absent_from_logs_status_and_errors(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory, notify_receiver: type
) -> None:
    receiver: NotifyReceiver = notify_receiver()
    token_pool = f"""
[pools.promo]
type = "promoonly"
user_id = 42
token = "{CANARY_TOKEN}"
"""
    config = config_factory(CRATEQ + token_pool, log_level="debug")
    state_dir = Path(
        next(
            line.split("=", 1)[1].strip().strip('"')
            for line in config.read_text().splitlines()
            if line.startswith("state_dir")
        )
    )
    # A pool error that quotes a secret, as a careless server might (docs/reliability.md S3).
    _seed_pool_error(state_dir, f"login refused for password {CANARY_PASSWORD}")
    daemon = daemon_factory(config, wait=False, NOTIFY_SOCKET=receiver.address)
    ready = receiver.wait_for("READY=1")
    status = api(daemon.socket_path, "GET", "/v1/status")
    assert status["pools"][0]["last_error"] == "login refused for password ********"
    outputs = [ready, json.dumps(status), json.dumps(api(daemon.socket_path, "GET", "/v1/pools"))]
    for method, path in (("GET", f"/v1/jobs?state={CANARY_TOKEN}"), ("GET", f"/v1/{CANARY_KEY}")):
        try:
            api(daemon.socket_path, method, path)
        except DaemonRefused as err:
            outputs.append(err.message)
    assert any("********" in text for text in outputs[3:])  # the echo was there, masked
    assert daemon.stop(signal.SIGINT) == 0  # SIGINT stops as cleanly as SIGTERM
    everything = "\n".join([*outputs, daemon.stderr(), *receiver.messages])
    for secret in (CANARY_KEY, CANARY_PASSWORD, CANARY_TOKEN):
        assert secret not in everything
    import base64

    assert base64.b64encode(f"42:{CANARY_TOKEN}".encode()).decode() not in everything


def test_bad_config_never_starts(config_factory: ConfigFactory) -> None:
    config = config_factory('[pools.crateq]\ntype = "crateq"\nqueue_interval = "2x"\n')
    result = CliRunner().invoke(pooldaemon_cli, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert 'pools.crateq.queue_interval: "2x" is not a duration' in result.stderr
    assert not (config.parent / "state").exists()


async def test_unsafe_socket_directory_refuses_to_start_and_undoes_the_start(
    config_factory: ConfigFactory,
) -> None:
    sock_dir = short_dir()
    try:
        sock_dir.chmod(0o755)
        cfg = load_config(config_factory(socket_path=str(sock_dir / "control.sock")), env={})
        daemon = Daemon(cfg, env={})
        with pytest.raises(SocketSetupError, match=f"socket directory {sock_dir} has mode 0755"):
            await daemon.start()
        assert not (sock_dir / "control.sock").exists()
        # The lock was released and the database closed on the way out.
        assert daemon.store is None and daemon.session is None
        again = InstanceLock(cfg.daemon.state_dir)
        again.acquire()
        again.release()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_example_config_starts_answers_and_stops(
    tmp_path: Path, daemon_factory: DaemonFactory
) -> None:
    """Issue 2 "Done when": `pooldaemon run --config config.example.toml` (pools disabled)."""
    runtime = short_dir()
    try:
        runtime.chmod(0o700)
        example = tmp_path / "config.toml"
        shutil.copy(REPO / "config.example.toml", example)
        env = clean_env(HOME=str(tmp_path), XDG_RUNTIME_DIR=str(runtime))
        env.pop("XDG_DATA_HOME", None)
        env.pop("XDG_CONFIG_HOME", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pooldaemon.cli.daemon", "run", "--config", str(example)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        socket_path = runtime / "pooldaemon" / "control.sock"
        try:
            _wait_for_socket(proc, socket_path)
            status = api(socket_path, "GET", "/v1/status")
            assert [p["name"] for p in status["pools"]] == ["crateq", "promoonly", "harvest"]
            assert not any(p["enabled"] for p in status["pools"])
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
        assert (tmp_path / ".local/share/pooldaemon/state.db").exists()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def _wait_for_socket(proc: subprocess.Popen[bytes], path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "pooldaemon exited early"
        if answers_status(path):
            return
        time.sleep(0.02)
    raise AssertionError(f"no socket at {path}")


# -- the other pooldaemon commands (in-process) ------------------------------------------------


def test_check_config_prints_effective_settings_with_secrets_masked(
    config_factory: ConfigFactory,
) -> None:
    config = config_factory(CRATEQ)
    result = CliRunner().invoke(pooldaemon_cli, ["check-config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "[pools.crateq]" in result.stdout
    assert 'api_key = "********"' in result.stdout
    assert CANARY_KEY not in result.output and CANARY_PASSWORD not in result.output


def test_check_config_exits_1_naming_the_key(config_factory: ConfigFactory) -> None:
    config = config_factory(CRATEQ + "colour = 'red'\n")
    result = CliRunner().invoke(pooldaemon_cli, ["check-config", "--config", str(config)])
    assert result.exit_code == 1
    assert "pools.crateq.colour" in result.stderr
    assert result.stdout == ""


def test_check_config_warns_about_a_readable_secret_file(config_factory: ConfigFactory) -> None:
    config = config_factory(CRATEQ)
    config.chmod(0o644)
    result = CliRunner().invoke(pooldaemon_cli, ["check-config", "--config", str(config)])
    assert result.exit_code == 0
    assert "chmod 600" in result.stderr


def test_run_refuses_an_environment_override_error(config_factory: ConfigFactory) -> None:
    config = config_factory()
    result = CliRunner().invoke(
        pooldaemon_cli,
        ["run", "--config", str(config)],
        env={"POOLDAEMON_DAEMON__CHUNK_SIZE": "lots"},
    )
    assert result.exit_code == 1
    assert "daemon.chunk_size" in result.stderr


def test_pooldaemon_version() -> None:
    result = CliRunner().invoke(pooldaemon_cli, ["--version"])
    assert result.exit_code == 0
    assert "pooldaemon, version" in result.stdout


# -- the composition root in-process: plug points, STATUS= updates, bounded stop ---------------


class FakeEngine:
    """Stands in for the download engine at its plug point (daemon.EnginePort)."""

    def __init__(self, log: list[str], *, hang_on_stop: bool = False) -> None:
        self.log = log
        self.hang_on_stop = hang_on_stop
        self.paused = False
        self.submitted: list[Request] = []

    async def start(self) -> None:
        self.log.append("engine.start")

    async def stop(self) -> None:
        self.log.append("engine.stop")
        if self.hang_on_stop:
            await asyncio.Event().wait()

    async def submit(
        self,
        request: Request,
        origin: str,
        *,
        key: str | None = None,
        title: str | None = None,
        artist: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        self.submitted.append(request)
        return {"id": len(self.submitted), "ref": request.ref}, True

    async def job_action(self, job_id: int, action: str) -> dict[str, Any]:
        return {"id": job_id, "state": action, "ref": "x"}

    async def pause_all(self) -> None:
        self.paused = True

    async def resume_all(self) -> None:
        self.paused = False

    held: str | None = None

    async def hold(self, reason: str) -> None:
        self.held = reason

    def release(self) -> None:
        self.held = None

    def waiting_reason(self) -> str | None:
        return self.held

    def set_rate(self, rate_bps: int) -> None:
        pass

    def rate_bps(self) -> float:
        return 1234.5

    def job_rate_bps(self, job_id: int) -> float:
        return 0.0


class FakeWatcher:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("watcher.start")

    async def stop(self) -> None:
        self.log.append("watcher.stop")


async def test_components_start_in_order_stop_in_reverse_and_serve_the_socket(
    config_factory: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    engine = FakeEngine(log)
    seen: list[Wiring] = []

    async def build(wiring: Wiring) -> Components:
        seen.append(wiring)
        return Components(engine=engine, watcher=FakeWatcher(log))

    monkeypatch.setattr(daemon_module, "build_components", build)
    cfg = load_config(config_factory(CRATEQ), env={})
    daemon = Daemon(cfg, env={})
    await daemon.start()
    try:
        assert log == ["engine.start", "watcher.start"]
        assert seen[0].store is daemon.store and seen[0].session is daemon.session
        async with ControlClient(cfg.daemon.socket_path) as client:
            answer = await client.post("/v1/jobs", {"refs": ["crateq:570291", "nosuch:1", "x"]})
            assert answer["accepted"] == [{"ref": "crateq:570291", "job": 1}]
            assert [r["ref"] for r in answer["rejected"]] == ["nosuch:1", "x"]
            assert (
                "unknown pool 'nosuch' (configured pools: crateq)"
                in (answer["rejected"][0]["reason"])
            )
            await client.post("/v1/redownload", {"refs": ["crateq:7"], "reason": "corrupt"})
            assert engine.submitted[-1] == Request("crateq", "7", redownload=True, reason="corrupt")
            assert await client.post("/v1/pause") == {"paused": True}
            status = await client.get("/v1/status")
            assert status["paused"] is True and status["rate_bps"] == 1234
        # The watcher's way in: a parsed request, the same dedup path as the socket.
        job = await seen[0].submit(Request("crateq", "99"), "drop")
        assert job == {"id": 3, "ref": "crateq:99"}
    finally:
        await daemon.stop()
    assert log[2:] == ["watcher.stop", "engine.stop"]


async def test_a_component_that_hangs_on_stop_cannot_hold_shutdown(
    config_factory: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []

    async def build(wiring: Wiring) -> Components:
        return Components(engine=FakeEngine(log, hang_on_stop=True))

    monkeypatch.setattr(daemon_module, "build_components", build)
    monkeypatch.setattr(daemon_module, "STOP_BUDGET_S", 0.2)
    cfg = load_config(config_factory(), env={})
    daemon = Daemon(cfg, env={})
    await daemon.start()
    with structlog.testing.capture_logs() as logs:
        await daemon.stop()
    assert "component did not stop in time" in [e["event"] for e in logs]
    assert daemon.store is None and not cfg.daemon.socket_path.exists()


async def test_status_line_follows_state_changes(
    config_factory: ConfigFactory, notify_receiver: type
) -> None:
    receiver: NotifyReceiver = notify_receiver()
    cfg = load_config(config_factory(CRATEQ), env={})
    daemon = Daemon(cfg, env={"NOTIFY_SOCKET": receiver.address})
    await daemon.start()
    try:
        ready = await asyncio.to_thread(receiver.wait_for, "READY=1")
        assert "STATUS=1 pool" in ready.split("\n")
        assert daemon.store is not None
        await store_pools.record_error(daemon.store, "crateq", "login refused (401)")
        daemon.events.publish("sync", pool="crateq", error={"message": "login refused (401)"})
        status = await asyncio.to_thread(
            receiver.wait_for, "STATUS=1 pool; crateq: login refused (401)"
        )
        assert status == "STATUS=1 pool; crateq: login refused (401)"
    finally:
        await daemon.stop()
    assert receiver.drain()[-1] == "STOPPING=1\nSTATUS=stopping"
