"""Shared fixtures: config files in temp dirs, a real `pooldaemon run` subprocess, and a datagram
socket standing in for systemd's NOTIFY_SOCKET (docs/reliability.md §4 harness notes, item 6)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import aiohttp

    from pooldaemon.config import Config
    from pooldaemon.control.client import ControlClient
    from pooldaemon.daemon import Daemon
    from pooldaemon.pools.crateq import CrateQ
    from pooldaemon.sim.crateq import CrateQSim
    from pooldaemon.store.db import Store

#: A CrateQ pool that is configured but offline (a closed port on loopback): nothing may reach
#: for the network, yet the daemon starts with a pool to show.
OFFLINE_CRATEQ = """
[pools.crateq]
type = "crateq"
base_url = "http://127.0.0.1:9/api"
api_key = "k-123456"
username = "dj"
password = "p-123456"
"""

#: Environment variables a test daemon must not inherit from whoever runs the tests.
_SCRUB = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def library_files(root: Path) -> list[Path]:
    """Every file under a download folder but its work area, sorted. A job's work folder goes
    just after the job is done, so a walk into it could meet a folder that is no longer there."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d != ".pooldaemon"]
        found.extend(Path(folder, name) for name in names)
    return sorted(found)


async def eventually(check: Callable[[], bool], deadline_s: float = 10.0) -> float:
    """Wait until `check()` holds; the seconds it took; fails after `deadline_s`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline_s:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def no_sleep(delay: float) -> None:
    """Back-off is not slept in tests (passed where the code takes a sleep function)."""


def crateq_adapter(
    sim: CrateQSim,
    session: aiohttp.ClientSession,
    name: str = "crateq",
    *,
    rows: int = 100,
    **config: object,
) -> CrateQ:
    """A CrateQ adapter on the simulator `sim` (`config`: more keys of its pool table), on the
    sim's clock; back-off is not slept."""
    from pooldaemon.pool_config import CrateQConfig
    from pooldaemon.pools.crateq import CrateQ
    from pooldaemon.pools.http import PoolHttp

    table = {
        "type": "crateq",
        "base_url": sim.base_url,
        "api_key": sim.api_key,
        "username": sim.username,
        "password": sim.password,
        **config,
    }
    http = PoolHttp(session, name, sleep=no_sleep, timeout_s=10)
    return CrateQ(
        name, CrateQConfig.model_validate(table), http, clock=sim.clock, rows=rows, sleep=no_sleep
    )


def short_dir() -> Path:
    """A fresh directory with a short path: tmp_path can exceed the 108-byte sun_path limit."""
    return Path(tempfile.mkdtemp(prefix="pd", dir="/tmp"))


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without service-manager and POOLDAEMON_ variables, plus `extra`."""
    env = {
        k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("POOLDAEMON_")
    }
    env.update(extra)
    return env


class ConfigFactory:
    """Writes small config files whose every path lives under `base` (and the socket under a
    short directory)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._dirs: list[Path] = []

    def __call__(self, pools: str = "", *, name: str = "config.toml", **daemon: object) -> Path:
        """Write a config; `daemon` keys override [daemon] values (strings are quoted)."""
        sock_dir = short_dir()
        self._dirs.append(sock_dir)
        root = self.base / uuid.uuid4().hex[:8]
        root.mkdir(parents=True)
        values: dict[str, object] = {
            "download_dir": str(root / "library"),
            "state_dir": str(root / "state"),
            # A directory the daemon itself creates (0700), inside a short one.
            "socket_path": str(sock_dir / "s" / "control.sock"),
            "log_format": "json",
        }
        values.update(daemon)
        lines = ["[daemon]"]
        for key, value in values.items():
            lines.append(f"{key} = {_toml(value)}")
        path = root / name
        path.write_text("\n".join(lines) + "\n\n" + pools)
        path.chmod(0o600)
        return path

    def cleanup(self) -> None:
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def started_daemon(
    tmp_path: Path, *tables: str, **daemon: object
) -> AsyncIterator[tuple[Config, Daemon, ControlClient]]:
    """A daemon started in this process, with a client on its socket.

    Its library, drop folder and state live under `tmp_path`, its socket in a short directory;
    `daemon` keys are added to [daemon] (strings are quoted), `tables` follow it (the
    simulators' pool tables, [library], …). Stopped, and the socket's directory removed, after.
    """
    from pooldaemon.config import load_config
    from pooldaemon.control.client import ControlClient
    from pooldaemon.daemon import Daemon

    sock_dir = short_dir()
    values: dict[str, object] = {
        "download_dir": str(tmp_path / "library"),
        "drop_dir": str(tmp_path / "drop"),
        "state_dir": str(tmp_path / "state"),
        "socket_path": str(sock_dir / "c.sock"),
        **daemon,
    }
    config_path = tmp_path / "config.toml"
    lines = ["[daemon]", *(f"{key} = {_toml(value)}" for key, value in values.items()), ""]
    config_path.write_text("\n".join([*lines, *tables]))
    config_path.chmod(0o600)
    (tmp_path / "library").mkdir()
    try:
        config = load_config(config_path, env={})
        running = Daemon(config, env={})
        await running.start()
        try:
            async with ControlClient(config.daemon.socket_path) as client:
                yield config, running, client
        finally:
            await running.stop()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_socket_path(config: Path) -> Path:
    for line in config.read_text().splitlines():
        if line.startswith("socket_path"):
            return Path(line.split("=", 1)[1].strip().strip('"'))
    raise AssertionError(f"{config} has no socket_path")


