"""CrateQ's wire as the simulator writes and reads it: minified JSON records, request parameters.

Records are rendered in docs/pools/crateq.md's field order, around the per-user fields (`auth`,
`queueId`, `downloaded`) the server fills in per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring as _encode_string
from typing import Any

from aiohttp import web

from pooldaemon.sim.answer import json_error
from pooldaemon.sim.catalog import FIELDS, Catalog

__all__ = [
    "API_FIELDS",
    "QUEUE_FIELDS",
    "Json",
    "RecordRenderer",
    "dumps",
    "page_and_rows",
    "request_params",
]

# docs/pools/crateq.md "Music Catalog Properties", in the order of its example.
API_FIELDS = (
    "mediaId",
    "artist",
    "title",
    "genre",
    "bpm",
    "length",
    "size",
    "tool",
    "editor",
    "advisory",
    "releaseYear",
    "quality",
    "preview",
    "date",
    "auth",
    "queueId",
    "downloaded",
    "audio",
    "video",
    "source",
    "img",
)
QUEUE_FIELDS = (*API_FIELDS, "queueDate")
# The per-user fields (auth, queueId, downloaded) sit between these two cached parts.
HEAD_FIELDS = tuple((name, FIELDS.index(name)) for name in API_FIELDS[: API_FIELDS.index("auth")])
TAIL_FIELDS = tuple(
    (name, FIELDS.index(name)) for name in API_FIELDS[API_FIELDS.index("downloaded") + 1 :]
)
_RENDER_CACHE_MAX = 250_000


@dataclass
class Json:
    """An API answer's body and status."""

    body: bytes
    status: int = 200


def dumps(value: Any) -> bytes:
    """JSON as the pool writes it."""
    # docs/pools/crateq.md: "The responses are minified".
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _json_value(value: Any) -> str:
    # Faster than json.dumps per record for the plain values records hold.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return _encode_string(value)
    return json.dumps(value, ensure_ascii=False)


def _json_fields(row: tuple[Any, ...], fields: tuple[tuple[str, int], ...]) -> bytes:
    return ",".join([f'"{name}":{_json_value(row[at])}' for name, at in fields]).encode()


class RecordRenderer:
    """A record's JSON around the per-user fields, cached until the record changes."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._rendered: dict[int, tuple[int, bytes, bytes]] = {}

    def clear(self) -> None:
        """Forget every rendered record (the catalog's base URL changed)."""
        self._rendered.clear()

    def render(self, media_id: int) -> tuple[bytes, bytes] | None:
        """A record's JSON around the per-user fields, cached until the record changes."""
        revision = self._catalog.revision(media_id)
        cached = self._rendered.get(media_id)
        if cached is not None and cached[0] == revision:
            return cached[1], cached[2]
        row = self._catalog.row(media_id)
        if row is None:
            return None
        head = b"{" + _json_fields(row, HEAD_FIELDS)
        tail = _json_fields(row, TAIL_FIELDS) + b"}"
        if len(self._rendered) >= _RENDER_CACHE_MAX:
            self._rendered.clear()
        self._rendered[media_id] = (revision, head, tail)
        return head, tail


async def request_params(request: web.Request) -> dict[str, str]:
    """Query parameters overlaid with a JSON or form body."""
    params = dict(request.query.items())
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if isinstance(body, list) and body and isinstance(body[0], dict):
                body = body[0]
            if isinstance(body, dict):
                params.update({str(k): "" if v is None else str(v) for k, v in body.items()})
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def page_and_rows(query: Mapping[str, str], max_rows: int) -> tuple[int, int] | web.StreamResponse:
    """(page, rows) from the query, rows capped at `max_rows`; a 400 when they are not numbers."""
    try:
        page = int(query.get("page") or 1)
        rows = int(query.get("rows") or 100)
    except ValueError:
        return json_error(400, "Invalid parameter: page and rows must be integers.")
    if page < 1 or rows < 1:
        return json_error(400, "Invalid parameter: page and rows start at 1.")
    return page, min(rows, max_rows)
