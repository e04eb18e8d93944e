"""The control socket: HTTP/1.1 + JSON on a private Unix socket (CONTRACT §4, RELIABILITY S1/S2).

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
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Set
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pooldaemon import jsonstrict, search
from pooldaemon.control.peercred import PeerCredUnavailable, peer_credentials
from pooldaemon.control.services import JOB_ACTIONS, Services
from pooldaemon.errors import BadRequest, PoolDaemonError
from pooldaemon.log import get_logger, redact_text
from pooldaemon.models import JobState, LibraryState

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REFS = 1000
#: Query keys `GET /v1/catalog` accepts: the search's own list, `removed` included.
CATALOG_PARAMS = search.PARAMS
JOBS_PARAMS = frozenset({"state", "pool", "limit", "offset"})
#: `GET /v1/library`: its query keys, and its page when no `limit` is given (the maximum is the
#: catalog's and the jobs', docs/interface.md §12).
LIBRARY_PARAMS = frozenset({"state", "pool", "q", "limit", "offset"})
LIBRARY_LIMIT = 100
#: Keys whose text may come from a pool's answer: redacted before it leaves the daemon (S3).
_FREE_TEXT_KEYS = frozenset({"error", "last_error", "message", "reason", "blocked_reason"})

_STATUS_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SocketSetupError(PoolDaemonError):
    """The control socket cannot be created safely; the daemon does not start."""

    code = "socket"


class _HttpError(PoolDaemonError):
    """An error whose status is not one of the vocabulary's (timeouts)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code


# -- the socket file ---------------------------------------------------------------------------


def sun_path_limit() -> int:
    """Longest socket path in bytes (sizeof sun_path less the NUL): 107 Linux, 103 BSD/macOS."""
    return 107 if sys.platform.startswith("linux") else 103


def check_socket_path(path: Path) -> None:
    length = len(os.fsencode(path))
    if length > sun_path_limit():
        raise SocketSetupError(
            f"socket path {path} is {length} bytes; this platform allows at most "
            f"{sun_path_limit()} (set daemon.socket_path to a shorter path)"
        )