def read_state_dir(config: Path) -> Path:
    for line in config.read_text().splitlines():
        if line.startswith("state_dir"):
            return Path(line.split("=", 1)[1].strip().strip('"'))
    raise AssertionError(f"{config} has no state_dir")


def answers_status(socket_path: Path) -> bool:
    """One raw `GET /v1/status` over the socket: did a 200 come back?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(socket_path))
            probe.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return probe.recv(64).startswith(b"HTTP/1.1 200 ")
        except OSError:
            return False


class DaemonProcess:
    """A real `pooldaemon run --config PATH` subprocess, its stderr kept in a file."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.socket_path = read_socket_path(config)
        self.state_dir = read_state_dir(config)
        self.stderr_path = config.with_name(f"stderr-{uuid.uuid4().hex[:6]}.log")
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pooldaemon.cli.daemon", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_socket(self, timeout: float = 20.0) -> None:
        """Until `GET /v1/status` answers 200 (or the process exits: fail).

        A connect alone is not enough: the daemon binds the socket early and serves it only
        once everything is up.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"pooldaemon exited with {self.proc.returncode}:\n{self.stderr()}"
                )
            if answers_status(self.socket_path):
                return
            time.sleep(0.02)
        raise AssertionError(f"no control socket after {timeout} s:\n{self.stderr()}")

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class DaemonFactory:
    """Starts daemons; whatever is still running at teardown is stopped (then killed)."""

    def __init__(self) -> None:
        self.started: list[DaemonProcess] = []

    def __call__(self, config: Path, *, wait: bool = True, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(config, clean_env(**env))
        self.started.append(daemon)
        if wait:
            daemon.wait_socket()
        return daemon

    def cleanup(self) -> None:
        for daemon in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.stop(timeout=10)
            daemon.kill()


class NotifyReceiver:
    """A datagram socket standing in for systemd's: bound to a path or an abstract name."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: Path | None = None
        if abstract:
            name = f"pd-notify-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            self._dir = short_dir()
            path = self._dir / "notify"
            self.sock.bind(str(path))
            self.address = str(path)
        self.messages: list[str] = []

    def receive(self, timeout: float = 10.0) -> str | None:
        """The next datagram, or None after `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        text = data.decode()
        self.messages.append(text)
        return text

    def drain(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                text = self.sock.recv(65536).decode()
                self.messages.append(text)
                got.append(text)
        except BlockingIOError:
            pass
        return got

    def wait_for(self, line: str, timeout: float = 20.0) -> str:
        """The first datagram holding `line` (one of its KEY=value lines)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and line in message.split("\n"):
                return message
        raise AssertionError(f"no {line!r} within {timeout} s; got {self.messages!r}")

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def config_factory(tmp_path: Path) -> Iterator[ConfigFactory]:
    factory = ConfigFactory(tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def module_config_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfigFactory]:
    factory = ConfigFactory(tmp_path_factory.mktemp("cfg"))
    yield factory
    factory.cleanup()


@pytest.fixture
def daemon_factory() -> Iterator[DaemonFactory]:
    """`daemon_factory(config_path, **env)` → a running DaemonProcess (socket answering)."""
    factory = DaemonFactory()
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def module_daemon_factory() -> Iterator[DaemonFactory]:
    factory = DaemonFactory()
    yield factory
    factory.cleanup()


@pytest.fixture
def notify_receiver() -> Iterator[type[NotifyReceiver]]:
    """`notify_receiver(abstract=False)` → a bound NotifyReceiver, closed after the test."""
    made: list[NotifyReceiver] = []

    class _Receiver(NotifyReceiver):
        def __init__(self, abstract: bool = False) -> None:
            super().__init__(abstract)
            made.append(self)

    yield _Receiver
    for receiver in made:
        receiver.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for talking to the simulators."""
    import aiohttp

    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh state database in tmp_path, closed after the test."""
    from pooldaemon.store.db import Store

    db = await Store.open(tmp_path / "state.db")
    yield db
    await db.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short private directory for sockets made in-process."""
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def stop_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts by hand; killed at teardown if still running."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (key, cert), trusted by nobody by default."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    done = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("needs the openssl command to make a test certificate")
    return key, cert
