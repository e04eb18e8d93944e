"""The dashboard refuses what it must, over raw HTTP against a real daemon (docs/reliability.md
W1): no session, a wrong Host, a cross-origin or token-less state change, a used or expired
login link. Each refusal is checked to change nothing: a queued job stays queued."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pooldaemon.config import ConfigError, load_config
from pooldaemon.web.app import WebServer, settings_answer
from pooldaemon.web.security import is_loopback

from .conftest import Dashboard, Session, request

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)


async def queued_job(dash: Dashboard) -> int:
    """A job that stays queued: the downloader is paused before it is submitted."""
    await dash.client.post("/v1/pools/crateq/sync", {"full": True})
    await dash.client.post("/v1/pause")
    ref = f"crateq:{dash.crateq.catalog.ids()[0]}"
    answer = await dash.client.post("/v1/jobs", {"refs": [ref]})
    job = int(answer["accepted"][0]["job"])
    assert await dash.job_state(job) == "queued"
    return job


def state_changing_headers(dash: Dashboard, session: Session) -> dict[str, str]:
    return {"Origin": dash.origin, "X-CSRF-Token": session.csrf}


async def test_a_login_link_opens_a_session_with_a_strict_cookie(dashboard: Dashboard) -> None:
    link = await dashboard.login_link()
    assert link.startswith(dashboard.origin + "/login?token=")
    async with dashboard.http.get(link, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/"
        cookie = resp.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP on loopback: a Secure cookie would be dropped
    session = await dashboard.login()
    status, headers, body = await request(dashboard, "GET", "/", session=session)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert f'<meta name="csrf-token" content="{session.csrf}">' in body.decode()
    assert "<script>" not in body.decode()  # the CSP forbids inline script; there is none
    status, _, body = await request(dashboard, "GET", "/api/v1/status", session=session)
    assert status == 200 and json.loads(body)["pools"][0]["name"] == "crateq"


async def test_every_answer_carries_the_security_headers(dashboard: Dashboard) -> None:
    session = await dashboard.login()
    for path, who in [
        ("/", session),
        ("/", None),
        ("/api/v1/jobs", None),
        ("/static/app.js", None),
        ("/api/v1/nosuch", session),
    ]:
        _, headers, _ = await request(dashboard, "GET", path, session=who)
        assert headers["Content-Security-Policy"].startswith(CSP), path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
    _, headers, _ = await request(dashboard, "GET", "/", headers={"Host": "evil.example"})
    assert headers["Content-Security-Policy"].startswith(CSP)


async def test_without_a_session_pages_say_run_poolctl_ui_and_the_api_says_401(
    dashboard: Dashboard,
) -> None:
    job = await queued_job(dashboard)
    status, headers, body = await request(dashboard, "GET", "/")
    assert status == 401 and headers["Content-Type"].startswith("text/html")
    assert "poolctl ui" in body.decode()
    status, _, body = await request(dashboard, "GET", "/api/v1/jobs")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    status, _, _ = await request(dashboard, "GET", "/api/v1/events")
    assert status == 401
    forged = Session("not-a-session", "x")
    status, _, _ = await request(
        dashboard,
        "POST",
        f"/api/v1/jobs/{job}/cancel",
        session=forged,
        headers=state_changing_headers(dashboard, forged),
    )
    assert status == 401
    assert await dashboard.job_state(job) == "queued"


async def test_a_wrong_host_is_refused_even_with_a_valid_session(dashboard: Dashboard) -> None:
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
    session = await dashboard.login()
    job = await queued_job(dashboard)
    port = dashboard.host.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.2:{port}"):
        status, _, _ = await request(
            dashboard, "GET", "/api/v1/jobs", session=session, headers={"Host": host}
        )
        assert status == 421, host
        status, _, _ = await request(
            dashboard,
            "POST",
            f"/api/v1/jobs/{job}/cancel",
            session=session,
            headers={"Host": host, "Origin": f"http://{host}", "X-CSRF-Token": session.csrf},
        )
        assert status == 421, host
    assert await dashboard.job_state(job) == "queued"
    # localhost is the listen address's other name, and answers.
    status, _, _ = await request(
        dashboard, "GET", "/api/v1/jobs", session=session, headers={"Host": f"localhost:{port}"}
    )
    assert status == 200


async def test_state_changes_need_a_same_origin_origin_and_the_csrf_token(
    dashboard: Dashboard,
) -> None:
    session = await dashboard.login()
    job = await queued_job(dashboard)
    path = f"/api/v1/jobs/{job}/cancel"
    # One character off: the last one changed to another. A fixed "A" was the token itself one
    # run in 16 (32 random bytes in base64: the last character holds 4 bits, "A" is 0000).
    wrong = session.csrf[:-1] + ("B" if session.csrf.endswith("A") else "A")
    refused = [
        {"Origin": "http://evil.example", "X-CSRF-Token": session.csrf},  # cross-origin
        {"Origin": "null", "X-CSRF-Token": session.csrf},  # a sandboxed frame
        {"Origin": dashboard.origin.replace("http:", "https:"), "X-CSRF-Token": session.csrf},
        {"X-CSRF-Token": session.csrf},  # no Origin at all
        {"Origin": dashboard.origin},  # no token
        {"Origin": dashboard.origin, "X-CSRF-Token": wrong},
        {"Origin": dashboard.origin, "X-CSRF-Token": ""},
    ]
    for headers in refused:
        status, _, body = await request(dashboard, "POST", path, session=session, headers=headers)
        assert status == 403, (headers, body)
        assert json.loads(body)["error"]["code"] == "forbidden"
    # Another session's token is not this session's.
    other = await dashboard.login()
    status, _, _ = await request(
        dashboard,
        "POST",
        path,
        session=session,
        headers={"Origin": dashboard.origin, "X-CSRF-Token": other.csrf},
    )
    assert status == 403
    assert await dashboard.job_state(job) == "queued"
    # The same request done right goes through: the refusals above were about the headers.
    status, _, body = await request(
        dashboard, "POST", path, session=session, headers=state_changing_headers(dashboard, session)
    )
    assert status == 200, body
    assert json.loads(body)["state"] == "cancelled"
    assert await dashboard.job_state(job) == "cancelled"
    status, _, body = await request(
        dashboard,
        "POST",
        f"/api/v1/jobs/{job}/retry",
        session=session,
        headers=state_changing_headers(dashboard, session),
    )
    assert status == 200 and json.loads(body)["state"] == "queued", body


async def test_signing_out_ends_the_session_and_needs_the_token_too(
    dashboard: Dashboard,
) -> None:
    session = await dashboard.login()
    status, _, _ = await request(
        dashboard, "POST", "/logout", session=session, headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    status, _, _ = await request(dashboard, "GET", "/api/v1/status", session=session)
    assert status == 200  # a forged sign-out changed nothing
    status, headers, _ = await request(
        dashboard,
        "POST",
        "/logout",
        session=session,
        headers=state_changing_headers(dashboard, session),
    )
    assert status == 204 and "pd_session=" in headers["Set-Cookie"]
    status, _, _ = await request(dashboard, "GET", "/api/v1/status", session=session)
    assert status == 401


async def test_a_login_link_works_once(dashboard: Dashboard) -> None:
    link = await dashboard.login_link()
    async with dashboard.http.get(link, allow_redirects=False) as resp:
        assert resp.status == 303
    async with dashboard.http.get(link, allow_redirects=False) as resp:
        assert resp.status == 401
        assert "Set-Cookie" not in resp.headers
        assert "poolctl ui" in await resp.text()
    for bad in ("", "?token=", "?token=guessed"):
        status, headers, _ = await request(dashboard, "GET", "/login" + bad)
        assert status == 401 and "Set-Cookie" not in headers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_links_and_sessions_expire(dashboard: Dashboard) -> None:
    # The real app over the same daemon, on its own port, with a clock the test moves.
    clock = Clock()
    assert dashboard.daemon.server is not None
    web = WebServer(
        dashboard.config.web,
        dashboard.daemon.server,
        dashboard.daemon.events,
        lambda: settings_answer(dashboard.config),
        clock=clock,
        link_ttl_s=60,
        session_idle_s=3600,
    )
    await web.start()
    try:
        async with dashboard.http.get(web.login_link(), allow_redirects=False) as resp:
            assert resp.status == 303
            cookie = resp.cookies["pd_session"].value
        stale = web.login_link()
        clock.now += 61
        async with dashboard.http.get(stale, allow_redirects=False) as resp:
            assert resp.status == 401 and "Set-Cookie" not in resp.headers
        # Used within the hour, the session lives on; an idle hour ends it.
        api = web.origin + "/api/v1/status"
        headers = {"Cookie": f"pd_session={cookie}"}
        clock.now += 3500
        async with dashboard.http.get(api, headers=headers) as resp:
            assert resp.status == 200
        clock.now += 3600
        async with dashboard.http.get(api, headers=headers) as resp:
            assert resp.status == 401
    finally:
        await web.stop()


async def test_a_closed_tab_frees_its_stream_and_slow_tabs_stay_bounded(
    dashboard: Dashboard,
) -> None:
    session = await dashboard.login()
    web = dashboard.daemon.web
    assert web is not None
    url = dashboard.origin + "/api/v1/events"
    headers = {"Cookie": f"pd_session={session.cookie}", "Accept": "text/event-stream"}
    async with dashboard.http.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert b"retry:" in await resp.content.readline()
        first = await anext(_messages(resp))
        assert first["type"] == "subscribed"
        dashboard.daemon.events.publish("sync", pool="crateq", what="catalog")
        event = await anext(_messages(resp))
        assert (event["type"], event["pool"]) == ("sync", "crateq")
        assert web.hub.clients == 1
    await _until(lambda: web.hub.clients == 0)
    # Tabs that never read: once their sockets are full their queues overflow, and they stay
    # bounded (the tab is told to resync) while publishing never waits on them.
    streams = [await dashboard.http.get(url, headers=headers) for _ in range(20)]
    try:
        await _until(lambda: web.hub.clients == 20)
        padding = "x" * 4000
        for batch in range(400):
            for i in range(100):
                dashboard.daemon.events.publish("job.progress", job=batch, done=i, pad=padding)
            await asyncio.sleep(0.001)  # the hub and the handlers take their turn
            assert all(len(c._queue) <= 65 for c in web.hub._clients)
            if all(c.resyncs for c in web.hub._clients):
                break
        assert all(c.resyncs for c in web.hub._clients), "no tab ever fell behind"
    finally:
        for stream in streams:
            stream.close()
    await _until(lambda: web.hub.clients == 0)


async def _messages(resp):  # type: ignore[no-untyped-def]
    while True:
        line = await resp.content.readline()
        if line.startswith(b"data: "):
            yield json.loads(line[6:])


async def _until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.1")
    assert not is_loopback("192.168.1.20") and not is_loopback(None) and not is_loopback("x")


def test_web_config_is_loopback_only_unless_remote_with_tls(tmp_path: Path) -> None:
    def load(web: str) -> None:
        path = tmp_path / "c.toml"
        path.write_text("[web]\n" + web)
        load_config(path, env={"HOME": str(tmp_path)})

    load('listen = "[::1]:9000"')
    load('listen = "localhost:0"')
    path = tmp_path / "env.toml"
    path.write_text("")
    cfg = load_config(path, env={"HOME": str(tmp_path), "POOLDAEMON_WEB__ENABLED": "false"})
    assert cfg.web.enabled is False and cfg.web.listen == "127.0.0.1:8577"
    cases = {
        'listen = "0.0.0.0:8577"': "web.listen: 0.0.0.0 is not a loopback address",
        'listen = "8577"': 'web.listen: must be "host:port"',
        'listen = "dash.example:8577"': "the host must be an IP address or localhost",
        'listen = "127.0.0.1:70000"': 'web.listen: must be "host:port"',
        'listen = "0.0.0.0:8577"\nallow_remote = true': "web.tls_cert: allow_remote = true needs",
        'tls_cert = "c.pem"': "web.tls_key: tls_cert and tls_key go together",
        "enabeld = false": 'web.enabeld: unknown key (did you mean "enabled"?)',
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError) as err:
            load(text)
        assert any(message in problem for problem in err.value.problems), err.value.problems
