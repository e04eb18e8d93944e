"""A Range-correct download server shared by the simulators, with the download faults applied.

Pool-agnostic: each pool's simulator hands it a `resolve` callback that checks that pool's
tokens and names the media to serve.
"""

from __future__ import annotations

import email.utils
import gzip
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from pooldaemon.sim.answer import (
    ErrorFactory,
    default_error,
    fault_response,
    one_piece,
    start_app,
    write_body,
)
from pooldaemon.sim.faults import DOWNLOAD_KINDS, Fault, Faults
from pooldaemon.sim.media import MediaStore
from pooldaemon.sim.requestlog import RequestLog

__all__ = ["DownloadServer", "Served", "parse_range"]


_HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    b"request. Please try again later.</p></body></html>\n"
)


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


@dataclass
class Served:
    """Bytes [first, end) of a media file written to one answer (end grows as it is sent)."""

    key: str
    first: int
    end: int


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
        self.error: ErrorFactory = error or default_error
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
        # docs/reliability.md H3; the body always matches what the header claims, except for
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
            request, response, one_piece(body), self.faults, active
        ):
            return response, False
        await response.write_eof()
        return response, False
