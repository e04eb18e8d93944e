"""Answers with the switched-on faults applied: short-circuit errors, API bodies, paced bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from pooldaemon.sim.faults import Fault, Faults

__all__ = [
    "ErrorFactory",
    "api_response",
    "default_error",
    "fault_response",
    "json_error",
    "one_piece",
    "start_app",
    "write_body",
]


def json_error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """The `{"status": …, "message": …}` error model (docs/pools/crateq.md's, also fine for other
    pools)."""
    body = json.dumps({"status": status, "message": message}).encode()
    return web.Response(
        status=status,
        body=body,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


ErrorFactory = Callable[[int, str, dict[str, str]], web.StreamResponse]


def default_error(status: int, message: str, headers: dict[str, str]) -> web.StreamResponse:
    return json_error(status, message, headers=headers)


async def fault_response(
    request: web.Request,
    faults: Faults,
    active: dict[str, Fault],
    error: ErrorFactory = default_error,
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


async def one_piece(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _break_json(body: bytes) -> bytes:
    # docs/pools/crateq.md's example has `…630quot;,` where a closing quote belongs.
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
    if request.method != "HEAD" and await write_body(
        request, response, one_piece(body), faults, active
    ):
        await response.write_eof()
    return response


async def start_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Run `app` on host:port (0: any free port); returns the runner and the bound port."""
    # handler_cancellation: a stalled handler ends when its client goes away (docs/reliability.md
    # H5).
    runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
