"""A real daemon with its dashboard on 127.0.0.1:0, pointed at the CrateQ simulator, plus raw
HTTP helpers that hold the session cookie by hand (so every header a test sends is visible)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from pooldaemon.config import Config, load_config
from pooldaemon.control.client import ControlClient
from pooldaemon.daemon import Daemon
from pooldaemon.sim.crateq import CrateQSim

KIB = 1024


@dataclass
class Dashboard:
    """A started daemon, its socket client, its simulator and the dashboard's origin."""

    config: Config
    daemon: Daemon
    client: ControlClient
    crateq: CrateQSim
    http: aiohttp.ClientSession

    @property
    def origin(self) -> str:
        assert self.daemon.web is not None
        return self.daemon.web.origin

    @property
    def host(self) -> str:
        return urlsplit(self.origin).netloc

    async def login_link(self) -> str:
        return str((await self.client.post("/v1/ui/login-link"))["url"])

    async def login(self) -> Session:
        """Follow a fresh login link; the session cookie and the page's CSRF token."""
        async with self.http.get(await self.login_link(), allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
            cookie = resp.cookies["pd_session"].value
        async with self.http.get(
            self.origin + "/", headers={"Cookie": f"pd_session={cookie}"}
        ) as r:
            assert r.status == 200
            page = await r.text()
        match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert match, page
        return Session(cookie, match.group(1))

    async def job_state(self, job_id: int) -> str:
        return str((await self.client.get(f"/v1/jobs/{job_id}"))["state"])


@dataclass(frozen=True)
class Session:
    cookie: str
    csrf: str


def daemon_config(tmp: Path, crateq: CrateQSim, sock_dir: Path, **daemon: str) -> Path:
    """A config for the simulator, its dashboard on any free loopback port."""
    lines = [
        "[daemon]",
        f"download_dir = {json.dumps(str(tmp / 'library'))}",
        f"drop_dir = {json.dumps(str(tmp / 'drop'))}",
        f"state_dir = {json.dumps(str(tmp / 'state'))}",
        f"socket_path = {json.dumps(str(sock_dir / 'c.sock'))}",
        'chunk_size = "256 KiB"',
        "write_tags = false",
        *(f"{key} = {json.dumps(value)}" for key, value in daemon.items()),
        "",
        "[web]",
        'listen = "127.0.0.1:0"',
        "",
        crateq.config_toml("crateq"),
    ]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    (tmp / "library").mkdir(exist_ok=True)
    return path


@contextlib.asynccontextmanager
async def started(tmp_path: Path, tail: str = "") -> AsyncIterator[Dashboard]:
    """A daemon on the CrateQ simulator with its dashboard; `tail` is more config (rules)."""
    sock_dir = Path(tempfile.mkdtemp(prefix="pdweb-"))
    async with (
        CrateQSim(records=60, seed="web", media_sizes=(600 * KIB, 900 * KIB)) as crateq,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        path = daemon_config(tmp_path, crateq, sock_dir)
        path.write_text(path.read_text() + tail)
        config = load_config(path, env={})
        daemon = Daemon(config, env={})
        await daemon.start()
        try:
            async with ControlClient(config.daemon.socket_path) as client:
                yield Dashboard(config, daemon, client, crateq, http)
        finally:
            await daemon.stop()
            shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[Dashboard]:
    async with started(tmp_path) as dash:
        yield dash


async def request(
    dash: Dashboard,
    method: str,
    path: str,
    *,
    session: Session | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw request: status, headers, body (no redirects followed, no cookie jar)."""
    sent = dict(headers or {})
    if session is not None:
        sent.setdefault("Cookie", f"pd_session={session.cookie}")
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    async with dash.http.request(
        method, dash.origin + path, headers=sent, data=data, allow_redirects=False
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()
