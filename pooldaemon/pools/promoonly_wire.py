"""Promo Only's answers read: queue entries checked, tracks, token expiries, the pool's own words.

Pure functions over decoded JSON; the adapter in `pools/promoonly.py` holds the URLs, the token
rules and the queue calls.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from pooldaemon.errors import BadRequest, ProtocolError
from pooldaemon.log import redact_text
from pooldaemon.models import Track
from pooldaemon.pools.fields import flag_or_none, text_or_none, whole_number_or_none

#: docs/interface.md §6: "The access token lives 5 minutes"; used when the answer's expiry is
#: unusable.
TOKEN_LIFETIME_S = 300.0
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}(?::\d{1,5})?$")
_TRACK_ID = re.compile(r"^[0-9]{1,12}$")
#: Extensions a `file_type` may name ("720 mp4", "mp3 320"); anything else is left to the
#: downloader's magic-byte check.
_EXTENSIONS = frozenset({"mp3", "mp4", "m4a", "m4v", "mov", "wav", "aif", "aiff", "flac", "aac"})
_VIDEO = frozenset({"mp4", "m4v", "mov"})


def result_text(body: Any) -> str:
    """The pool's own words: `Result` (docs/pools/promoonly.md §2), `result`
    (docs/pools/promoonly.md §6), `message` elsewhere."""
    if isinstance(body, dict):
        for key in ("Result", "result", "message", "Message", "error", "msg"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return redact_text(value.strip()[:200])
    if isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        return redact_text(body.strip()[:200])
    return ""


def as_object(body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"{where}: answered {type(body).__name__}, expected an object")
    return body


def parse_track_id(value: str) -> str:
    text = str(value).strip()
    if not _TRACK_ID.fullmatch(text):
        raise BadRequest(f"Promo Only track IDs are numbers, not {text[:40]!r}")
    return str(int(text))


def server_host(value: Any) -> str | None:
    """A server host as the pool names it; anything that could bend the URL is refused."""
    if isinstance(value, str) and _HOST.fullmatch(value.strip()):
        return value.strip()
    return None


def queue_entry(raw: Any, where: str) -> dict[str, Any]:
    """A docs/pools/promoonly.md §2 queue object, checked: trackid, dl_token and the server
    hosts."""
    fields = as_object(raw, where)
    track_id = whole_number_or_none(fields.get("trackid"))
    dl_token = text_or_none(fields.get("dl_token"))
    if track_id is None or track_id < 0:
        raise ProtocolError(f"{where}: an entry without a usable trackid")
    if not dl_token:
        said = result_text(fields)
        raise ProtocolError(
            f"{where}: track {track_id} has no dl_token" + (f": {said}" if said else "")
        )
    servers = fields.get("servers") or []
    if not isinstance(servers, list):
        raise ProtocolError(f"{where}: track {track_id}: servers is not a list")
    entry = dict(fields)
    entry.update(
        trackid=track_id,
        dl_token=dl_token,
        servers=[host for host in (server_host(item) for item in servers) if host is not None],
    )
    return entry


def file_extension(file_type: Any) -> str | None:
    """`"720 mp4"` → mp4, `"mp3 320"` → mp3: the word that is a known extension, else None."""
    if not isinstance(file_type, str):
        return None
    for word in re.split(r"[\s/,_-]+", file_type.lower()):
        word = word.strip(".")
        if word in _EXTENSIONS:
            return "aiff" if word == "aif" else word
    return None


def token_expiry(value: Any, now: float) -> float:
    """When a token stops working, from `expiration` / `expires` in whatever form it comes.

    Unix seconds (or milliseconds), a lifetime in seconds and ISO 8601 times are read. A value
    meaning "already expired" or "valid for over a day" (a skewed clock, a misread unit) gives
    the documented five minutes instead (docs/interface.md §6; docs/reliability.md T4: expiry is
    only a hint).
    """
    lifetime: float | None = None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            try:
                when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                lifetime = when.timestamp() - now
    if number is not None:
        if number > 1e12:
            number /= 1000.0  # milliseconds
        lifetime = number - now if number > 1e9 else number
    if lifetime is None or not 0 < lifetime <= 86400:
        lifetime = TOKEN_LIFETIME_S
    return now + lifetime


def queue_time(value: Any) -> str | None:
    """`queue_time` as ISO 8601 UTC when it is a Unix time, else as sent."""
    number = whole_number_or_none(value)
    if number is not None and number > 1_000_000_000:
        return dt.datetime.fromtimestamp(number, dt.UTC).isoformat().replace("+00:00", "Z")
    return text_or_none(value)


def entry_track(pool: str, entry: Mapping[str, Any]) -> Track:
    """A queue entry as a track for the catalog mirror (docs/interface.md §4 fields)."""
    extension = file_extension(entry.get("file_type"))
    explicit, warn = flag_or_none(entry.get("explicit")), flag_or_none(entry.get("content_warn"))
    advisory = None
    if explicit is not None or warn is not None:
        advisory = "Explicit" if (explicit or warn) else "Clean"
    modified = whole_number_or_none(entry.get("modified"))
    date = (
        dt.datetime.fromtimestamp(modified, dt.UTC).date().isoformat()
        if modified is not None and modified > 0
        else None
    )
    return Track(
        pool=pool,
        id=str(entry["trackid"]),
        artist=text_or_none(entry.get("artist")),
        title=text_or_none(entry.get("title")),
        genre=text_or_none(entry.get("genre")),
        bpm=whole_number_or_none(entry.get("bpm")),
        year=whole_number_or_none(entry.get("release_year")),
        mix=text_or_none(entry.get("mix")),
        advisory=advisory,
        length_s=whole_number_or_none(entry.get("duration")),
        audio=True if extension else None,
        video=(extension in _VIDEO) if extension else None,
        quality=text_or_none(entry.get("file_type")),
        date=date,
        source=text_or_none(entry.get("release_name")),
        # No per-download token in the mirror: it is a credential (docs/reliability.md S3).
        raw={key: value for key, value in entry.items() if key not in ("dl_token", "Result")},
    )
