"""pools/http.py against a real aiohttp server: retries, Retry-After, 429, renew-once, JSON."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pooldaemon.errors import (
    AuthError,
    IncompleteAnswer,
    NotFound,
    ProtocolError,
    RateLimited,
    TransientError,
)
from pooldaemon.pools.http import (
    Auth,
    PoolHttp,
    TokenKeeper,
    loads_strict,
    repair_thousands,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Origin:
    """A scripted origin: per path, a list of responses served in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Handler]] = {}
        self.hits: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._serve)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def script(self, path: str, *handlers: Handler) -> None:
        self.scripts[path] = list(handlers)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        self.headers.append(dict(request.headers))
        script = self.scripts.get(path)
        if not script:
            return web.json_response({"status": 404, "message": "no such endpoint"}, status=404)
        handler = script.pop(0) if len(script) > 1 else script[0]
        return await handler(request)

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def reply(
    body: Any = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    text: str | None = None,
) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if text is not None:
            return web.Response(
                text=text, status=status, headers=headers, content_type="application/json"
            )
        return web.json_response(body, status=status, headers=headers)

    return handler


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = Origin()
    await server.start()
    yield server
    await server.stop()


class Sleeps:
    """Records the delays PoolHttp asks for instead of sleeping (tests never sleep)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make_http(session: aiohttp.ClientSession, sleeps: Sleeps, **kwargs: Any) -> PoolHttp:
    return PoolHttp(session, "testpool", sleep=sleeps, timeout_s=5, **kwargs)


async def test_503_with_retry_after_seconds_is_retried_after_that_long(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    origin.script(
        "/data",
        reply({"status": 503, "message": "busy"}, status=503, headers={"Retry-After": "7"}),
        reply({"ok": True}),
    )
    sleeps = Sleeps()
    answer = await make_http(session, sleeps).call("GET", f"{origin.url}/data")
    assert answer.body == {"ok": True}
    assert origin.hits["/data"] == 2
    assert 7.0 in sleeps.delays


async def test_retry_after_as_http_date_is_honoured(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    origin.script(
        "/data",
        reply({"message": "later"}, status=503, headers={"Retry-After": when}),
        reply([1, 2, 3]),
    )
    sleeps = Sleeps()
    answer = await make_http(session, sleeps).call("GET", f"{origin.url}/data")
    assert answer.body == [1, 2, 3]
    assert any(20 <= delay <= 31 for delay in sleeps.delays)


async def test_429_every_time_ends_in_rate_limited_after_the_attempt_budget(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    origin.script(
        "/data", reply({"message": "slow down"}, status=429, headers={"Retry-After": "3"})
    )
    sleeps = Sleeps()
    with pytest.raises(RateLimited) as info:
        await make_http(session, sleeps, attempts=3).call("GET", f"{origin.url}/data")
    assert origin.hits["/data"] == 3
    assert info.value.retry_after_s == 3.0
    assert "slow down" in info.value.message
    assert info.value.code == "rate_limited"


async def test_retry_after_over_the_cap_is_capped(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    origin.script(
        "/data",
        reply({}, status=503, headers={"Retry-After": "86400"}),
        reply({"ok": 1}),
    )
    sleeps = Sleeps()
    await make_http(session, sleeps, max_wait_s=60).call("GET", f"{origin.url}/data")
    assert sleeps.delays and max(sleeps.delays) <= 60


async def test_5xx_without_retry_after_backs_off_with_growing_jittered_delays(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    origin.script("/data", reply({"message": "boom"}, status=500))
    sleeps = Sleeps()
    with pytest.raises(TransientError, match="HTTP 500: boom"):
        await make_http(session, sleeps, attempts=4, backoff_s=1.0).call(
            "GET", f"{origin.url}/data"
        )
    assert origin.hits["/data"] == 4
    assert len(sleeps.delays) == 3
    assert all(0 <= d <= 1.0 * 2**i for i, d in enumerate(sleeps.delays))


async def test_post_is_not_retried_on_its_own(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    origin.script("/toggle", reply({"message": "busy"}, status=503), reply({"ok": True}))
    sleeps = Sleeps()
    with pytest.raises(TransientError):
        await make_http(session, sleeps).call("POST", f"{origin.url}/toggle", json_body={"a": 1})
    assert origin.hits["/toggle"] == 1


async def test_dropped_connection_is_transient_and_retried(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    origin.script("/data", drop, reply({"ok": True}))
    sleeps = Sleeps()
    answer = await make_http(session, sleeps).call("GET", f"{origin.url}/data")
    assert answer.body == {"ok": True}
    assert origin.hits["/data"] == 2


async def test_404_is_not_found_with_the_pools_message(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    origin.script("/gone", reply({"status": 404, "message": "Media not found."}, status=404))
    with pytest.raises(NotFound, match="Media not found"):
        await make_http(session, Sleeps()).call("GET", f"{origin.url}/gone")
    assert origin.hits["/gone"] == 1


async def test_empty_200_body_is_an_incomplete_answer(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    origin.script("/data", reply(text=""))
    with pytest.raises(IncompleteAnswer):
        await make_http(session, Sleeps()).call("GET", f"{origin.url}/data")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"bpm": NaN}', "not a number JSON allows"),
        ('{"bpm": Infinity}', "not a number JSON allows"),
        ('{"size": 1e400}', "out of range"),
        ('{"mediaId": 1, "mediaId": 2}', "duplicate key 'mediaId'"),
        ('{"records":174,420,"pages":1,745}', "malformed JSON at byte 15"),
    ],
)
async def test_strict_json_refuses_what_python_would_accept(
    origin: Origin, session: aiohttp.ClientSession, body: str, reason: str
) -> None:
    origin.script("/data", reply(text=body))
    with pytest.raises(ProtocolError, match=reason):
        await make_http(session, Sleeps()).call("GET", f"{origin.url}/data")


def test_loads_strict_error_names_place_offset_and_redacted_snippet() -> None:
    text = '{"auth":"8cbf85588eb8d4b74ec6d44123fa0fe57693357c", "records":174,420}'
    with pytest.raises(ProtocolError) as info:
        loads_strict(text, "crateq: Content/Media")
    message = info.value.message
    assert message.startswith("crateq: Content/Media: malformed JSON at byte")
    assert "8cbf85588eb8d4b74ec6d44123fa0fe57693357c" not in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # A duplicate deep inside a page of otherwise clean records.
        ('{"data":[' + '{"a":"x:y","b":1},' * 50 + '{"a":1,"b":2,"a":3}]}', "duplicate key 'a'"),
        # An escaped colon must not hide the colon the duplicate took with it.
        ('{"a":"\\u003a","b":1,"b":2}', "duplicate key 'b'"),
        ('{"data":[{"bpm":1e400}]}', "out of range"),
        ('{"data":[{"bpm":-Infinity}]}', "not a number JSON allows"),
    ],
)
def test_strict_json_refuses_the_same_in_big_pages(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        loads_strict(text, "crateq: Content/Media")


@pytest.mark.parametrize(
    "text",
    [
        '{"mediaId":18446744073709551616,"small":-9223372036854775809}',  # past 64 bits
        '{"title":"Time\\u003a Remix","a:b":"c:d","e+":"1e+5","n":[1e+5,2.5e-3,-0.0]}',
        '{"artist":"Ros\\u00e9 \\ud83c\\udfb5","nested":{"x":[{"y":null}]}}',
        '["\\ud800"]',  # a lone surrogate: json keeps it
        '{"a":1}',
    ],
)
def test_strict_json_parses_exactly_as_pythons_json(text: str) -> None:
    import json

    parsed = loads_strict(text, "x")
    expected = json.loads(text)
    assert parsed == expected
    assert json.dumps(parsed) == json.dumps(expected)  # ints stay ints, floats floats


def test_repair_thousands_fixes_only_records_and_pages() -> None:
    text = '{"records":174,420,"message":"0-100","pages":1,745,"page":1,"data":[{"bpm":1,234}]}'
    fixed, changed = repair_thousands(text)
    assert changed
    assert '"records":174420' in fixed
    assert '"pages":1745' in fixed
    # Anything else with a comma in it stays broken: the repair is narrow (docs/reliability.md M1).
    assert '"bpm":1,234' in fixed
    assert repair_thousands('{"records":100,"pages":1}') == ('{"records":100,"pages":1}', False)


class AuthOrigin:
    """An origin whose `/data` accepts only the latest token that `/login` handed out."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.logins = 0
        self.valid = "token-0"
        origin.script("/login", self._login)
        origin.script("/data", self._data)
        self.gate = asyncio.Event()
        self.gate.set()

    async def _login(self, request: web.Request) -> web.StreamResponse:
        self.logins += 1
        await self.gate.wait()
        self.valid = f"token-{self.logins}"
        return web.json_response({"token": self.valid})

    async def _data(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.valid}":
            return web.json_response({"status": 401, "message": "token expired"}, status=401)
        return web.json_response({"ok": True})


