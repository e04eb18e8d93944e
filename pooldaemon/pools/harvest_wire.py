"""Harvest Media's two wires read into one shape, and its records read into tracks.

docs/interface.md §6: the current API speaks JSON with PascalCase keys, docs/pools/harvest.md
lower-case XML; keys are matched case-insensitively. Both decode here into dicts, lists and scalars
whose keys are all lower-case, so the adapter reads `body["downloadtokens"]` whatever the wire. XML
goes through `pools/http.parse_xml` (DTDs and entities refused, docs/reliability.md M4); JSON
through `loads_strict`. Records in that shape become Tracks here too (`read_track`), and download
tokens are checked (`download_parts`): pure functions, like the rest.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from xml.etree.ElementTree import Element

from pooldaemon.errors import IncompleteAnswer, ProtocolError
from pooldaemon.models import Track
from pooldaemon.pools.fields import Quarantined, flag, text_or_none, whole_number_or_none
from pooldaemon.pools.http import loads_strict, parse_xml

Wire = Literal["json", "xml"]

#: docs/pools/harvest.md serves its error envelope this way; the JSON API as `{"Error": {"Code",
#: …}}`.
ERROR_KEY = "error"
_NET_DATE = re.compile(r"^/?Date\((-?\d+)([+-]\d{4})?\)/?$")
_OFFSET_HM = re.compile(r"^([+-]?)(\d{1,2}):(\d{2})$")
#: A download token as it may appear in a URL: no blanks, slashes, `?` or `#`.
TOKEN_PATTERN = re.compile(r"^[^\s/?#]{1,1024}$")
#: A Harvest id (track, album, playlist) safe to put in a URL path or a file name.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_LENGTH = re.compile(r"^(?:(\d{1,2}):)?(\d{1,3}):(\d{2})(?:\.\d+)?$")
#: Real offsets run from UTC-12 to UTC+14.
_MAX_OFFSET_H = 14.0


def decode(text: str, wire: Wire, where: str) -> dict[str, Any]:
    """One answer of either wire as a dict with lower-case keys (the error envelope included)."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise IncompleteAnswer(f"{where}: answered with an empty body")
    head = stripped[:100].lower()
    if head.startswith(("<!doctype html", "<html")):
        raise ProtocolError(f"{where}: answered with an HTML page, not {wire.upper()}")
    if wire == "xml":
        if not stripped.startswith("<"):
            raise ProtocolError(f"{where}: expected XML, got {_snippet(stripped)!r}")
        return normalize_xml(parse_xml(stripped, where), where)
    if stripped.startswith("<"):
        raise ProtocolError(f"{where}: expected JSON, got markup {_snippet(stripped)!r}")
    value = normalize_json(loads_strict(stripped, where), where)
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _snippet(text: str) -> str:
    return text[:40].replace("\n", " ")


