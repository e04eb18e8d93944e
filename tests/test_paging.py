"""Paged answers through a real `pooldaemon run`: one maximum `limit` for the socket and poolctl,
`total` on the jobs list, `--all` paging for the user, and `removed` accepted by both
(docs/interface.md §1, §4, §12)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner, Result

from pooldaemon.cli.poolctl import main as poolctl
from pooldaemon.models import Request, Track
from pooldaemon.store import Store
from pooldaemon.store import catalog as mirror
from pooldaemon.store import jobs as store_jobs
from tests.conftest import OFFLINE_CRATEQ, ConfigFactory, DaemonFactory, DaemonProcess

#: More than one page of the largest size, so that paging shows.
JOBS = 620
TRACKS = 620
#: Written independently of the code: the contract's one maximum page.
MAXIMUM = 500

POOLS = OFFLINE_CRATEQ


def _seed(state_dir: Path) -> None:
    """Jobs and mirrored tracks written by a second connection, as the daemon writes them."""

    async def go() -> None:
        store = await Store.open(state_dir / "state.db")
        try:
            for n in range(JOBS):
                await store_jobs.create_job(store, Request("crateq", str(10_000 + n)), origin="t")
            tracks = [
                Track(pool="crateq", id=str(n), artist=f"Artist {n}", title=f"Paged {n}")
                for n in range(TRACKS)
            ]
            await mirror.apply_page(store, "crateq", tracks, seen_at=1.0)
            await mirror.mark_removed(store, "crateq", ["0", "1"])
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def daemon(
    module_config_factory: ConfigFactory, module_daemon_factory: DaemonFactory
) -> DaemonProcess:
    running = module_daemon_factory(module_config_factory(POOLS))
    paused = ctl(running, "pause")
    assert paused.exit_code == 0, paused.output
    _seed(running.state_dir)
    return running


def ctl(daemon: DaemonProcess, *args: str) -> Result:
    return CliRunner().invoke(poolctl, ["--socket", str(daemon.socket_path), *args])


def ask(daemon: DaemonProcess, path: str, query: dict[str, str]) -> tuple[int, Any]:
    """One GET on the control socket, by hand (HTTP/1.1 over the Unix socket)."""
    target = path + ("?" + urlencode(query) if query else "")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(daemon.socket_path))
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if b"chunked" in head.lower():
        body = _unchunk(body)
    return status, json.loads(body)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out


def test_the_jobs_list_pages_with_a_total_and_stops_nowhere_silently(
    daemon: DaemonProcess,
) -> None:
    status, first = ask(daemon, "/v1/jobs", {})
    assert status == 200 and first["total"] == JOBS and len(first["items"]) == MAXIMUM
    status, last = ask(daemon, "/v1/jobs", {"limit": "50", "offset": str(JOBS - 20)})
    assert status == 200 and last["total"] == JOBS and len(last["items"]) == 20
    assert last["items"][-1]["ref"] == "crateq:10000"  # newest first: the first job is last
    status, beyond = ask(daemon, "/v1/jobs", {"offset": str(JOBS + 5)})
    assert (status, beyond) == (200, {"total": JOBS, "items": []})
    status, queued = ask(daemon, "/v1/jobs", {"state": "queued", "limit": "1"})
    assert status == 200 and queued["total"] == JOBS and len(queued["items"]) == 1


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/catalog"])
def test_the_socket_refuses_a_limit_past_the_one_maximum(daemon: DaemonProcess, path: str) -> None:
    status, body = ask(daemon, path, {"limit": str(MAXIMUM + 1)})
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert body["error"]["message"] == f"limit: must be between 1 and {MAXIMUM} (got {MAXIMUM + 1})"
    assert ask(daemon, path, {"limit": str(MAXIMUM)})[0] == 200


@pytest.mark.parametrize("command", ["search", "jobs"])
def test_poolctl_refuses_the_same_limit_before_asking(daemon: DaemonProcess, command: str) -> None:
    result = ctl(daemon, command, "--limit", str(MAXIMUM + 1))
    assert result.exit_code == 2, result.output  # a usage error, not the daemon's refusal
    assert f"1<=x<={MAXIMUM}" in result.output
    assert ctl(daemon, "--json", command, "--limit", str(MAXIMUM)).exit_code == 0


def test_poolctl_jobs_pages_for_the_user(daemon: DaemonProcess) -> None:
    every = ctl(daemon, "--json", "jobs", "--all")
    assert every.exit_code == 0, every.output
    answer = json.loads(every.stdout)
    assert answer["total"] == JOBS
    assert sorted(int(job["ref"].split(":")[1]) for job in answer["items"]) == list(
        range(10_000, 10_000 + JOBS)
    )
    one = ctl(daemon, "jobs", "--limit", "5")
    assert one.exit_code == 0
    assert f"5 of {JOBS} jobs shown" in one.stderr and "--all" in one.stderr
    tail = json.loads(ctl(daemon, "--json", "jobs", "--all", "--offset", "600").stdout)
    assert len(tail["items"]) == JOBS - 600


def test_poolctl_search_pages_for_the_user(daemon: DaemonProcess) -> None:
    every = ctl(daemon, "--json", "search", "paged", "--all")
    assert every.exit_code == 0, every.output
    answer = json.loads(every.stdout)
    live = TRACKS - 2  # two were removed by the pool
    assert answer["total"] == live
    assert sorted(int(track["id"]) for track in answer["items"]) == list(range(2, TRACKS))


def test_removed_is_one_answer_for_the_socket_and_poolctl(daemon: DaemonProcess) -> None:
    status, found = ask(daemon, "/v1/catalog", {"q": "paged", "removed": "1", "limit": "1"})
    assert status == 200 and found["total"] == TRACKS
    status, hidden = ask(daemon, "/v1/catalog", {"q": "paged", "removed": "0", "limit": "1"})
    assert status == 200 and hidden["total"] == TRACKS - 2
    status, bad = ask(daemon, "/v1/catalog", {"removed": "maybe"})
    assert status == 400 and bad["error"]["message"].startswith("removed: expected true or false")
    result = ctl(daemon, "--json", "search", "paged", "--removed", "--all")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["total"] == TRACKS and len(answer["items"]) == TRACKS
    assert {"crateq:0", "crateq:1"} <= {track["ref"] for track in answer["items"]}
