"""Switchable faults, a request log, and a Range-correct download server shared by the simulators.

Faults are switched on per test at run time (RELIABILITY §2: H1-H11 and the API quirks of §0);
the download server is pool-agnostic: each pool's simulator hands it a `resolve` callback that
checks that pool's tokens and names the media to serve.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import inspect
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from pooldaemon.sim.media import MediaStore

__all__ = [
    "API_KINDS",
    "CONTENT_RANGE_VARIANTS",
    "DOWNLOAD_KINDS",
    "DownloadServer",
    "Fault",
    "Faults",
    "RecordedRequest",
    "RequestLog",
    "api_response",
    "fault_response",
    "json_error",
    "start_app",
    "write_body",
]

# Kinds an API endpoint applies; a download endpoint applies DOWNLOAD_KINDS.
API_KINDS = frozenset(
    {
        "status",
        "stall",
        "drop",
        "trickle",
        "raw",
        "redirect",
        "timeout_empty",
        "malformed_json",
        "truncated_json",
        "empty_body",
    }
)
DOWNLOAD_KINDS = frozenset(
    {
        "status",
        "stall",
        "drop",
        "trickle",
        "raw",
        "redirect",
        "ignore_range",
        "bad_content_range",
        "gzip",
        "html_200",
        "empty_200",
        "overlong",
        "different_bytes",
    }
)
# RELIABILITY H3: the ways a 206's Content-Range can be wrong.
CONTENT_RANGE_VARIANTS = (
    "shifted_start",
    "end_past_request",
    "wrong_total",
    "missing",
    "other_unit",
)

_HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    b"request. Please try again later.</p></body></html>\n"
)


@dataclass
class Fault:
    """One switched-on fault: applies to matching requests, `count` times (None: until cleared)."""

    kind: str
    params: dict[str, Any]
    match: frozenset[str] | None = None
    count: int | None = None
    skip: int = 0
    hits: int = 0

    def matches(self, endpoint: str, key: str | None) -> bool:
        """Whether this fault targets the endpoint (or the media key)."""
        return (
            self.match is None or endpoint in self.match or (key is not None and key in self.match)
        )


class Faults:
    """The faults of one server, switched on and off by tests while it runs."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self.throttle_bps: int | None = None  # per-response pacing for benchmarks; None: full speed
        self._release = asyncio.Event()

    # -- generic ---------------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        **params: Any,
    ) -> Fault:
        """Switch a fault on; `match` limits it to endpoint names or media keys."""
        if kind not in API_KINDS | DOWNLOAD_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "bad_content_range" and params.get("variant") not in CONTENT_RANGE_VARIANTS:
            raise ValueError(f"bad_content_range variant must be one of {CONTENT_RANGE_VARIANTS}")
        matched = None if match is None else frozenset([match] if isinstance(match, str) else match)
        fault = Fault(kind, dict(params), matched, count, skip)
        self._faults.append(fault)
        return fault

    def clear(self, kind: str | None = None) -> None:
        """Switch off every fault (or every fault of one kind), release stalls, stop throttling."""
        if kind is None:
            self._faults.clear()
            self.throttle_bps = None
        else:
            self._faults = [fault for fault in self._faults if fault.kind != kind]
        self.release_stalls()

    @property
    def active(self) -> list[Fault]:
        """Faults still switched on, in the order they were added."""
        return list(self._faults)

    def select(
        self, endpoint: str, applicable: frozenset[str], key: str | None = None
    ) -> dict[str, Fault]:
        """Faults for one request, first per kind; uses up one of each matching fault's `count`."""
        chosen: dict[str, Fault] = {}
        for fault in list(self._faults):
            if fault.kind not in applicable or not fault.matches(endpoint, key):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.hits += 1
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
            chosen.setdefault(fault.kind, fault)
        return chosen

    def release_stalls(self) -> None:
        """Let every stalled response go on."""
        self._release.set()
        self._release = asyncio.Event()

    async def wait_released(self, seconds: float | None) -> None:
        """Wait until release_stalls() (or `seconds`, when given)."""
        event = self._release
        if seconds is None:
            await event.wait()
            return
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass

    # -- named switches (H = RELIABILITY §2 case) -----------------------------------------------

    def fail(
        self,
        status: int = 503,
        *,
        count: int | None = 1,
        retry_after: int | str | None = None,
        message: str | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """H7: answer `status` to the next `count` requests (Retry-After: seconds or HTTP date)."""
        return self.add(
            "status",
            count=count,
            match=match,
            skip=skip,
            status=status,
            retry_after=retry_after,
            message=message,
            after_apply=after_apply,
        )

    def rate_limit(
        self,
        retry_after: int | str | None = 1,
        *,
        count: int | None = 1,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H7: 429 Too Many Requests with Retry-After."""
        return self.fail(429, count=count, retry_after=retry_after, match=match, skip=skip)

    def unauthorized(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """401 to the next `count` requests, whatever token they carry (T2, T3)."""
        return self.fail(401, count=count, message="Unauthorized", match=match, skip=skip)

    def drop(
        self,
        after_bytes: int | None = 0,
        *,
        reset: bool = False,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """H1: close the connection after the headers and `after_bytes` body bytes (None: before
        any response). `reset=True` aborts (RST; bytes still buffered may never arrive)."""
        return self.add(
            "drop",
            count=count,
            match=match,
            skip=skip,
            after_bytes=after_bytes,
            reset=reset,
            after_apply=after_apply,
        )

    def stall(
        self,
        after_bytes: int | None = 0,
        *,
        seconds: float | None = None,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """H5: stop sending after the headers and `after_bytes` bytes (None: before the headers)
        until release_stalls() or `seconds`; the response then goes on."""
        return self.add(
            "stall",
            count=count,
            match=match,
            skip=skip,
            after_bytes=after_bytes,
            seconds=seconds,
            after_apply=after_apply,
        )

    def trickle(
        self,
        bps: int,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H6: send the body at `bps` bytes per second."""
        return self.add("trickle", count=count, match=match, skip=skip, bps=bps)

    def ignore_range(
        self,
        *,
        advertise: bool = True,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H2: answer 200 with the full body to ranged requests (still saying Accept-Ranges:
        bytes unless advertise=False)."""
        return self.add("ignore_range", count=count, match=match, skip=skip, advertise=advertise)

    def bad_content_range(
        self,
        variant: str,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H3: a 206 whose Content-Range is wrong: one of CONTENT_RANGE_VARIANTS."""
        return self.add("bad_content_range", count=count, match=match, skip=skip, variant=variant)

    def gzip_ranged(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H8: gzip the body (Content-Encoding: gzip), 206 too, whatever Accept-Encoding said."""
        return self.add("gzip", count=count, match=match, skip=skip)

    def html_200(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H9: 200 with an HTML error page instead of the media."""
        return self.add("html_200", count=count, match=match, skip=skip)

    def empty_200(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H9: 200 with Content-Length 0 (the media's Content-Type)."""
        return self.add("empty_200", count=count, match=match, skip=skip)

    def overlong_body(
        self,
        extra: int = 1024,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H10: a body `extra` bytes longer than the range (Content-Length says so too)."""
        return self.add("overlong", count=count, match=match, skip=skip, extra=extra)

    def different_bytes(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H11: this server's copy differs (every 512th byte flipped, same size, other ETag)."""
        return self.add("different_bytes", count=count, match=match, skip=skip)

    def raw(
        self,
        data: bytes,
        *,
        count: int | None = 1,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H10 and friends: write `data` verbatim as the whole HTTP response, then close."""
        return self.add("raw", count=count, match=match, skip=skip, data=data)

    def redirect(
        self,
        location: str,
        *,
        status: int = 302,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H12: redirect to `location` instead of answering."""
        return self.add(
            "redirect", count=count, match=match, skip=skip, location=location, status=status
        )

    def timeout_empty(
        self,
        *,
        count: int | None = 1,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """Seed 004: a timed-out request answers HTTP 200 with `[]`."""
        return self.add(
            "timeout_empty", count=count, match=match, skip=skip, after_apply=after_apply
        )

    def malformed_json(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """RELIABILITY §0: the body's last quote becomes `quot;`, as in the seed's broken entity."""
        return self.add("malformed_json", count=count, match=match, skip=skip)

    def truncated_json(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """Only the first half of the JSON body (Content-Length matches what is sent)."""
        return self.add("truncated_json", count=count, match=match, skip=skip)

    def empty_body(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """200 with an empty body where JSON was expected."""
        return self.add("empty_body", count=count, match=match, skip=skip)


@dataclass(frozen=True)
class RecordedRequest:
    """What a simulator received: tests assert on headers, query and path."""

    endpoint: str
    method: str
    path: str
    path_qs: str
    query: MultiDict[str]
    headers: CIMultiDict[str]
    time: float


@dataclass
class Served:
    """Bytes [first, end) of a media file written to one answer (end grows as it is sent)."""

    key: str
    first: int
    end: int


@dataclass
class RequestLog:
    """Every request a server received, and per-endpoint counts (`calls["Auth/Login"]`)."""

    entries: list[RecordedRequest] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def record(self, request: web.BaseRequest, endpoint: str) -> RecordedRequest:
        """Log one request under `endpoint`."""
        entry = RecordedRequest(
            endpoint=endpoint,
            method=request.method,
            path=request.path,
            path_qs=request.path_qs,
            query=MultiDict(request.query),
            headers=CIMultiDict(request.headers),
            time=time.time(),
        )
        self.entries.append(entry)
        self.calls[endpoint] += 1
        return entry

    def for_endpoint(self, endpoint: str) -> list[RecordedRequest]:
        """Requests logged under `endpoint`, oldest first."""
        return [entry for entry in self.entries if entry.endpoint == endpoint]

    def last(self, endpoint: str | None = None) -> RecordedRequest | None:
        """The newest request (for `endpoint`, when given)."""
        for entry in reversed(self.entries):
            if endpoint is None or entry.endpoint == endpoint:
                return entry
        return None

    def clear(self) -> None:
        """Forget logged requests and counts."""
        self.entries.clear()
        self.calls.clear()


# -- response helpers ----------------------------------------------------------------------------


def json_error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """The `{"status": …, "message": …}` error model (seed 004's, also fine for other pools)."""
    body = json.dumps({"status": status, "message": message}).encode()
    return web.Response(
        status=status,
        body=body,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


ErrorFactory = Callable[[int, str, dict[str, str]], web.StreamResponse]


def _default_error(status: int, message: str, headers: dict[str, str]) -> web.StreamResponse:
    return json_error(status, message, headers=headers)


async def fault_response(
    request: web.Request,
    faults: Faults,
    active: dict[str, Fault],
    error: ErrorFactory = _default_error,
) -> web.StreamResponse | None:
    """The short-circuit answer for status / redirect / raw / pre-header drop and stall faults.

    A stall before the headers waits here and then returns None (the request goes on)."""
    if (fault := active.get("raw")) is not None:
        return await _send_raw(request, fault.params["data"])
    if (fault := active.get("drop")) is not None and fault.params.get("after_bytes") is None:
        return _abort(request, fault)
    if (fault := active.get("status")) is not None:
        status = int(fault.params["status"])
        headers: dict[str, str] = {}
        retry_after = fault.params.get("retry_after")
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        message = fault.params.get("message") or _REASONS.get(status, "Simulated failure")
        return error(status, message, headers)
    if (fault := active.get("redirect")) is not None:
        raise _redirect(fault)
    if (fault := active.get("stall")) is not None and fault.params.get("after_bytes") is None:
        await faults.wait_released(fault.params.get("seconds"))
    return None


_REASONS = {
    401: "Authorization has been denied for this request.",
    403: "Forbidden.",
    404: "Resource Not Found.",
    429: "Too Many Requests.",
    500: "An error has occurred.",
    502: "Bad Gateway.",
    503: "Service Unavailable.",
    504: "Gateway Timeout.",
}


def _redirect(fault: Fault) -> web.HTTPException:
    status = int(fault.params.get("status", 302))
    location = str(fault.params["location"])
    classes: dict[int, type[web.HTTPMove]] = {
        301: web.HTTPMovedPermanently,
        302: web.HTTPFound,
        303: web.HTTPSeeOther,
        307: web.HTTPTemporaryRedirect,
        308: web.HTTPPermanentRedirect,
    }
    return classes.get(status, web.HTTPFound)(location)


def _abort(request: web.BaseRequest, fault: Fault) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        if fault.params.get("reset"):
            transport.abort()
        else:
            transport.close()
    return web.StreamResponse()


async def _send_raw(request: web.BaseRequest, data: bytes) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.write(data)
        transport.close()
    return web.StreamResponse()


async def write_body(
    request: web.Request,
    response: web.StreamResponse,
    pieces: AsyncIterator[bytes],
    faults: Faults,
    active: dict[str, Fault],
    *,
    offset: int = 0,
    transform: Callable[[bytes, int], bytes] | None = None,
    on_write: Callable[[int], None] | None = None,
) -> bool:
    """Send a prepared response's body, applying drop / stall / trickle and the throttle.

    Returns True when the whole body went out, False when a drop fault cut it."""
    drop = active.get("drop")
    stall = active.get("stall")
    drop_at = None if drop is None else drop.params.get("after_bytes")
    stall_at = None if stall is None else stall.params.get("after_bytes")
    rates = [rate for rate in (faults.throttle_bps,) if rate]
    if (trickle := active.get("trickle")) is not None:
        rates.append(int(trickle.params["bps"]))
    bps = min(rates) if rates else 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    async for whole in pieces:
        piece = whole if transform is None else transform(whole, offset + sent)
        pos = 0
        while True:
            if stall is not None and stall_at is not None and sent == stall_at:
                stall_at = None
                await faults.wait_released(stall.params.get("seconds"))
            if drop is not None and drop_at is not None and sent == drop_at:
                _abort(request, drop)
                return False
            if pos >= len(piece):
                break
            limit = len(piece) - pos
            for threshold in (stall_at, drop_at):
                if threshold is not None and threshold > sent:
                    limit = min(limit, threshold - sent)
            if bps:
                limit = min(limit, max(1, bps // 20))
            await response.write(piece if limit == len(piece) else piece[pos : pos + limit])
            pos += limit
            sent += limit
            if on_write is not None:
                on_write(limit)
            if bps:
                delay = started + sent / bps - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
    return True


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _break_json(body: bytes) -> bytes:
    # Seed 004's example has `…630quot;,` where a closing quote belongs.
    at = body.rfind(b'"')
    if at < 0:
        return body[:-1] if len(body) > 1 else b"{"
    return body[:at] + b"quot;" + body[at + 1 :]


async def api_response(
    request: web.Request,
    faults: Faults,
    active: dict[str, Fault],
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "application/json; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Send an API answer with the body faults (timeout `[]`, malformed, truncated, empty) and
    the connection faults (drop, stall, trickle) applied."""
    if "timeout_empty" in active:
        status, body = 200, b"[]"
    elif "empty_body" in active:
        status, body = 200, b""
    elif "malformed_json" in active:
        body = _break_json(body)
    elif "truncated_json" in active:
        body = body[: len(body) // 2] or b"{"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = content_type.split(";")[0]
    if "charset=" in content_type:
        response.charset = content_type.split("charset=")[1]
    response.content_length = len(body)
    await response.prepare(request)
    if request.method != "HEAD" and await write_body(request, response, _one(body), faults, active):
        await response.write_eof()
    return response


async def start_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Run `app` on host:port (0: any free port); returns the runner and the bound port."""
    # handler_cancellation: a stalled handler ends when its client goes away (RELIABILITY H5).
    runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])


# -- ranges --------------------------------------------------------------------------------------


class _Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """One `bytes=` range as (first, last) inclusive; None to answer 200 (absent, malformed or
    several ranges); raises _Unsatisfiable for a 416."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(), last_text.strip()
    if not first_text:
        if not last_text.isdigit():
            return None
        suffix = int(last_text)
        if suffix == 0 or total == 0:
            raise _Unsatisfiable
        return max(0, total - suffix), total - 1
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        return None
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    if first >= total:
        raise _Unsatisfiable
    last = int(last_text) if last_text else total - 1
    return first, min(last, total - 1)


def _if_range_holds(value: str | None, etag: str, last_modified: float) -> bool:
    if value is None:
        return True
    value = value.strip()
    if value.startswith(("W/", '"')):
        return value == etag  # If-Range needs a strong match
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    return parsed is not None and int(parsed.timestamp()) == int(last_modified)


def _flip_every_512(piece: bytes, offset: int) -> bytes:
    data = bytearray(piece)
    for index in range((7 - offset) % 512, len(data), 512):
        data[index] ^= 0xA5
    return bytes(data)


def _content_disposition(filename: str) -> str:
    fallback = filename.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


Resolved = str | web.StreamResponse
Resolver = Callable[[web.Request], Awaitable[Resolved] | Resolved]


def _key_from_path(request: web.Request) -> Resolved:
    return request.match_info.get("key", "")


class DownloadServer:
    """Serves MediaStore media with Range / 206 / 416 / ETag / Last-Modified / HEAD, plus faults.

    `resolve(request)` returns the media key to serve, or a response (a pool's token error).
    Use it standalone (`async with DownloadServer(...)`) or mount `handle` on another app."""

    def __init__(
        self,
        store: MediaStore,
        resolve: Resolver | None = None,
        *,
        path: str = "/download/{key}",
        endpoint: str = "download",
        faults: Faults | None = None,
        log: RequestLog | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_complete: Callable[[web.Request, str], None] | None = None,
        error: ErrorFactory | None = None,
    ) -> None:
        self.store = store
        self.resolve: Resolver = resolve or _key_from_path
        self.path = path
        self.endpoint = endpoint
        self.faults = faults if faults is not None else Faults()
        self.log = log if log is not None else RequestLog()
        self.host = host
        self.port = port
        self.on_complete = on_complete
        self.error: ErrorFactory = error or _default_error
        self.completed: Counter[str] = Counter()  # media key -> full bodies sent
        #: The byte ranges of media bodies handed to the transport, in request order.
        self.served: list[Served] = []
        #: Media bodies being sent now.
        self.sending = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        """`127.0.0.1:PORT`, the form pools list as download servers."""
        return f"{self.host}:{self.port}"

    def add_routes(self, app: web.Application, path: str | None = None) -> None:
        """Mount GET and HEAD of `path` (default: this server's) on `app`."""
        app.router.add_get(path or self.path, self.handle)

    async def start(self) -> DownloadServer:
        """Listen on host:port (port 0: a free one, stored in .port)."""
        app = web.Application()
        self.add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner, self.port = await start_app(app, self.host, self.port)
        return self

    async def close(self) -> None:
        """Stop listening; stalled responses are released first."""
        self.faults.release_stalls()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DownloadServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self.log.record(request, "404")
        return self.error(404, "Resource Not Found.", {})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one GET or HEAD for a media file."""
        self.log.record(request, self.endpoint)
        resolved = self.resolve(request)
        if inspect.isawaitable(resolved):
            resolved = await resolved
        if isinstance(resolved, web.StreamResponse):
            return resolved
        key = resolved
        active = self.faults.select(self.endpoint, DOWNLOAD_KINDS, key)
        early = await fault_response(request, self.faults, active, self.error)
        if early is not None:
            return early
        if key not in self.store:
            return self.error(404, "File not found.", {})
        response, whole = await self._send(request, key, active)
        if whole:
            self.completed[key] += 1
            if self.on_complete is not None:
                self.on_complete(request, key)
        return response

    async def _send(
        self, request: web.Request, key: str, active: dict[str, Fault]
    ) -> tuple[web.StreamResponse, bool]:
        """Send the media (or the faulty answer); True when the file's last byte went out."""
        store = self.store
        total = store.size(key)
        etag = store.etag(key)
        last_modified = store.last_modified(key)
        transform = None
        if "different_bytes" in active:
            etag = etag[:-1] + '-b"'
            transform = _flip_every_512
        headers = CIMultiDict[str]()
        ignore = active.get("ignore_range")
        if ignore is None or ignore.params.get("advertise", True):
            headers["Accept-Ranges"] = "bytes"
        headers["ETag"] = etag
        headers["Last-Modified"] = email.utils.formatdate(last_modified, usegmt=True)
        if (filename := store.filename(key)) is not None:
            headers["Content-Disposition"] = _content_disposition(filename)
        content_type = store.content_type(key)

        if "html_200" in active:
            return await self._respond(request, 200, headers, "text/html", _HTML_ERROR, active)
        if "empty_200" in active:
            return await self._respond(request, 200, headers, content_type, b"", active)

        try:
            wanted = (
                None if ignore is not None else parse_range(request.headers.get("Range"), total)
            )
        except _Unsatisfiable:
            headers["Content-Range"] = f"bytes */{total}"
            return await self._respond(request, 416, headers, "text/plain", b"", active)
        if wanted is not None and not _if_range_holds(
            request.headers.get("If-Range"), etag, last_modified
        ):
            wanted = None

        status = 200
        first, last = 0, total - 1
        if wanted is not None:
            status = 206
            first, last = wanted
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
            if (bad := active.get("bad_content_range")) is not None:
                first, last = self._bad_range(bad.params["variant"], headers, first, last, total)
        body_end = last + 1
        filler = 0
        if (over := active.get("overlong")) is not None:
            body_end += int(over.params.get("extra", 1024))
            filler = max(0, body_end - total)
            body_end = min(body_end, total)
        if "gzip" in active:
            plain = store.read(key, first, body_end) + bytes(filler)
            if transform is not None:
                plain = transform(plain, first)
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(plain, mtime=0)
            return await self._respond(request, status, headers, content_type, body, active)
        length = body_end - first + filler
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = content_type
        response.content_length = length
        await response.prepare(request)
        if request.method == "HEAD":
            return response, False

        async def pieces() -> AsyncIterator[bytes]:
            async for piece in store.iter_range(key, first, body_end):
                yield piece
            if filler:
                yield b"\x00" * filler

        served = Served(key, first, first)
        self.served.append(served)
        self.sending += 1

        def wrote(n: int) -> None:
            served.end += n

        try:
            done = await write_body(
                request,
                response,
                pieces(),
                self.faults,
                active,
                offset=first,
                transform=transform,
                on_write=wrote,
            )
        finally:
            self.sending -= 1
        if not done:
            return response, False
        await response.write_eof()
        return response, last == total - 1 and not filler

    @staticmethod
    def _bad_range(
        variant: str, headers: CIMultiDict[str], first: int, last: int, total: int
    ) -> tuple[int, int]:
        # RELIABILITY H3; the body always matches what the header claims, except for
        # wrong_total and other_unit, where only the header lies.
        if variant == "shifted_start":
            first = first - 1 if first > 0 else first + 1
            last = max(first, last)
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
        elif variant == "end_past_request":
            claimed = last + 1000
            last = min(claimed, total - 1)
            headers["Content-Range"] = f"bytes {first}-{claimed}/{total}"
        elif variant == "wrong_total":
            headers["Content-Range"] = f"bytes {first}-{last}/{total + 1}"
        elif variant == "missing":
            del headers["Content-Range"]
        elif variant == "other_unit":
            headers["Content-Range"] = f"items {first}-{last}/{total}"
        return first, last

    async def _respond(
        self,
        request: web.Request,
        status: int,
        headers: CIMultiDict[str],
        content_type: str,
        body: bytes,
        active: dict[str, Fault],
    ) -> tuple[web.StreamResponse, bool]:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = content_type
        response.content_length = len(body)
        await response.prepare(request)
        if request.method != "HEAD" and not await write_body(
            request, response, _one(body), self.faults, active
        ):
            return response, False
        await response.write_eof()
        return response, False
