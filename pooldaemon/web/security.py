"""What every dashboard request passes before a handler sees it (docs/reliability.md W1).

In order: the client is on this machine (unless `allow_remote`); `Host` names this server (a DNS
rebinding page on evil.example gets 421); a session cookie (401 otherwise: JSON for the API, a
page saying to run `poolctl ui` for the rest); and for anything but GET/HEAD, a same-origin
`Origin` and the session's CSRF token. Every answer carries the security headers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources

from aiohttp import web

from pooldaemon.control.server import error_response
from pooldaemon.log import get_logger
from pooldaemon.web.auth import Session, Sessions, same_token

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "pd_session"
CSRF_HEADER = "X-CSRF-Token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Paths served without a session: the page's own assets and the login link itself.
PUBLIC_PREFIXES = ("/static/", "/login")
SESSION_KEY = web.RequestKey("session", Session)


def host_names(listen_host: str, port: int, *, tls: bool, extra: Iterable[str] = ()) -> set[str]:
    """The `Host` values this server answers: the listen address and localhost, with the port
    (and without it on the scheme's default port)."""
    names = {listen_host, "localhost", *extra}
    shown = {f"[{n}]" if ":" in n else n for n in names}
    hosts = {f"{n}:{port}" for n in shown}
    if port == (443 if tls else 80):
        hosts |= shown
    return {h.lower() for h in hosts}


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def page(name: str) -> str:
    return resources.files("pooldaemon.web").joinpath("static", name).read_text("utf-8")


class Guard:
    """The request checks above, as one aiohttp middleware."""

    def __init__(self, sessions: Sessions, *, tls: bool, allow_remote: bool) -> None:
        self.sessions = sessions
        self.tls = tls
        self.allow_remote = allow_remote
        self.hosts: set[str] = set()  # filled in once the port is known
        self._login_page = page("login.html")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        return await handler(request)

    def _refusal(self, request: web.Request) -> web.StreamResponse | None:
        if not self.allow_remote and not is_loopback(request.remote):
            log.warning("dashboard refused a client from another machine", remote=request.remote)
            return _refuse(403, "forbidden", "the dashboard answers this machine only")
        host = request.headers.get("Host", "").lower()
        if host not in self.hosts:
            # A page on another name that resolves here (DNS rebinding) lands in this branch.
            return _refuse(421, "misdirected", f"this server does not answer for {host[:80]!r}")
        if request.path.startswith(PUBLIC_PREFIXES):
            return None
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if request.path.startswith("/api/"):
                return _refuse(
                    401,
                    "unauthorized",
                    "no dashboard session (or it expired): run `poolctl ui` to open the dashboard",
                )
            return self.login_needed()
        if request.method not in SAFE_METHODS:
            expected = ("https://" if self.tls else "http://") + host
            origin = request.headers.get("Origin")
            if origin is None or origin.lower() != expected:
                log.warning("dashboard refused a cross-origin request", origin=origin)
                return _refuse(403, "forbidden", f"cross-origin request refused (Origin {origin})")
            if not same_token(request.headers.get(CSRF_HEADER), session.csrf):
                return _refuse(403, "forbidden", f"missing or wrong {CSRF_HEADER} header")
        request[SESSION_KEY] = session
        return None

    def login_needed(self, status: int = 401) -> web.Response:
        """The page that tells a browser without a session how to get one."""
        return web.Response(
            text=self._login_page,
            status=status,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )


def _refuse(status: int, code: str, message: str) -> web.Response:
    resp = error_response(status, code, message)
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the security headers on every answer, errors and streams too."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
