"""The dashboard's web server (docs/interface.md §11): pages, login, and the control API.

`/api/v1/…` is the control socket's own API (the same handlers, mounted by
`ControlServer.add_routes`) behind the session cookie instead of peer credentials;
`/api/v1/events` is the event stream as Server-Sent Events for `EventSource`;
`/api/v1/settings` is `pooldaemon check-config` (`--json`, plus the TOML text), secrets masked.
"""

from __future__ import annotations

import html
import socket
import ssl
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from pooldaemon.config import Config, WebConfig, effective_dict, render_effective
from pooldaemon.control.server import ControlServer, error_response, json_response
from pooldaemon.errors import PoolDaemonError
from pooldaemon.events import EventBus
from pooldaemon.log import get_logger
from pooldaemon.web.auth import LINK_TTL_S, SESSION_IDLE_S, Clock, LoginLinks, Sessions
from pooldaemon.web.security import COOKIE, SESSION_KEY, Guard, add_headers, host_names, page
from pooldaemon.web.stream import SseHub, TooManyStreams, hello, sse

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
#: Views that show what exists: the page asks for these only when the API has them.
OPTIONAL_ENDPOINTS = ("rules", "library", "library/duplicates", "library/audit")
_WILDCARD = frozenset({"0.0.0.0", "::"})


def settings_answer(config: Config) -> dict[str, Any]:
    """`/api/v1/settings`: what `pooldaemon check-config` shows, as JSON and as its TOML text,
    secrets masked in both."""
    return {**effective_dict(config), "toml": render_effective(config)}


class WebSetupError(PoolDaemonError):
    """The dashboard cannot listen as configured; the message names the key to change."""

    code = "web"


