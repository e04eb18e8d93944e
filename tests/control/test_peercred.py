"""Peer credentials, and another user's process against the real server (docs/reliability.md S1)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from pooldaemon.control.peercred import PeerCred, PeerCredUnavailable, peer_credentials
from pooldaemon.control.server import ControlServer
from tests.another_user import NOBODY, as_nobody

from .test_server import FakeServices


def test_credentials_of_a_socketpair_peer_are_ours() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        cred = peer_credentials(left)
    assert cred.uid == os.getuid()
    if sys.platform.startswith("linux"):
        assert cred == PeerCred(pid=os.getpid(), uid=os.getuid(), gid=os.getgid())


def test_unconnected_socket_has_no_usable_peer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            cred = peer_credentials(sock)
        except PeerCredUnavailable:
            return
    # Linux answers an unconnected socket with the "nobody" credentials (pid 0, uid -1).
    assert cred.pid is None and cred.uid == -1


@pytest.fixture
async def server(sock_dir: Path) -> AsyncIterator[tuple[ControlServer, FakeServices]]:
    services = FakeServices()
    srv = ControlServer(services, sock_dir / "ctl" / "control.sock")
    await srv.start()
    yield srv, services
    await srv.stop()


def _ask_status(socket_path: Path) -> tuple[str, bytes]:
    """Connect and ask for /v1/status (run as another user by `as_nobody`).

    Returns ("connect-error", errno name) or ("answer", raw HTTP answer).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    with sock:
        try:
            sock.connect(str(socket_path))
        except OSError as err:
            return "connect-error", errno.errorcode.get(err.errno or 0, "?").encode()
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return "answer", b"".join(chunks)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a peer as another user")
async def test_another_user_cannot_even_connect(
    server: tuple[ControlServer, FakeServices],
) -> None:
    srv, services = server
    # Only the server's own 0700 directory stands in the way (the temp dir above is opened).
    srv.socket_path.parent.parent.chmod(0o711)
    kind, detail = await asyncio.to_thread(as_nobody, _ask_status, srv.socket_path)
    # The 0700 directory stops another user at connect().
    assert (kind, detail) == ("connect-error", b"EACCES")
    # And with the directory opened, the 0600 socket does.
    srv.socket_path.parent.chmod(0o711)
    try:
        kind, detail = await asyncio.to_thread(as_nobody, _ask_status, srv.socket_path)
    finally:
        srv.socket_path.parent.chmod(0o700)
    assert (kind, detail) == ("connect-error", b"EACCES")
    assert services.calls == []


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a peer as another user")
async def test_another_user_past_the_file_modes_gets_403(
    server: tuple[ControlServer, FakeServices],
) -> None:
    srv, services = server
    # Open the file modes on purpose (what a misconfigured system might do): the peer
    # credential check is the second wall and answers 403 on its own.
    outer = srv.socket_path.parent.parent
    outer.chmod(0o711)
    srv.socket_path.parent.chmod(0o711)
    srv.socket_path.chmod(0o666)
    try:
        with structlog.testing.capture_logs() as logs:
            kind, answer = await asyncio.to_thread(as_nobody, _ask_status, srv.socket_path)
    finally:
        outer.chmod(0o700)
        srv.socket_path.parent.chmod(0o700)
        srv.socket_path.chmod(0o600)
    assert kind == "answer"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"Connection: close" in head
    assert json.loads(body) == {
        "error": {"code": "forbidden", "message": f"uid {NOBODY} may not use this socket"}
    }
    assert services.calls == []
    refused = [e for e in logs if e["event"] == "refused a peer of another user"]
    assert len(refused) == 1
    assert refused[0]["uid"] == NOBODY and refused[0]["pid"] > 0
