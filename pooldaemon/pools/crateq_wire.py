"""CrateQ's wire: paged answers checked, catalog records read into track rows, JWTs read.

Pure functions, so a big catalog's pages can be decoded in a worker process (`offload.py`); the
adapter in `pools/crateq.py` holds the URLs, tokens and queue rules. Field rules follow the pool's
document as served (docs/pools/crateq.md): `size` in MB as text, `length` as MM:SS, numbers and
flags that may come as text.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pooldaemon.errors import AuthError, IncompleteAnswer, ProtocolError
from pooldaemon.models import CatalogPage, Track
from pooldaemon.pools.fields import Quarantined, flag, text, whole_number
from pooldaemon.pools.http import loads_strict, repair_thousands
from pooldaemon.trackrows import TrackRows, raw_text

#: Keys of a catalog record that change on every read and say nothing about the track.
VOLATILE_KEYS = frozenset({"auth"})
#: docs/pools/crateq.md `size` is "in MB"; the pools' sites compute it as bytes / 1024².
_SIZE_UNITS = {"": 1024**2, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?b)?\s*$", re.IGNORECASE)
_LENGTH = re.compile(r"^\s*(?:(\d{1,2}):)?(\d{1,3}):(\d{2})\s*$")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ][0-9:.]+Z?)?$")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A checked `{"records", "pages", "page", "data"}` answer."""

    records: int
    pages: int
    page: int
    data: list[Any]


@dataclass(frozen=True, slots=True)
class DecodedPage:
    """A `Content/Media` page as `decode_media_page` returns it, with what is worth logging."""

    page: CatalogPage
    repaired: bool
    quarantined: tuple[tuple[str, str], ...]  # (media id, reason)

    @property
    def pages(self) -> int:
        return self.page.pages


def decode_media_page(pool: str, text: str, where: str, page: int, rows: int) -> DecodedPage:
    """One `Content/Media` answer as a page of track rows; ProtocolError when it is unusable."""
    envelope, repaired = check_envelope(text, where, page, rows)
    values: list[Any] = []
    quarantined: list[tuple[str, str]] = []
    for record in envelope.data:
        try:
            *scalars, raw = _media_fields(record)
        except Quarantined as err:
            quarantined.append((record_id(record), str(err)))
            continue
        values += scalars
        values.append(raw_text(raw))
    return DecodedPage(
        page=CatalogPage(
            tracks=TrackRows(pool, values),
            page=envelope.page,
            pages=envelope.pages,
            total=envelope.records,
            quarantined=tuple(ident for ident, _ in quarantined),
        ),
        repaired=repaired,
        quarantined=tuple(quarantined),
    )


def check_envelope(text: str, where: str, expected_page: int, rows: int) -> tuple[Envelope, bool]:
    """A paged answer, checked; and whether its thousands separators had to be removed."""
    if not text.strip():
        raise IncompleteAnswer(f"{where}: empty body")
    try:
        body = loads_strict(text, where)
        repaired = False
    except ProtocolError as err:
        # docs/reliability.md M1: `"records":174,420` – repair only those two numbers, and only if
        # the result parses and its paging adds up.
        fixed, changed = repair_thousands(text)
        if not changed:
            raise
        try:
            body = loads_strict(fixed, where)
        except ProtocolError:
            raise err from None
        repaired = True
    if isinstance(body, list) and not body:
        # docs/pools/crateq.md: a 30-second server timeout answers 200 with `[]`: never data.
        raise IncompleteAnswer(f"{where}: the pool timed out (HTTP 200 with [])")
    if not isinstance(body, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(body).__name__}")
    data = body.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"{where}: answer has no data list")
    try:
        records = _count(body.get("records"), "records")
        pages = _count(body.get("pages"), "pages")
        page = _count(body.get("page", expected_page), "page")
    except Quarantined as err:
        raise ProtocolError(f"{where}: {err}") from None
    if repaired:
        size = len(data) if page < pages else rows
        if pages not in {math.ceil(records / rows), math.ceil(records / max(size, 1))}:
            raise ProtocolError(
                f"{where}: thousands separators removed, but {records} records do not "
                f"make {pages} pages; answer refused"
            )
    if page != expected_page:
        raise ProtocolError(f"{where}: answered page {page} instead")
    if records > 0 and page <= pages and not data:
        raise IncompleteAnswer(f"{where}: page {page} of {pages} is empty")
    if records == 0 and data:
        raise ProtocolError(f"{where}: says 0 records but lists {len(data)}")
    return Envelope(records=records, pages=pages, page=page, data=data), repaired