def normalize_json(value: Any, where: str = "answer") -> Any:
    """JSON with every object key lower-cased; keys equal but for case must agree."""
    if isinstance(value, list):
        return [normalize_json(item, where) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        lowered = key.lower()
        normalized = normalize_json(item, where)
        if lowered in result and result[lowered] != normalized:
            raise ProtocolError(f"{where}: keys differing only in case disagree ({key!r})")
        result[lowered] = normalized
    return result


def _local(tag: str) -> str:
    """An element or attribute name without its namespace, lower-cased."""
    return tag.rsplit("}", 1)[-1].lower()


def _element(element: Element) -> Any:
    """An element as text (a leaf) or a dict of attributes and children (repeats as lists)."""
    attrs = {_local(k): v.strip() for k, v in element.attrib.items()}
    if attrs.get("nil") == "true":
        return None  # .NET DataContract's xsi:nil="true"
    attrs.pop("nil", None)
    children = list(element)
    if not children and not attrs:
        # docs/pools/harvest.md: `<tokenvalue>` has newlines around it; XML whitespace is layout,
        # not data.
        return (element.text or "").strip()
    result: dict[str, Any] = dict(attrs)
    repeated: set[str] = set()
    for child in children:
        key = _local(child.tag)
        value = _element(child)
        if key in repeated:
            result[key].append(value)
        elif key in result:
            result[key] = [result[key], value]
            repeated.add(key)
        else:
            result[key] = value
    text = (element.text or "").strip()
    if text and not children:
        result["value"] = text
    return result


def normalize_xml(root: Element, where: str = "answer") -> dict[str, Any]:
    """The root's content (its children by lower-case name); a bare `<error>` root is kept."""
    name = _local(root.tag)
    content = _element(root)
    if name == ERROR_KEY or not isinstance(content, dict):
        return {name: content}
    return content


def error_of(body: Mapping[str, Any]) -> tuple[int | str, str] | None:
    """The (code, description) of an error envelope, or None when the answer is not one."""
    envelope = body.get(ERROR_KEY)
    if envelope is None or envelope == "":
        return None
    if not isinstance(envelope, dict):
        return ("?", str(envelope)[:200])
    code = envelope.get("code")
    description = text(envelope.get("description")) or text(envelope.get("message")) or ""
    if code is None and not description:
        return None
    parsed: int | str
    try:
        parsed = int(str(code).strip())
    except ValueError:
        parsed = str(code).strip() or "?"
    if parsed == 0 and not description:
        return None  # an envelope saying "no error"
    return parsed, description


# -- reading values ----------------------------------------------------------------------------


def first(record: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` (lower-case) present with a value other than None or ""."""
    for name in names:
        value = record.get(name)
        if value is not None and value != "":
            return value
    return None


def as_list(value: Any, singular: str | None = None) -> list[Any]:
    """A JSON array, or an XML container (`<tracks><track>…`) with one or many items."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if singular is not None and singular in value:
            inner = value[singular]
            return inner if isinstance(inner, list) else as_list(inner)
        if len(value) == 1:
            (inner,) = value.values()
            if isinstance(inner, list):
                return inner
            if isinstance(inner, dict):
                return [inner]
        return [value]
    raise ProtocolError(f"expected a list, got {type(value).__name__}")


def text(value: Any) -> str | None:
    """A scalar as stripped text (fields.text_or_none); a JSON boolean as "true" or "false", as
    the XML wire writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return text_or_none(value)


def as_bool(value: Any, name: str) -> bool:
    """A JSON boolean or the XML text "true"/"false" (fields.flag); absent is false."""
    try:
        return bool(flag(value, name))
    except Quarantined as err:
        raise ProtocolError(str(err)) from None


# -- time --------------------------------------------------------------------------------------


def parse_offset(value: Any) -> float | None:
    """`UTCOffset` in hours: 10, -5, 5.5, "+10", "-05:00", "5:30"; None when absent."""
    if value is None or value == "":
        return None
    hours: float
    if isinstance(value, bool):
        raise ProtocolError(f"UTCOffset {value!r} is not a number of hours")
    if isinstance(value, int | float):
        hours = float(value)
    else:
        raw = str(value).strip()
        match = _OFFSET_HM.match(raw)
        if match:
            sign = -1.0 if match.group(1) == "-" else 1.0
            hours = sign * (int(match.group(2)) + int(match.group(3)) / 60)
        else:
            try:
                hours = float(raw)
            except ValueError:
                raise ProtocolError(f"UTCOffset {raw[:20]!r} is not a number of hours") from None
    if not math.isfinite(hours) or abs(hours) > _MAX_OFFSET_H:
        raise ProtocolError(f"UTCOffset {value!r} is outside -14..+14 hours")
    return hours


def parse_expiry(expiry: Any, utc_offset_h: float | None) -> float:
    """Unix time of an `Expiry` given as local wall-clock time at `UTCOffset` hours.

    Also reads an ISO time with its own zone (which then wins) and .NET's `/Date(ms+zzzz)/`.
    """
    if isinstance(expiry, int | float) and not isinstance(expiry, bool):
        return float(expiry)  # already a unix time
    raw = text(expiry)
    if raw is None:
        raise ProtocolError("token without an Expiry")
    net = _NET_DATE.match(raw)
    if net:
        return int(net.group(1)) / 1000.0  # .NET JSON dates count UTC milliseconds
    try:
        when = datetime.fromisoformat(raw.replace(" ", "T", 1) if "T" not in raw else raw)
    except ValueError:
        raise ProtocolError(f"Expiry {raw[:40]!r} is not a date and time") from None
    if when.tzinfo is not None:
        return when.timestamp()
    offset = utc_offset_h or 0.0
    # Wall-clock time at UTC+offset: UTC is that time minus the offset.
    return (when.replace(tzinfo=UTC) - timedelta(hours=offset)).timestamp()


def format_local(unix: float, utc_offset_h: float) -> str:
    """The inverse of parse_expiry for a naive ISO time (used in messages and tests)."""
    moment = datetime.fromtimestamp(unix, UTC) + timedelta(hours=utc_offset_h)
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


# -- request bodies ----------------------------------------------------------------------------


def encode(root: str, fields: Mapping[str, Any], wire: Wire) -> tuple[bytes, str]:
    """A request body: JSON with the PascalCase keys given, or docs/pools/harvest.md's lower-case
    XML."""
    if wire == "json":
        return json.dumps(dict(fields)).encode(), "application/json; charset=utf-8"
    parts = [f"<{root}>"]
    for key, value in fields.items():
        tag = key.lower()
        parts.append(f"<{tag}>{_xml_text(value)}</{tag}>")
    parts.append(f"</{root}>")
    return "".join(parts).encode(), "application/xml; charset=utf-8"


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return (
        str(value)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def ids(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The `id` of each record, as text ("" where a record has none)."""
    return [text(first(record, "id")) or "" for record in records]


# -- records ------------------------------------------------------------------------------------


def download_parts(entries: list[Any], where: str) -> list[tuple[int, str]]:
    """docs/pools/harvest.md's `DownloadTokens[]{TokenValue, Part}` checked: parts 1..n, each once,
    sorted."""
    if not entries:
        raise ProtocolError(f"{where}: RequestSent is false but no download tokens came")
    found: dict[int, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProtocolError(f"{where}: a download token entry is not an object")
        # docs/pools/harvest.md: `<tokenvalue>` has newlines around it.
        token = text(first(entry, "tokenvalue", "token", "value"))
        if not token or not TOKEN_PATTERN.match(token):
            raise ProtocolError(f"{where}: a download token is empty or malformed")
        raw_part = first(entry, "part")
        part = whole_number_or_none(raw_part)
        if raw_part is None and len(entries) == 1:
            part = 1  # a lone token without a part number is the whole package
        if part is None or part < 1:
            raise ProtocolError(f"{where}: part number {str(raw_part)[:20]!r} is not 1 or more")
        if part in found:
            raise ProtocolError(f"{where}: part {part} is listed twice")
        found[part] = token
    count = len(found)
    missing = [n for n in range(1, count + 1) if n not in found]
    if missing:
        listed = ", ".join(str(n) for n in sorted(found))
        raise ProtocolError(
            f"{where}: parts {listed} do not make a set 1..{count}: "
            f"part {', '.join(str(n) for n in missing)} missing"
        )
    if len(set(found.values())) != count:
        raise ProtocolError(f"{where}: two parts share one download token")
    return sorted(found.items())


def find_list(
    body: dict[str, Any], names: tuple[str, ...], singular: str, where: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The list under one of `names` in the answer or one level down (XML wraps it, as in
    `<responsefavourites><favourites><tracks>`), with the object holding it."""
    candidates: list[dict[str, Any]] = [body]
    candidates += [value for value in body.values() if isinstance(value, dict)]
    for holder in candidates:
        for name in names:
            if name in holder:
                try:
                    items = as_list(holder[name], singular)
                except ProtocolError as err:
                    raise ProtocolError(f"{where}: {name}: {err.message}") from err
                if not all(isinstance(item, dict) for item in items):
                    raise ProtocolError(f"{where}: {name} holds something other than objects")
                return items, holder
    raise ProtocolError(f"{where}: the answer has no {' or '.join(names)}")


def history_track(entry: Any) -> Any:
    """A download history entry's track (nested or the entry itself)."""
    if isinstance(entry, dict) and isinstance(entry.get("track"), dict):
        return entry["track"]
    return entry


def record_id(record: Any) -> str:
    if isinstance(record, dict):
        ident = text(first(record, "id", "trackid"))
        if ident and ID_PATTERN.match(ident):
            return ident
    return ""


def title(record: Mapping[str, Any]) -> str | None:
    return text(first(record, "displaytitle", "title", "name"))


def genre(value: Any) -> str | None:
    """A genre as text; a list of genres (names or objects) joined with ", "."""
    if isinstance(value, dict):
        inner = first(value, "name", "genre")
        return genre(inner) if inner is not value else None
    if isinstance(value, list):
        names = [genre(item) for item in value]
        return ", ".join(n for n in names if n) or None
    return text(value)


def number(value: Any) -> int | None:
    """A number that may come as "120", "120.5" or 120.0 (rounded); None when unreadable."""
    whole = whole_number_or_none(value)
    if whole is not None:
        return whole
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return round(number) if number == number and abs(number) < 1e9 else None


def length_s(value: Any) -> int | None:
    """Seconds from 170, "170", "02:50" or "00:02:50"."""
    if value is None or value == "":
        return None
    seconds = number(value)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    match = _LENGTH.match(str(value).strip())
    if match is None:
        return None
    hours, minutes, secs = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + secs


def day(value: Any) -> str | None:
    raw = text(value)
    if raw is None:
        return None
    match = _DATE.match(raw)
    return match.group(1) if match else None


def read_track(
    pool: str,
    record: Any,
    *,
    album: Mapping[str, Any] | None = None,
    downloaded: bool | None = None,
) -> Track:
    """A Harvest track record (either wire) as a Track; Quarantined when it has no id."""
    if not isinstance(record, dict):
        raise Quarantined(f"record is {type(record).__name__}, not an object")
    ident = text(first(record, "id", "trackid"))
    if not ident or not ID_PATTERN.match(ident):
        raise Quarantined(f"no usable track id ({str(ident)[:40]!r})")
    album = album or {}
    date = day(first(record, "releasedate", "datereleased")) or day(
        first(album, "releasedate", "datereleased")
    )
    date = date or day(first(record, "dateingested"))
    year = whole_number_or_none(first(record, "year", "releaseyear"))
    if year is None and date:
        year = int(date[:4])
    bpm = number(first(record, "bpm", "tempo"))
    track = Track(
        pool=pool,
        id=ident,
        artist=text(first(record, "artist", "artistname", "performer", "composer"))
        or text(first(album, "artist", "artistname")),
        title=title(record),
        genre=genre(first(record, "genre", "genres")),
        bpm=bpm if bpm and bpm > 0 else None,
        year=year if year and year > 0 else None,
        mix=text(first(record, "version", "versiontitle", "mix")),
        length_s=length_s(first(record, "lengthseconds", "duration", "time", "length")),
        audio=True,
        video=False,
        date=date,
        source=text(first(record, "libraryname", "library"))
        or text(first(album, "libraryname", "library")),
        downloaded=downloaded,
        raw=dict(record),
    )
    return track
