"""The control server in-process, on a real Unix socket, with a fake Services (docs/interface.md
§4)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pooldaemon.control.client import ControlClient, DaemonRefused, DaemonUnreachable
from pooldaemon.control.server import ControlServer, SocketSetupError, sun_path_limit
from pooldaemon.errors import NotFound, Unsupported
from pooldaemon.events import EventBus
from pooldaemon.log import REDACTOR
from tests.another_user import NOBODY

CANARY = "CANARY-s3cr3t-value"


class FakeServices:
    """Records calls; answers with what the test put in `answers`, or raises `raises`."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.calls: list[tuple[str, Any]] = []
        self.raises: BaseException | None = None

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.raises is not None:
            raise self.raises

    async def status(self) -> dict[str, Any]:
        self._call("status")
        return {"version": "0", "uptime_s": 1.0, "pools": [], "jobs": {}, "rate_bps": 0}

    async def pools(self) -> list[dict[str, Any]]:
        self._call("pools")
        return [{"name": "crateq", "type": "crateq"}]

    async def sync(self, pool: str, full: bool) -> dict[str, Any]:
        self._call("sync", pool, full)
        return {"added": 1, "updated": 0, "removed": 0, "queue_new": 0}

    async def search(self, params: dict[str, str]) -> dict[str, Any]:
        self._call("search", params)
        return {"total": 0, "items": []}

    async def list_jobs(
        self, state: str | None, pool: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        self._call("list_jobs", state, pool, limit, offset)
        return {"total": 1, "items": [{"id": 1, "state": "queued"}]}

    async def get_job(self, job_id: int) -> dict[str, Any]:
        self._call("get_job", job_id)
        if job_id == 404:
            raise NotFound("no job 404")
        return {"id": job_id, "state": "queued"}

    async def submit(
        self, refs: list[str], *, redownload: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        self._call("submit", refs, redownload, reason)
        return {"accepted": [{"ref": r, "job": i} for i, r in enumerate(refs, 1)], "rejected": []}

    async def job_action(self, job_id: int, action: str) -> dict[str, Any]:
        self._call("job_action", job_id, action)
        return {"id": job_id, "state": action}

    async def pause_all(self) -> dict[str, Any]:
        self._call("pause_all")
        return {"paused": True}

    async def resume_all(self) -> dict[str, Any]:
        self._call("resume_all")
        return {"paused": False}

    async def queue(self, pool: str) -> dict[str, Any]:
        self._call("queue", pool)
        return {"pool": pool, "items": []}

    async def queue_edit(self, pool: str, add: str | None, remove: str | None) -> dict[str, Any]:
        self._call("queue_edit", pool, add, remove)
        return {"pool": pool, "items": []}


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
async def server(services: FakeServices, sock_dir: Path) -> AsyncIterator[ControlServer]:
    srv = ControlServer(
        services,
        sock_dir / "ctl" / "control.sock",
        heartbeat_s=0.05,
        idle_timeout_s=0.3,
        body_timeout_s=0.3,
    )
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http(server: ControlServer) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.UnixConnector(path=str(server.socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def _ask(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, "http://pooldaemon" + path, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


def _error(code: str, contains: str) -> Any:
    class Matcher:
        def __eq__(self, other: object) -> bool:
            return (
                isinstance(other, dict)
                and other.get("error", {}).get("code") == code
                and contains in other["error"].get("message", "")
            )

        def __repr__(self) -> str:
            return f"<error {code} containing {contains!r}>"

    return Matcher()


# -- the socket file ---------------------------------------------------------------------------


async def test_socket_is_0600_in_a_0700_directory(server: ControlServer) -> None:
    assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(server.socket_path).st_mode)
    assert stat.S_IMODE(os.stat(server.socket_path.parent).st_mode) == 0o700


async def test_stop_removes_the_socket(services: FakeServices, sock_dir: Path) -> None:
    srv = ControlServer(services, sock_dir / "control.sock")
    await srv.start()
    await srv.stop()
    assert not (sock_dir / "control.sock").exists()


async def test_stale_socket_of_ours_is_replaced(services: FakeServices, sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening: what a crash leaves behind
    dead.close()
    srv = ControlServer(services, path)
    await srv.start()
    try:
        async with ControlClient(path) as client:
            assert (await client.get("/v1/pools"))[0]["name"] == "crateq"
    finally:
        await srv.stop()


async def test_live_socket_is_refused(server: ControlServer, services: FakeServices) -> None:
    second = ControlServer(services, server.socket_path)
    with pytest.raises(SocketSetupError, match="another daemon is listening on "):
        await second.start()
    # The first one still answers.
    async with ControlClient(server.socket_path) as client:
        assert (await client.get("/v1/status"))["version"] == "0"


async def test_non_socket_file_is_refused(services: FakeServices, sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(SocketSetupError, match="exists and is not a socket"):
        await ControlServer(services, path).start()
    assert path.read_text() == "not a socket"


async def test_group_readable_directory_is_refused(services: FakeServices, sock_dir: Path) -> None:
    sock_dir.chmod(0o755)
    with pytest.raises(SocketSetupError, match=r"has mode 0755; .*chmod 700"):
        await ControlServer(services, sock_dir / "control.sock").start()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a directory another user owns")
async def test_directory_owned_by_another_user_is_refused(
    services: FakeServices, sock_dir: Path
) -> None:
    os.chown(sock_dir, NOBODY, NOBODY)
    with pytest.raises(SocketSetupError, match="is owned by uid 65534, not by you"):
        await ControlServer(services, sock_dir / "control.sock").start()


async def test_too_long_path_is_a_clear_error(services: FakeServices, sock_dir: Path) -> None:
    path = sock_dir / ("x" * (sun_path_limit() + 1))
    with pytest.raises(SocketSetupError, match=r"bytes; this platform allows at most 10[37]"):
        await ControlServer(services, path).start()


# -- routes ------------------------------------------------------------------------------------


async def test_every_route_reaches_services(
    http: aiohttp.ClientSession, services: FakeServices
) -> None:
    asks = [
        ("GET", "/v1/status", {}),
        ("GET", "/v1/pools", {}),
        ("POST", "/v1/pools/crateq/sync", {"json": {"full": True}}),
        ("GET", "/v1/catalog", {"params": {"q": "daft", "bpm": "120-128"}}),
        ("GET", "/v1/jobs", {"params": {"state": "failed", "pool": "crateq"}}),
        ("POST", "/v1/jobs", {"json": {"refs": ["crateq:1", "crateq:2"]}}),
        ("GET", "/v1/jobs/7", {}),
        ("POST", "/v1/jobs/7/retry", {}),
        ("POST", "/v1/jobs/7/cancel", {}),
        ("POST", "/v1/jobs/7/pause", {}),
        ("POST", "/v1/jobs/7/resume", {}),
        ("POST", "/v1/redownload", {"json": {"refs": ["crateq:1"], "reason": "corrupt file"}}),
        ("POST", "/v1/pause", {}),
        ("POST", "/v1/resume", {}),
        ("GET", "/v1/pools/crateq/queue", {}),
        ("POST", "/v1/pools/crateq/queue", {"json": {"add": 570291}}),
        ("POST", "/v1/pools/crateq/queue", {"json": {"remove": "570291"}}),
    ]
    for method, path, kwargs in asks:
        status, _ = await _ask(http, method, path, **kwargs)
        assert status == 200, (method, path)
    assert services.calls == [
        ("status", ()),
        ("pools", ()),
        ("sync", ("crateq", True)),
        ("search", ({"q": "daft", "bpm": "120-128"},)),
        ("list_jobs", ("failed", "crateq", 500, 0)),
        ("submit", (["crateq:1", "crateq:2"], False, None)),
        ("get_job", (7,)),
        ("job_action", (7, "retry")),
        ("job_action", (7, "cancel")),
        ("job_action", (7, "pause")),
        ("job_action", (7, "resume")),
        ("submit", (["crateq:1"], True, "corrupt file")),
        ("pause_all", ()),
        ("resume_all", ()),
        ("queue", ("crateq",)),
        ("queue_edit", ("crateq", "570291", None)),
        ("queue_edit", ("crateq", None, "570291")),
    ]


async def test_answers_as_contract_shapes(http: aiohttp.ClientSession) -> None:
    assert await _ask(http, "GET", "/v1/jobs") == (
        200,
        {"total": 1, "items": [{"id": 1, "state": "queued"}]},
    )
    assert await _ask(http, "POST", "/v1/jobs", json={"refs": ["crateq:9"]}) == (
        200,
        {"accepted": [{"ref": "crateq:9", "job": 1}], "rejected": []},
    )
    assert await _ask(http, "POST", "/v1/pools/crateq/sync") == (
        200,
        {"added": 1, "updated": 0, "removed": 0, "queue_new": 0},
    )


BAD_REQUESTS = [
    # (method, path, raw body or None, status, code, message contains)
    ("GET", "/v1/nothing", None, 404, "not_found", "no such endpoint: GET /v1/nothing"),
    ("GET", "/v2/status", None, 404, "not_found", "no such endpoint"),
    ("DELETE", "/v1/status", None, 405, "method_not_allowed", "allowed: GET"),
    ("GET", "/v1/pause", None, 405, "method_not_allowed", "allowed: POST"),
    ("POST", "/v1/jobs", b'{"refs": [', 400, "bad_request", "malformed JSON body: Expecting"),
    ("POST", "/v1/jobs", b'["crateq:1"]', 400, "bad_request", "must be a JSON object, not a list"),
    ("POST", "/v1/jobs", b'{"refs": "crateq:1"}', 400, "bad_request", '"refs" must be a list'),
    ("POST", "/v1/jobs", b'{"refs": [1]}', 400, "bad_request", '"refs"[0] must be a string'),
    ("POST", "/v1/jobs", b'{"refs": []}', 400, "bad_request", '"refs" must be a non-empty'),
    ("POST", "/v1/jobs", b'{"ref": ["a:1"]}', 400, "bad_request", "unknown field(s) ref"),
    ("POST", "/v1/jobs", b"\xff\xfe{}", 400, "bad_request", "not UTF-8"),
    ("POST", "/v1/pools/x/sync", b'{"full": "yes"}', 400, "bad_request", "true or false"),
    ("POST", "/v1/pools/x/sync", b'{"full": 1}', 400, "bad_request", "not a number"),
    ("POST", "/v1/pools/x/sync", b'{"full": NaN}', 400, "bad_request", "NaN is not valid JSON"),
    ("POST", "/v1/redownload", b'{"refs": ["a:1"]}', 400, "bad_request", '"reason" is required'),
    ("POST", "/v1/redownload", b'{"refs": ["a:1"], "reason": " "}', 400, "bad_request", "reason"),
    ("POST", "/v1/pools/x/queue", b'{"add": 1, "remove": 2}', 400, "bad_request", "exactly one"),
    ("POST", "/v1/pools/x/queue", b"{}", 400, "bad_request", "exactly one"),
    ("POST", "/v1/pools/x/queue", b'{"add": true}', 400, "bad_request", '"add" must be'),
    ("GET", "/v1/jobs/abc", None, 400, "bad_request", "job id must be a number"),
    ("POST", "/v1/jobs/1/explode", None, 404, "not_found", "no such endpoint"),
    ("GET", "/v1/jobs/404", None, 404, "not_found", "no job 404"),
    ("GET", "/v1/jobs?state=lost", None, 400, "bad_request", "unknown job state 'lost'"),
    ("GET", "/v1/jobs?colour=red", None, 400, "bad_request", "colour"),
    ("GET", "/v1/catalog?colour=red", None, 400, "bad_request", "unknown query parameter"),
    ("GET", "/v1/catalog?q=a&q=b", None, 400, "bad_request", "given 2 times"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "contains"), BAD_REQUESTS)
async def test_bad_requests_get_json_errors(
    http: aiohttp.ClientSession,
    services: FakeServices,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
    contains: str,
) -> None:
    got = await _ask(http, method, path, data=body)
    assert got == (status, _error(code, contains))
    assert all(name == "get_job" for name, _ in services.calls)  # nothing half-done


async def test_a_key_given_twice_is_refused_not_silently_overwritten(
    http: aiohttp.ClientSession, services: FakeServices
) -> None:
    """docs/interface.md §4: the socket decodes JSON as strictly as the pools' answers are."""
    body = b'{"refs": ["crateq:1"], "reason": "lost", "refs": ["crateq:2"]}'
    status, answer = await _ask(http, "POST", "/v1/redownload", data=body)
    assert status == 400
    assert answer == {
        "error": {"code": "bad_request", "message": "malformed JSON body: duplicate key 'refs'"}
    }
    assert services.calls == []  # nothing was submitted, neither the first nor the last refs


async def test_oversized_body_is_refused_with_a_message(
    http: aiohttp.ClientSession, services: FakeServices
) -> None:
    body = json.dumps({"refs": ["crateq:1" * 10_000]}).encode()
    assert len(body) > 64 * 1024
    assert await _ask(http, "POST", "/v1/jobs", data=body) == (
        413,
        _error("too_large", "Maximum request body size 65536 exceeded"),
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 8192  # chunked: no Content-Length to refuse up front

    assert await _ask(http, "POST", "/v1/pause", data=chunks()) == (
        413,
        _error("too_large", "65536"),
    )
    assert services.calls == []
    assert (await _ask(http, "GET", "/v1/status"))[0] == 200


async def test_service_errors_keep_their_code_and_status(
    http: aiohttp.ClientSession, services: FakeServices
) -> None:
    services.raises = Unsupported("sync lands with the pool adapters")
    assert await _ask(http, "POST", "/v1/pools/crateq/sync") == (
        400,
        _error("unsupported", "sync lands with the pool adapters"),
    )


async def test_unexpected_exception_is_500_redacted_and_server_lives_on(
    http: aiohttp.ClientSession, services: FakeServices
) -> None:
    REDACTOR.add([CANARY])
    services.raises = RuntimeError(f"boom with {CANARY} inside")
    import structlog

    with structlog.testing.capture_logs() as logs:
        status, body = await _ask(http, "GET", "/v1/status")
    assert status == 500
    assert body["error"]["code"] == "internal"
    assert "RuntimeError: boom with" in body["error"]["message"]
    assert CANARY not in json.dumps(body)
    assert [e["event"] for e in logs] == ["control request failed"]  # logged once
    services.raises = None
    assert (await _ask(http, "GET", "/v1/status"))[0] == 200


async def test_free_text_in_answers_is_redacted(
    http: aiohttp.ClientSession, services: FakeServices
) -> None:
    REDACTOR.add([CANARY])

    async def status() -> dict[str, Any]:
        return {"pools": [{"name": "p", "last_error": f"401 for key={CANARY}"}], "title": "ok"}

    services.status = status  # type: ignore[method-assign]
    _, body = await _ask(http, "GET", "/v1/status")
    assert body["pools"][0]["last_error"] == "401 for key=********"


# -- slow clients ------------------------------------------------------------------------------


async def test_client_that_never_finishes_its_headers_is_dropped(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
    writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")  # and then nothing (slowloris)
    await writer.drain()
    # The server hangs up (idle_timeout_s=0.3); the wait_for is a guard, not the assertion.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_body_that_never_arrives_gets_408(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
    writer.write(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"refs"'
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"] == {
        "code": "timeout",
        "message": "request body not received within 0.3 s",
    }


# -- peer credentials --------------------------------------------------------------------------


async def test_peer_with_another_uid_gets_403_and_is_hung_up_on(
    services: FakeServices, sock_dir: Path
) -> None:
    import structlog

    # Pretend the daemon belongs to someone else: our own connection is then the stranger's.
    srv = ControlServer(services, sock_dir / "control.sock", allowed_uid=os.getuid() + 1)
    await srv.start()
    try:
        with structlog.testing.capture_logs() as logs:
            reader, writer = await asyncio.open_unix_connection(str(srv.socket_path))
            writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 10)  # read() to EOF: it hung up
            writer.close()
    finally:
        await srv.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403")
    assert json.loads(body)["error"]["code"] == "forbidden"
    assert services.calls == []
    refused = [e for e in logs if e["event"] == "refused a peer of another user"]
    assert refused and refused[0]["uid"] == os.getuid() and refused[0]["pid"] == os.getpid()


# -- events ------------------------------------------------------------------------------------


async def test_events_stream_delivers_published_events_and_heartbeats(
    server: ControlServer, services: FakeServices
) -> None:
    async with ControlClient(server.socket_path) as client:
        stream = client.stream("/v1/events")
        first = await anext(stream)
        assert first["type"] == "subscribed"
        services.events.publish("job.state", job={"id": 3, "state": "downloading"})
        services.events.publish("job.progress", job=3, bytes_done=10, bytes_total=100)
        got = [await anext(stream) for _ in range(2)]
        assert [e["type"] for e in got] == ["job.state", "job.progress"]
        assert got[0]["job"] == {"id": 3, "state": "downloading"}
        assert got[1]["bytes_done"] == 10
        # Nothing published: heartbeats keep coming (heartbeat_s=0.05 here, 15 s by default).
        assert (await anext(stream))["type"] == "heartbeat"
        await stream.aclose()


async def test_events_stream_ends_with_shutdown_when_the_server_stops(
    services: FakeServices, sock_dir: Path
) -> None:
    srv = ControlServer(services, sock_dir / "control.sock")
    await srv.start()
    async with ControlClient(srv.socket_path) as client:
        stream = client.stream("/v1/events")
        assert (await anext(stream))["type"] == "subscribed"
        stopping = asyncio.create_task(srv.stop())
        assert (await anext(stream))["type"] == "shutdown"
        with pytest.raises(DaemonUnreachable, match="closed the event stream"):
            await anext(stream)
        await stopping
    assert services.events.subscribers == 0


# -- the client --------------------------------------------------------------------------------


async def test_client_raises_refused_with_code(server: ControlServer) -> None:
    async with ControlClient(server.socket_path) as client:
        with pytest.raises(DaemonRefused) as caught:
            await client.get("/v1/jobs/404")
    assert (caught.value.code, caught.value.status) == ("not_found", 404)
    assert caught.value.message == "no job 404"


async def test_client_without_daemon_says_how_to_start(sock_dir: Path) -> None:
    async with ControlClient(sock_dir / "absent.sock") as client:
        with pytest.raises(DaemonUnreachable) as caught:
            await client.get("/v1/status")
    assert str(caught.value) == (
        f"pooldaemon is not running (no socket at {sock_dir / 'absent.sock'}). "
        "Start it with `systemctl --user start pooldaemon` or `pooldaemon run`."
    )