def _check_directory(directory: Path) -> None:
    """Create the socket's directory 0700, or refuse one others could write or read (S2)."""
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise SocketSetupError(f"socket directory {directory} is not a plain directory")
    if st.st_uid != os.getuid():
        raise SocketSetupError(
            f"socket directory {directory} is owned by uid {st.st_uid}, not by you "
            f"(uid {os.getuid()}); choose another daemon.socket_path"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise SocketSetupError(
            f"socket directory {directory} has mode {mode:04o}; it must be private to you: "
            f"run `chmod 700 {directory}` or choose another daemon.socket_path"
        )


def _clear_stale(path: Path) -> None:
    """Remove a dead socket of ours; refuse a live one or anything that is not ours (S2)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket; move it away or remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(os.fspath(path))
    except OSError as err:
        if err.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise SocketSetupError(f"cannot tell whether {path} is in use: {err}") from err
    else:
        raise SocketSetupError(f"another daemon is listening on {path}")
    finally:
        probe.close()
    if st.st_uid != os.getuid():
        raise SocketSetupError(
            f"{path} is a stale socket owned by uid {st.st_uid}, not you; remove it by hand"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def bind_socket(path: Path) -> socket.socket:
    """A listening AF_UNIX socket at `path`, mode 0600, in a 0700 directory we own."""
    check_socket_path(path)
    _check_directory(path.parent)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # bind() creates the file with the umask applied: a restrictive umask closes the window
    # between bind and chmod in which another user could connect (the moby umask race).
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError as err:
        sock.close()
        raise SocketSetupError(f"cannot bind the control socket {path}: {err}") from err
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


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
        r = router
        r.add_get(f"{prefix}/status", self._status)
        r.add_get(f"{prefix}/pools", self._pools)
        r.add_post(f"{prefix}/pools/{{pool}}/sync", self._sync)
        r.add_get(f"{prefix}/pools/{{pool}}/queue", self._queue)
        r.add_post(f"{prefix}/pools/{{pool}}/queue", self._queue_edit)
        r.add_get(f"{prefix}/catalog", self._catalog)
        r.add_get(f"{prefix}/jobs", self._jobs)
        r.add_post(f"{prefix}/jobs", self._submit)
        r.add_get(f"{prefix}/jobs/{{id}}", self._job)
        r.add_post(f"{prefix}/jobs/{{id}}/{{action}}", self._job_action)
        r.add_post(f"{prefix}/redownload", self._redownload)
        r.add_post(f"{prefix}/pause", self._pause_all)
        r.add_post(f"{prefix}/resume", self._resume_all)
        r.add_post(f"{prefix}/export", self._export)
        r.add_get(f"{prefix}/rules", self._rules)
        r.add_get(f"{prefix}/rules/{{name}}/preview", self._rule_preview)
        r.add_post(f"{prefix}/rules/{{name}}/run", self._rule_run)
        if events:
            r.add_get(f"{prefix}/events", self._events)
        r.add_get(f"{prefix}/library", self._library)
        r.add_get(f"{prefix}/library/duplicates", self._library_duplicates)
        r.add_post(f"{prefix}/library/adopt", self._library_adopt)
        r.add_post(f"{prefix}/library/audit", self._library_audit)
        r.add_get(f"{prefix}/library/audit", self._library_state)
        r.add_post(f"{prefix}/library/heal", self._library_heal)

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
            resp = error_response(err.status, _status_code(err.status), _http_message(request, err))
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
            return _forbidden("cannot verify who is connecting")
        if peer.uid != self.allowed_uid:
            log.warning("refused a peer of another user", uid=peer.uid, pid=peer.pid)
            return _forbidden(f"uid {peer.uid} may not use this socket")
        return await handler(request)

    # -- handlers ------------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        return json_response(await self.services.status())

    async def _pools(self, request: web.Request) -> web.Response:
        return json_response(await self.services.pools())

    async def _sync(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"full": bool})
        full = body.get("full", False)
        return json_response(await self.services.sync(request.match_info["pool"], full))

    async def _catalog(self, request: web.Request) -> web.Response:
        params: dict[str, str] = {}
        for key in request.query:
            if key not in CATALOG_PARAMS:
                known = ", ".join(sorted(CATALOG_PARAMS))
                raise BadRequest(f"unknown query parameter {key!r} (known: {known})")
            values = request.query.getall(key)
            if len(values) > 1:
                raise BadRequest(f"query parameter {key!r} given {len(values)} times")
            params[key] = values[0]
        answer = await self.services.search(params)
        try:
            # Tracks hold only JSON's own types and no free-text field (_FREE_TEXT_KEYS): the
            # busiest answer skips the redaction walk and json's encoder (0.38 → 0.02 ms for
            # 50 tracks, of a p95 < 10 ms budget).
            body = orjson.dumps(answer, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            body = _line(answer)
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    async def _jobs(self, request: web.Request) -> web.Response:
        unknown = set(request.query) - JOBS_PARAMS
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        # docs/interface.md §12: paged like the catalog; without `limit`, the largest page.
        limit, offset = search.parse_page(request.query, default_limit=search.MAX_LIMIT)
        state = request.query.get("state") or None
        if state is not None and state not in {s.value for s in JobState}:
            raise BadRequest(
                f"unknown job state {state!r} (states: {', '.join(s.value for s in JobState)})"
            )
        pool = request.query.get("pool") or None
        return json_response(await self.services.list_jobs(state, pool, limit, offset))

    async def _submit(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"refs": list, "redownload": bool, "reason": str})
        refs = _refs(body)
        reason = body.get("reason")
        redownload = body.get("redownload", False)
        if redownload and not (reason and reason.strip()):
            raise BadRequest('"reason" is required with "redownload": true')
        return json_response(await self.services.submit(refs, redownload=redownload, reason=reason))

    async def _redownload(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"refs": list, "reason": str})
        refs = _refs(body)
        reason = body.get("reason")
        if not reason or not reason.strip():
            raise BadRequest('"reason" is required: say why the pool should allow it again')
        return json_response(await self.services.submit(refs, redownload=True, reason=reason))

    async def _job(self, request: web.Request) -> web.Response:
        return json_response(await self.services.get_job(_job_id(request)))

    async def _job_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in JOB_ACTIONS:
            raise web.HTTPNotFound()
        job_id = _job_id(request)
        await self._body(request, {})
        return json_response(await self.services.job_action(job_id, action))

    async def _pause_all(self, request: web.Request) -> web.Response:
        await self._body(request, {})
        return json_response(await self.services.pause_all())

    async def _resume_all(self, request: web.Request) -> web.Response:
        await self._body(request, {})
        return json_response(await self.services.resume_all())

    async def _export(self, request: web.Request) -> web.Response:
        await self._body(request, {})
        return json_response(await self.services.export())

    async def _login_link(self, request: web.Request) -> web.Response:
        await self._body(request, {})
        return json_response(await self.services.login_link())

    async def _queue(self, request: web.Request) -> web.Response:
        return json_response(await self.services.queue(request.match_info["pool"]))

    async def _queue_edit(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"add": (str, int), "remove": (str, int)})
        add, remove = body.get("add"), body.get("remove")
        if (add is None) == (remove is None):
            raise BadRequest('give exactly one of {"add": ID} or {"remove": ID}')
        return json_response(
            await self.services.queue_edit(
                request.match_info["pool"],
                None if add is None else str(add),
                None if remove is None else str(remove),
            )
        )

    async def _library(self, request: web.Request) -> web.Response:
        query = _single_query(request, LIBRARY_PARAMS)
        state = query.get("state") or None
        if state is not None and state not in {s.value for s in LibraryState}:
            known = ", ".join(s.value for s in LibraryState)
            raise BadRequest(f"unknown library state {state!r} (states: {known})")
        limit, offset = search.parse_page(query, default_limit=LIBRARY_LIMIT)
        answer = await self.services.library(
            state=state,
            pool=query.get("pool") or None,
            q=query.get("q") or None,
            limit=limit,
            offset=offset,
        )
        return json_response(answer)

    async def _library_duplicates(self, request: web.Request) -> web.Response:
        _single_query(request, set())
        return json_response(await self.services.library_duplicates())

    async def _library_adopt(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"paths": list, "dry_run": bool})
        paths = body.get("paths") or []
        if not paths or not all(isinstance(p, str) and p.strip() for p in paths):
            raise BadRequest('"paths" must be a non-empty list of file or folder paths')
        return json_response(
            await self.services.library_adopt(paths, bool(body.get("dry_run", False)))
        )

    async def _library_audit(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"full": bool})
        return json_response(await self.services.library_audit(bool(body.get("full", False))))

    async def _library_state(self, request: web.Request) -> web.Response:
        _single_query(request, set())
        return json_response(await self.services.library_state())

    async def _library_heal(self, request: web.Request) -> web.Response:
        await self._body(request, {})
        return json_response(await self.services.library_heal())

    async def _rules(self, request: web.Request) -> web.Response:
        if request.query:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(request.query))}")
        return json_response(await self.services.rules())

    async def _rule_preview(self, request: web.Request) -> web.Response:
        unknown = set(request.query) - {"limit", "offset"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        limit = _whole(request.query.get("limit"), "limit", 50)
        offset = _whole(request.query.get("offset"), "offset", 0)
        answer = await self.services.rule_preview(request.match_info["name"], limit, offset)
        return json_response(answer)

    async def _rule_run(self, request: web.Request) -> web.Response:
        body = await self._body(request, {"backfill": bool, "since": str})
        answer = await self.services.rule_run(
            request.match_info["name"], bool(body.get("backfill", False)), body.get("since")
        )
        return json_response(answer)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
        )
        await resp.prepare(request)
        async with self.services.events.subscribe() as stream:
            # The first line says the subscription is live: nothing published after it is missed.
            await resp.write(_line({"type": "subscribed", "time": time.time()}))
            nxt: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
            try:
                while True:
                    done, _ = await asyncio.wait(
                        {nxt, stop}, timeout=self.heartbeat_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    if stop in done:
                        await resp.write(_line({"type": "shutdown", "time": time.time()}))
                        break
                    if nxt in done:
                        event = nxt.result()
                        nxt = asyncio.ensure_future(anext(stream))
                        await resp.write(_line(event))
                    else:
                        # A heartbeat lets `poolctl watch` notice a daemon that went away.
                        await resp.write(_line({"type": "heartbeat", "time": time.time()}))
            except ConnectionError:
                pass  # the client left
            finally:
                nxt.cancel()
                stop.cancel()
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    # -- request bodies ------------------------------------------------------------------------

    async def _body(
        self, request: web.Request, spec: dict[str, type | tuple[type, ...]]
    ) -> dict[str, Any]:
        """The JSON object body, checked against `spec` (key → allowed types); empty is `{}`."""
        try:
            async with asyncio.timeout(self.body_timeout_s):
                raw = await request.read()
        except TimeoutError:
            raise _HttpError(
                408, "timeout", f"request body not received within {self.body_timeout_s:g} s"
            ) from None
        if not raw.strip():
            return {}
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadRequest(f"request body is not UTF-8 (byte {err.start})") from None
        try:
            value = jsonstrict.loads(text)
        except ValueError as err:
            raise BadRequest(f"malformed JSON body: {err}") from None
        if not isinstance(value, dict):
            raise BadRequest(f"request body must be a JSON object, not {_json_type(value)}")
        unknown = set(value) - set(spec)
        if unknown:
            allowed = ", ".join(sorted(spec)) or "none"
            raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))} (allowed: {allowed})")
        for key, types in spec.items():
            if key not in value or value[key] is None:
                continue
            item = value[key]
            allowed_types = types if isinstance(types, tuple) else (types,)
            # bool is an int in Python, never in a request (a "full": 1 is a mistake).
            if isinstance(item, bool) and bool not in allowed_types:
                ok = False
            else:
                ok = isinstance(item, allowed_types)
            if not ok:
                wanted = " or ".join(_type_name(t) for t in allowed_types)
                raise BadRequest(f'"{key}" must be {wanted}, not {_json_type(item)}')
        return value


# -- helpers -----------------------------------------------------------------------------------


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=_line(data), status=status, content_type="application/json", charset="utf-8"
    )


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": redact_text(message)}}, status)


def _forbidden(message: str) -> web.Response:
    resp = error_response(403, "forbidden", message)
    resp.force_close()  # S1: answer and hang up
    return resp


def json_line(data: Any) -> bytes:
    """One JSON document and a newline, free-text fields redacted: what every answer holds."""
    return _line(data)


def _line(data: Any) -> bytes:
    return (json.dumps(_redact_fields(data), ensure_ascii=False, default=str) + "\n").encode()


def _redact_fields(data: Any) -> Any:
    """Redact free-text fields that may carry a pool's words (and so its tokens) (S3)."""
    if isinstance(data, dict):
        return {
            k: redact_text(v) if k in _FREE_TEXT_KEYS and isinstance(v, str) else _redact_fields(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_redact_fields(v) for v in data]
    return data


def _refs(body: dict[str, Any]) -> list[str]:
    refs = body.get("refs")
    if not refs:
        raise BadRequest('"refs" must be a non-empty list of references like "crateq:570291"')
    if len(refs) > MAX_REFS:
        raise BadRequest(f'"refs" holds {len(refs)} references; at most {MAX_REFS} per request')
    for i, ref in enumerate(refs):
        if not isinstance(ref, str):
            raise BadRequest(f'"refs"[{i}] must be a string, not {_json_type(ref)}')
    return list(refs)


def _single_query(request: web.Request, known: Set[str]) -> dict[str, str]:
    """The query as one value per key; unknown or repeated keys are refused."""
    params: dict[str, str] = {}
    for key in request.query:
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise BadRequest(f"unknown query parameter {key!r} (known: {names})")
        values = request.query.getall(key)
        if len(values) > 1:
            raise BadRequest(f"query parameter {key!r} given {len(values)} times")
        params[key] = values[0]
    return params


def _whole(text: str | None, key: str, default: int) -> int:
    """A whole-number query parameter."""
    if text is None or not text.strip():
        return default
    if not text.strip().isdigit():
        raise BadRequest(f"{key}: expected a whole number (got {text[:40]!r})")
    return int(text.strip())


def _job_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"job id must be a number, not {text[:40]!r}")
    return int(text)


def _status_code(status: int) -> str:
    return _STATUS_CODES.get(status, "internal" if status >= 500 else f"http_{status}")


def _http_message(request: web.Request, err: web.HTTPException) -> str:
    if isinstance(err, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(err.allowed_methods))
        return f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    if err.status == 404:
        return f"no such endpoint: {request.method} {request.path}"
    if err.status == 413:
        return f"request body too large: {err.text}"
    return err.text or err.reason


def _type_name(t: type) -> str:
    return {bool: "true or false", str: "a string", int: "a number", list: "a list"}.get(
        t, t.__name__
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
