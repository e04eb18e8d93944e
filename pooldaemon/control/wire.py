"""The control API's wire: JSON answers (free text redacted), error answers, checked request
bodies and query parameters; shared by the socket's routes and the dashboard's API."""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Set
from typing import Any

import orjson
from aiohttp import web

from pooldaemon import jsonstrict
from pooldaemon.control.services import Services
from pooldaemon.errors import BadRequest, PoolDaemonError
from pooldaemon.log import redact_text

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
#: A request body's keys → the JSON types each may hold.
Spec = dict[str, type | tuple[type, ...]]


class HttpError(PoolDaemonError):
    """An error whose status is not one of the vocabulary's (timeouts)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code


async def read_body(request: web.Request, spec: Spec, timeout_s: float) -> dict[str, Any]:
    """The JSON object body, checked against `spec` (key → allowed types); empty is `{}`."""
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise HttpError(
            408, "timeout", f"request body not received within {timeout_s:g} s"
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
        raise BadRequest(f"request body must be a JSON object, not {json_type(value)}")
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
            wanted = " or ".join(type_name(t) for t in allowed_types)
            raise BadRequest(f'"{key}" must be {wanted}, not {json_type(item)}')
    return value


class Routes:
    """Handlers of one area of the API over `Services`; `add` mounts them on a router."""

    def __init__(self, services: Services, body_timeout_s: float) -> None:
        self.services = services
        self.body_timeout_s = body_timeout_s

    async def _body(self, request: web.Request, spec: Spec) -> dict[str, Any]:
        """The JSON object body, checked against `spec`; empty is `{}`."""
        return await read_body(request, spec, self.body_timeout_s)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json_line(data), status=status, content_type="application/json", charset="utf-8"
    )


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": redact_text(message)}}, status)


def forbidden(message: str) -> web.Response:
    resp = error_response(403, "forbidden", message)
    resp.force_close()  # S1: answer and hang up
    return resp


def jsonjson_line(data: Any) -> bytes:
    """One JSON document and a newline, free-text fields redacted: what every answer holds."""
    return json_line(data)


#: orjson as `json.dumps(..., default=str)` would write it: dataclasses and dates through
#: `str` too, never as orjson's own forms.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS
    | orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def json_line(data: Any) -> bytes:
    """orjson writes a page of 500 jobs in ~0.5 ms where `json` took 3-6 (issue 13); `json`
    writes only what orjson refuses (integers past 64 bits)."""
    redacted = _redact_fields(data)
    try:
        return orjson.dumps(redacted, default=str, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return (json.dumps(redacted, ensure_ascii=False, default=str) + "\n").encode()


#: Values with nothing inside to redact: returned as they are, without a call per value.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _redact_fields(data: Any) -> Any:
    """Redact free-text fields that may carry a pool's words (and so its tokens) (S3)."""
    if type(data) in _PLAIN:
        return data
    if isinstance(data, dict):
        return {
            k: redact_text(v)
            if k in _FREE_TEXT_KEYS and isinstance(v, str)
            else v
            if type(v) in _PLAIN
            else _redact_fields(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [v if type(v) in _PLAIN else _redact_fields(v) for v in data]
    return data


def single_query(request: web.Request, known: Set[str]) -> dict[str, str]:
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


def state_param(text: str | None, states: type[enum.StrEnum], what: str) -> str | None:
    """A `state` query value, one of `states` (None when not given); `what` names them."""
    if not text:
        return None
    if text not in {s.value for s in states}:
        known = ", ".join(s.value for s in states)
        raise BadRequest(f"unknown {what} state {text!r} (states: {known})")
    return text


def whole(text: str | None, key: str, default: int) -> int:
    """A whole-number query parameter."""
    if text is None or not text.strip():
        return default
    if not text.strip().isdigit():
        raise BadRequest(f"{key}: expected a whole number (got {text[:40]!r})")
    return int(text.strip())


def path_job_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"job id must be a number, not {text[:40]!r}")
    return int(text)


def status_code(status: int) -> str:
    return _STATUS_CODES.get(status, "internal" if status >= 500 else f"http_{status}")


def http_message(request: web.Request, err: web.HTTPException) -> str:
    if isinstance(err, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(err.allowed_methods))
        return f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    if err.status == 404:
        return f"no such endpoint: {request.method} {request.path}"
    if err.status == 413:
        return f"request body too large: {err.text}"
    return err.text or err.reason


def type_name(t: type) -> str:
    return {bool: "true or false", str: "a string", int: "a number", list: "a list"}.get(
        t, t.__name__
    )


def json_type(value: Any) -> str:
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