def auth_for(http: PoolHttp, url: str) -> Auth:
    async def fetch() -> tuple[str, float | None]:
        answer = await http.call("POST", f"{url}/login", idempotent=True)
        return str(answer.body["token"]), None

    return Auth(keeper=TokenKeeper(fetch), headers=lambda t: {"Authorization": f"Bearer {t}"})


async def test_401_renews_the_token_once_and_retries(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    server = AuthOrigin(origin)
    http = make_http(session, Sleeps())
    auth = auth_for(http, origin.url)
    auth.keeper.set("stale", None)
    answer = await http.call("GET", f"{origin.url}/data", auth=auth)
    assert answer.body == {"ok": True}
    assert server.logins == 1
    assert origin.hits["/data"] == 2


async def test_401_after_renewing_is_an_auth_error(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    server = AuthOrigin(origin)
    origin.script("/data", reply({"status": 401, "message": "account locked"}, status=401))
    http = make_http(session, Sleeps())
    auth = auth_for(http, origin.url)
    with pytest.raises(AuthError, match="account locked"):
        await http.call("GET", f"{origin.url}/data", auth=auth)
    # One sign-in for the missing token, one renewal after the 401: never a loop.
    assert server.logins == 2
    assert origin.hits["/data"] == 2


async def test_concurrent_401s_cause_exactly_one_sign_in(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    """docs/reliability.md T3: eight workers and two pollers see a 401 at once; one login
    happens."""
    server = AuthOrigin(origin)
    http = make_http(session, Sleeps())
    auth = auth_for(http, origin.url)
    auth.keeper.set("stale", None)
    server.gate.clear()  # hold the login until everyone has seen their 401
    calls = [
        asyncio.create_task(http.call("GET", f"{origin.url}/data", auth=auth)) for _ in range(10)
    ]
    while origin.hits.get("/data", 0) < 10 or server.logins < 1:
        await asyncio.sleep(0)
    server.gate.set()
    answers = await asyncio.gather(*calls)
    assert all(answer.body == {"ok": True} for answer in answers)
    assert server.logins == 1
    assert origin.hits["/data"] == 20


async def test_token_near_expiry_is_renewed_before_the_call(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    server = AuthOrigin(origin)
    http = make_http(session, Sleeps())
    now = [1000.0]
    auth = auth_for(http, origin.url)
    auth = Auth(keeper=auth.keeper, headers=auth.headers, clock=lambda: now[0])
    auth.keeper.set("token-0", expires_at=1030.0)  # within the 60 s margin
    await http.call("GET", f"{origin.url}/data", auth=auth)
    assert server.logins == 1
    assert origin.hits["/data"] == 1  # renewed first, so no 401 was ever seen
