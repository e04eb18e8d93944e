"""Harvest Media's two wires as the simulator speaks them: the envelope, XML layout, body parsing.

`json` answers with PascalCase JSON; `xml` with docs/pools/harvest.md's lower-case XML (an element
per line, lists under plural names, `<tokenvalue>` wrapped in newlines). Errors travel in the
envelope with HTTP 200.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import defusedxml.ElementTree as SafeET
from aiohttp import web

__all__ = [
    "ERROR_TEXTS",
    "HarvestError",
    "Wire",
    "content_type",
    "decode_body",
    "encode",
    "oauth_error",
    "zone",
]

Wire = Literal["json", "xml"]

#: docs/pools/harvest.md's own example of an error; the rest are this simulator's words for
#: docs/interface.md §6's codes.
ERROR_TEXTS: dict[int, str] = {
    2: "Invalid username or password",
    3: "Invalid AccessKey",
    5: "Invalid Token",
    8: "Invalid Format",
    9: "Not Found",
    10: "Download type not supported",
    12: "Member is not permitted to download",
    13: "Member account is not active",
    14: "Download limit reached",
    18: "Downloads are disabled for this account",
    21: "Token Expired",
    22: "Invalid Persistent Login Token",
}
_SINGULAR = {
    "tracks": "track",
    "albums": "album",
    "playlists": "playlist",
    "fileformats": "fileformat",
    "downloadtokens": "downloadtoken",
    "downloadhistory": "download",
}
_XML_ROOTS = {
    "getservicetoken": "responseservicetoken",
    "getmembertoken": "responsemembertoken",
    "validatepersistentlogintoken": "responsemembertoken",
    "getserviceinfo": "responseserviceinfo",
    "getfavourites": "responsefavourites",
    "getmemberplaylistsnotracks": "responseplaylists",
    "getmemberplaylist": "responseplaylist",
    "getlatestalbums": "responsealbums",
    "getdownloadhistorybymembertoken": "responsedownloadhistory",
    "getmusicdownload": "responsemusicdownload",
}


class HarvestError(Exception):
    """An error the pool reports in the envelope: `{"Error": {"Code": …, "Description": …}}`."""

    def __init__(self, code: int, description: str | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description if description is not None else ERROR_TEXTS.get(code, "")


def content_type(wire: Wire) -> str:
    """The Content-Type of an answer on this wire."""
    return "application/json; charset=utf-8" if wire == "json" else "application/xml; charset=utf-8"


def decode_body(raw: bytes) -> dict[str, Any]:
    """A request body of either wire as a dict with lower-case keys."""
    if not raw.strip():
        return {}
    if raw.lstrip().startswith(b"<"):
        try:
            root = SafeET.fromstring(raw, forbid_dtd=True)
        except Exception as err:  # defusedxml raises several unrelated types
            raise HarvestError(1, f"Malformed request body: {type(err).__name__}") from err
        return {child.tag.lower(): (child.text or "").strip() for child in root}
    try:
        parsed = json.loads(raw)
    except ValueError as err:
        raise HarvestError(1, "Malformed request body") from err
    if not isinstance(parsed, dict):
        raise HarvestError(1, "Malformed request body")
    return {str(k).lower(): v for k, v in parsed.items()}


def encode(wire: Wire, endpoint: str, payload: dict[str, Any]) -> bytes:
    """An answer's envelope on this wire (XML under the endpoint's own root element)."""
    if wire == "json":
        return json.dumps(payload).encode()
    root = _XML_ROOTS.get(endpoint, "response")
    lines = ['<?xml version="1.0" encoding="utf-8"?>', f"<{root}>"]
    for key, value in payload.items():
        lines.extend(_xml(key.lower(), value, 1))
    lines.append(f"</{root}>")
    return ("\n".join(lines) + "\n").encode()


def zone(hours: float, *, colon: bool) -> str:
    """A UTC offset as `+1000` (or `+10:00` with `colon`)."""
    sign = "-" if hours < 0 else "+"
    minutes = round(abs(hours) * 60)
    return f"{sign}{minutes // 60:02d}{':' if colon else ''}{minutes % 60:02d}"


def oauth_error(status: int, error: str) -> web.Response:
    """An RFC 6749 error answer of the OAuth host."""
    return web.Response(
        status=status, text=json.dumps({"error": error}), content_type="application/json"
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml(tag: str, value: Any, depth: int) -> list[str]:
    """One value as docs/pools/harvest.md lays XML out: an element per line, lists under plural
    names."""
    pad = "  " * depth
    if isinstance(value, dict):
        lines = [f"{pad}<{tag}>"]
        for key, item in value.items():
            lines.extend(_xml(key.lower(), item, depth + 1))
        return [*lines, f"{pad}</{tag}>"]
    if isinstance(value, list):
        singular = _SINGULAR.get(tag, "item")
        lines = [f"{pad}<{tag}>"]
        for item in value:
            lines.extend(_xml(singular, item, depth + 1))
        return [*lines, f"{pad}</{tag}>"]
    if value is None:
        return [f"{pad}<{tag} />"]
    text = ("true" if value else "false") if isinstance(value, bool) else _escape(str(value))
    if tag == "tokenvalue":
        # docs/pools/harvest.md: the token value sits on its own line between the tags.
        return [f"{pad}<{tag}>\n{text}\n{pad}</{tag}>"]
    return [f"{pad}<{tag}>{text}</{tag}>"]