class WebServer:
    """Serves the dashboard on `[web] listen` until `stop()`."""

    def __init__(
        self,
        config: WebConfig,
        api: ControlServer,
        events: EventBus,
        settings: Callable[[], dict[str, Any]],
        *,
        clock: Clock = time.monotonic,
        link_ttl_s: float = LINK_TTL_S,
        session_idle_s: float = SESSION_IDLE_S,
        heartbeat_s: float = 15.0,
        stream_queue_events: int = 64,
        max_streams: int = 256,
    ) -> None:
        self.config = config
        self.links = LoginLinks(ttl_s=link_ttl_s, clock=clock)
        self.sessions = Sessions(idle_s=session_idle_s, clock=clock)
        self.hub = SseHub(events, queue_events=stream_queue_events, max_clients=max_streams)
        self.heartbeat_s = heartbeat_s
        self._settings = settings
        self._tls = config.tls_cert is not None
        self.guard = Guard(self.sessions, tls=self._tls, allow_remote=config.allow_remote)
        self._shell = page("index.html")
        self._features = ""
        self.app = self._build_app(api)
        self._sock: socket.socket | None = None
        self._ssl: ssl.SSLContext | None = None
        self._runner: web.AppRunner | None = None
        self.origin = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def bind(self) -> None:
        """Claim the listen address now; WebSetupError names the key to change."""
        if self._sock is not None:
            return
        cfg = self.config
        if self._tls:
            assert cfg.tls_cert is not None and cfg.tls_key is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            except (OSError, ssl.SSLError) as err:
                raise WebSetupError(
                    f"cannot load the dashboard's certificate (web.tls_cert = {cfg.tls_cert}, "
                    f"web.tls_key = {cfg.tls_key}): {err}"
                ) from err
            self._ssl = context
        host = "127.0.0.1" if cfg.host == "localhost" else cfg.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, cfg.port), family=family, backlog=128)
        except OSError as err:
            raise WebSetupError(
                f"the dashboard cannot listen on {cfg.listen} (web.listen): "
                f"{err.strerror or err}; choose another port in [web] listen, or set "
                "[web] enabled = false"
            ) from err
        sock.setblocking(False)
        port = sock.getsockname()[1]
        extra: set[str] = set()
        shown = cfg.host
        if cfg.host in _WILDCARD:
            # Reached by this machine's names; the certificate is for one of them.
            shown = socket.getfqdn()
            extra = {socket.gethostname(), shown}
        self.guard.hosts = host_names(cfg.host, port, tls=self._tls, extra=extra)
        shown = f"[{shown}]" if ":" in shown else shown
        self.origin = f"{'https' if self._tls else 'http'}://{shown}:{port}"
        self._sock = sock

    async def start(self) -> None:
        self.bind()
        assert self._sock is not None
        await self.hub.start()
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=30.0,
            lingering_time=0,
            shutdown_timeout=2.0,
            # A closed tab cancels its stream's handler at once (docs/reliability.md W2).
            handler_cancellation=True,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, self._sock, ssl_context=self._ssl).start()
        except BaseException:
            await runner.cleanup()
            await self.hub.stop()
            raise
        self._runner = runner
        log.info("dashboard listening", url=self.origin)

    async def stop(self) -> None:
        await self.hub.stop()  # streams end first, or the runner waits for them
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def login_link(self) -> str:
        """A one-time link that opens a session (`poolctl ui`)."""
        return f"{self.origin}/login?token={self.links.mint()}"

    # -- the application -------------------------------------------------------------------------

    def _build_app(self, control: ControlServer) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self.guard.middleware])
        app.on_response_prepare.append(add_headers)
        app.router.add_get("/", self._index)
        app.router.add_get("/login", self._login)
        app.router.add_post("/logout", self._logout)
        static = resources.files("pooldaemon.web").joinpath("static")
        app.router.add_static("/static/", str(static), append_version=False)
        api = web.Application(middlewares=[control.errors_middleware])
        control.add_routes(api.router, "/v1", events=False)
        api.router.add_get("/v1/events", self._events)
        api.router.add_get("/v1/settings", self._settings_view)
        paths = {resource.canonical for resource in api.router.resources()}
        self._features = " ".join(e for e in OPTIONAL_ENDPOINTS if f"/v1/{e}" in paths)
        app.add_subapp("/api", api)
        return app

    async def _index(self, request: web.Request) -> web.Response:
        csrf = html.escape(request[SESSION_KEY].csrf, quote=True)
        return web.Response(
            text=self._shell.replace("{{csrf}}", csrf).replace("{{features}}", self._features),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def _login(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        if not token or not self.links.redeem(token):
            log.warning("dashboard login link refused (expired, used or unknown)")
            return self.guard.login_needed()
        sid, _session = self.sessions.create()
        resp = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
        resp.set_cookie(
            COOKIE, sid, path="/", httponly=True, samesite="Strict", secure=self._tls or None
        )
        log.info("dashboard session opened")
        return resp

    async def _logout(self, request: web.Request) -> web.Response:
        self.sessions.end(request.cookies.get(COOKIE))
        resp = web.Response(status=204)
        resp.del_cookie(COOKIE, path="/", samesite="Strict", secure=self._tls or None)
        return resp

    async def _settings_view(self, request: web.Request) -> web.Response:
        return json_response(self._settings())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        sid = request.cookies.get(COOKIE)
        try:
            async with self.hub.client() as client:
                resp = web.StreamResponse(
                    headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
                )
                await resp.prepare(request)
                try:
                    await resp.write(hello())
                    while not client.closed:
                        data = await client.take(self.heartbeat_s)
                        if self.sessions.get(sid, touch=False) is None:
                            break  # signed out or expired: the tab's reconnect gets a 401
                        # A comment as heartbeat: a tab that went away shows up on the write.
                        await resp.write(data if data is not None else b": heartbeat\n\n")
                    if client.closed:
                        await resp.write(sse({"type": "shutdown", "time": time.time()}))
                except ConnectionError:
                    pass  # the tab closed
        except TooManyStreams as err:
            return error_response(503, "busy", str(err))
        return resp