def media_track(pool: str, record: Any) -> Track:
    """A catalog or queue record as a Track; Quarantined when a field breaks its rule."""
    return Track(pool, *_media_fields(record))


def _media_fields(record: Any) -> tuple[Any, ...]:
    """A record's `Track` fields after `pool`, in their order (`id` … `raw`): a page of them
    becomes `TrackRows` without a `Track` object per record in between."""
    if type(record) is not dict:
        raise Quarantined(f"record is {type(record).__name__}, not an object")
    get = record.get
    media_id = get("mediaId")
    if type(media_id) is not int:
        media_id = whole_number(media_id, "mediaId")
    if media_id is None or media_id <= 0:
        raise Quarantined("no mediaId")
    raw = dict(record)
    for key in VOLATILE_KEYS:
        raw.pop(key, None)
    mix = get("tool")
    return (
        str(media_id),
        text(get("artist"), "artist"),
        text(get("title"), "title"),
        text(get("genre"), "genre"),
        _positive(get("bpm"), "bpm"),
        _positive(get("releaseYear"), "releaseYear"),
        text(get("mix") if mix is None else mix, "tool"),
        text(get("editor"), "editor"),
        text(get("advisory"), "advisory"),
        parse_length(get("length")),
        parse_size(get("size")),
        flag(get("audio"), "audio"),
        flag(get("video"), "video"),
        text(get("quality"), "quality"),
        _date(get("date")),
        text(get("source"), "source"),
        flag(get("downloaded"), "downloaded"),
        raw,
    )


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying (only a hint: a 401 decides, T4)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and exp > 0:
        return float(exp)
    return None


def login_account(body: Any, pool: str) -> dict[str, Any]:
    """docs/pools/crateq.md: Auth/Login answers an array with one account (docs/reliability.md M3:
    not an object)."""
    if isinstance(body, list):
        if not body:
            raise IncompleteAnswer(f"{pool}: Auth/Login answered with an empty list")
        body = body[0]
    if not isinstance(body, dict):
        raise ProtocolError(f"{pool}: Auth/Login answered with {type(body).__name__}")
    if "token" not in body and "status" not in body and "message" in body:
        raise AuthError(f"{pool}: sign-in refused: {body.get('message')}")
    return body


def record_id(record: Any) -> str:
    """The record's mediaId if it has a usable one, else "" (cannot be told apart)."""
    if isinstance(record, dict):
        try:
            media_id = whole_number(record.get("mediaId"), "mediaId")
        except Quarantined:
            return ""
        return str(media_id) if media_id else ""
    return ""


def _count(value: Any, name: str) -> int:
    number = whole_number(value, name)
    if number is None or number < 0:
        raise Quarantined(f"{name} is missing or negative")
    return number


def _positive(value: Any, name: str) -> int | None:
    """A number where 0 means "not known" (bpm, releaseYear)."""
    if type(value) is int and value > 0:
        return value
    number = whole_number(value, name)
    if number is None or number == 0:
        return None
    if number < 0:
        raise Quarantined(f"{name} {number} is negative")
    return number


def _date(value: Any) -> str | None:
    if type(value) is str and _DAY.fullmatch(value):
        return value
    if value is None or value == "":
        return None
    match = _DATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise Quarantined(f"date {str(value)[:30]!r} is not YYYY-MM-DD")
    return match.group(1)


def parse_length(value: Any) -> int | None:
    """docs/pools/crateq.md lengths: "03:38", "2:18" (and "1:02:03") → seconds."""
    if type(value) is str and len(value) <= 6:
        mm, colon, ss = value.partition(":")
        if colon and mm.isdigit() and len(ss) == 2 and "00" <= ss <= "59":
            return int(mm) * 60 + int(ss)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _LENGTH.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(3)) >= 60:
        raise Quarantined(f"length {str(value)[:20]!r} is not MM:SS")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_size(value: Any) -> int | None:
    """docs/pools/crateq.md sizes: "75.26 MB" → bytes (approximate: the pool rounds to 0.01 MB)."""
    if type(value) is str and value.endswith(" MB"):
        number = value[:-3]
        if number.replace(".", "", 1).isdigit():
            return round(float(number) * _SIZE_UNITS["mb"])
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return round(value * _SIZE_UNITS[""])
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise Quarantined(f"size {str(value)[:20]!r} is not like '75.26 MB'")
    return round(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
