"""The control socket: HTTP/1.1 + JSON on a private Unix socket (docs/interface.md §4,
docs/reliability.md S1/S2).

Routes (all under `/v1`, answers are JSON; errors are `{"error": {"code", "message"}}`):

    GET  /status                     Services.status()
    GET  /pools                      a JSON list of the pools
    POST /pools/{pool}/sync          {"full": bool}            → sync result
    GET  /catalog                    q, pool, genre, bpm, year, mix, advisory, media, removed,
                                     limit, offset
    GET  /jobs                       state, pool, limit, offset → {"total", "items": [job…]}
    POST /jobs                       {"refs": [str…]}           → {"accepted", "rejected"}
    GET  /jobs/{id}                                             → a job
    POST /jobs/{id}/{retry|cancel|pause|resume}                 → the job
    POST /redownload                 {"refs": [str…], "reason": str}
    POST /pause · /resume            (pooldaemon extension) the whole downloader
    GET  /pools/{pool}/queue · POST  {"add": ID} | {"remove": ID} → the remote queue
    GET  /events                     NDJSON stream; a heartbeat line every `heartbeat_s`
    GET  /library                    state, pool, q, limit, offset → {"total", "items"}
    GET  /library/duplicates                                    → {"items": [group…]}
    POST /library/adopt              {"paths": [str…], "dry_run": bool} → the adopt report
    POST /library/audit              {"full": bool}   → {"checked", "ok", "deleted", "lost"}
    GET  /library/audit                                         → {"states", "last_audit", …}
    POST /library/heal                                          → {"requested", "skipped"}
    POST /ui/login-link              (socket only) a one-time dashboard login link → {"url"}

Here: the socket's lifecycle, its middlewares (errors, peer credentials) and the event stream.
The handlers are grouped by area in routes_core.py (pools, catalog, jobs) and
routes_library.py (exports, library, rules), over the request and answer helpers of wire.py;
the socket file itself is made safe by socketfile.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pooldaemon.control.peercred import PeerCredUnavailable, peer_credentials
from pooldaemon.control.routes_core import CoreRoutes
from pooldaemon.control.routes_library import LibraryRoutes
from pooldaemon.control.services import Services
from pooldaemon.control.socketfile import SocketSetupError as SocketSetupError
from pooldaemon.control.socketfile import bind_socket
from pooldaemon.control.socketfile import sun_path_limit as sun_path_limit
from pooldaemon.control.wire import error_response as error_response
from pooldaemon.control.wire import forbidden, http_message, read_body, status_code
from pooldaemon.control.wire import json_line as json_line
from pooldaemon.control.wire import json_response as json_response
from pooldaemon.errors import PoolDaemonError
from pooldaemon.log import get_logger

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- the application ---------------------------------------------------------------------------


class ControlServer:
    """Serves `Services` on the control socket until `stop()`."""

    def __init__(
        self,
        services: Services,
        socket_path: Path,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout_s: float = 10.0,
        idle_timeout_s: float = 30.0,
        heartbeat_s: float = 15.0,
        allowed_uid: int | None = None,
    ) -> None:
        self.services = services
        self.socket_path = socket_path
        self.body_timeout_s = body_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.heartbeat_s = heartbeat_s
        self.allowed_uid = os.getuid() if allowed_uid is None else allowed_uid
        self.app = self._build_app(max_body_bytes)
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._stopping = asyncio.Event()

    def bind(self) -> None:
        """Claim the socket path now (fail fast, before anything else starts); connections
        wait in the backlog until `start()`. Raises SocketSetupError with the fix."""
        if self._sock is not None:
            return
        self._sock = bind_socket(self.socket_path)
        st = os.stat(self.socket_path)
        self._inode = (st.st_dev, st.st_ino)

    async def start(self) -> None:
        """Start answering (binding first if `bind()` was not called)."""
        self.bind()
        sock = self._sock
        assert sock is not None
        # keepalive_timeout also closes a connection that never completes a request
        # (aiohttp arms it at connection_made): the slowloris bound for headers (S2).
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=self.idle_timeout_s,
            # An unread body is not drained for seconds after the answer: the connection
            # closes, so a slow or oversized sender cannot hold it (S2).
            lingering_time=0,
            shutdown_timeout=2.0,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("control socket listening", socket=str(self.socket_path))

    async def stop(self) -> None:
        """End event streams, close connections, remove our socket file."""
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()  # already closed by the runner when it served; harmless twice
        self._unlink()

    def _unlink(self) -> None:
        # Remove only the socket we bound: a newer daemon may already own the path.
        if self._inode is None:
            return
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._inode:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        self._inode = None

    # -- wiring --------------------------------------------------------------------------------

    def _build_app(self, max_body_bytes: int) -> web.Application:
        app = web.Application(
            client_max_size=max_body_bytes,
            middlewares=[self.errors_middleware, self._peer_check],
        )
        self.add_routes(app.router)
        # Socket only: whoever may use the socket may open the dashboard (docs/interface.md §11).
        app.router.add_post("/v1/ui/login-link", self._login_link)
        return app

    def add_routes(
        self, router: web.UrlDispatcher, prefix: str = "/v1", *, events: bool = True
    ) -> None:
        """Mount the API's routes under `prefix` on `router`: the socket's app and the
        dashboard's `/api/v1` share these handlers (the dashboard streams events itself)."""
        CoreRoutes(self.services, self.body_timeout_s).add(router, prefix)
        LibraryRoutes(self.services, self.body_timeout_s).add(router, prefix)
        if events:
            router.add_get(f"{prefix}/events", self._events)

    @web.middleware
    async def errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Errors as `{"error": {"code", "message"}}` (shared with the dashboard's API)."""
        try:
            return await handler(request)
        except PoolDaemonError as err:
            resp = error_response(err.http_status, err.code, err.message)
        except web.HTTPException as err:
            if err.status < 400:
                raise
            resp = error_response(err.status, status_code(err.status), http_message(request, err))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # Logged here once; the daemon keeps serving (issue 2: never killed by a request).
            log.exception("control request failed", method=request.method, path=request.path)
            return error_response(500, "internal", f"internal error: {type(err).__name__}: {err}")
        if resp.status in (408, 413):
            # The rest of a slow or oversized body is not worth waiting for (S2): hang up.
            resp.force_close()
        return resp

    @web.middleware
    async def _peer_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # S1: the 0700 directory keeps other users out; this answers anyone who got past it.
        sock = request.transport.get_extra_info("socket") if request.transport else None
        try:
            if sock is None:
                raise PeerCredUnavailable("no socket")
            peer = peer_credentials(sock)
        except PeerCredUnavailable as err:
            log.warning("refused a peer whose credentials cannot be read", error=str(err))
            return forbidden("cannot verify who is connecting")
        if peer.uid != self.allowed_uid:
            log.warning("refused a peer of another user", uid=peer.uid, pid=peer.pid)
            return forbidden(f"uid {peer.uid} may not use this socket")
        return await handler(request)

    async def _login_link(self, request: web.Request) -> web.Response:
        await read_body(request, {}, self.body_timeout_s)
        return json_response(await self.services.login_link())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
        )
        await resp.prepare(request)
        async with self.services.events.subscribe() as stream:
            # The first line says the subscription is live: nothing published after it is missed.
            await resp.write(json_line({"type": "subscribed", "time": time.time()}))
            nxt: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
            try:
                while True:
                    done, _ = await asyncio.wait(
                        {nxt, stop}, timeout=self.heartbeat_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    if stop in done:
                        await resp.write(json_line({"type": "shutdown", "time": time.time()}))
                        break
                    if nxt in done:
                        event = nxt.result()
                        nxt = asyncio.ensure_future(anext(stream))
                        await resp.write(json_line(event))
                    else:
                        # A heartbeat lets `poolctl watch` notice a daemon that went away.
                        await resp.write(json_line({"type": "heartbeat", "time": time.time()}))
            except ConnectionError:
                pass  # the client left
            finally:
                nxt.cancel()
                stop.cancel()
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp
