"""Reading one value of a pool's record: whole numbers, flags, text, as the pools really send them.

Pools send numbers as digit strings (`"bpm": "134"`), flags as words (`"content_warn": "False"`)
and text as numbers (docs/reliability.md M3). One set of rules for every adapter: the strict
forms raise `Quarantined` (the record is skipped with that reason), the `…_or_none` forms read a
value that breaks the rule as absent. Each adapter chooses which per field; the rules are here.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pooldaemon.models import Track

#: Words a pool uses for a flag (any case, surrounding blanks ignored).
TRUE_WORDS = frozenset({"true", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", ""})
_WHOLE = re.compile(r"\s*[+-]?\d{1,18}(?:\.0*)?\s*")


class Quarantined(ValueError):
    """One record could not be read; it is skipped with this reason (docs/reliability.md M3)."""


def whole_number(value: Any, name: str = "value") -> int | None:
    """An integer from a number or digit text ("134", "134.0"); None when absent or ""."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Quarantined(f"{name} is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise Quarantined(f"{name} {value!r} is not a whole number")
        return int(value)
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(float(value)) if "." in value else int(value)
    raise Quarantined(f"{name} {str(value)[:40]!r} is not a whole number")


def whole_number_or_none(value: Any) -> int | None:
    """`whole_number`, with anything unreadable taken as absent."""
    try:
        return whole_number(value)
    except Quarantined:
        return None


def flag(value: Any, name: str = "value") -> bool | None:
    """A boolean, 0 or 1, or one of the flag words ("False", "yes"); None when absent."""
    if value is True or value is False or value is None:
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
    raise Quarantined(f"{name} {str(value)[:20]!r} is not a boolean")


def flag_or_none(value: Any) -> bool | None:
    """`flag`, with anything unreadable taken as absent."""
    try:
        return flag(value)
    except Quarantined:
        return None


def text(value: Any, name: str = "value") -> str | None:
    """Text (a number counts, as its digits), stripped; None when absent or blank."""
    if type(value) is str:
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Quarantined(f"{name} is {type(value).__name__}, not text")
    return str(value).strip() or None


def text_or_none(value: Any) -> str | None:
    """`text`, with anything that is not text or a number taken as absent."""
    try:
        return text(value)
    except Quarantined:
        return None


def track_meta(track: Track | None) -> dict[str, Any]:
    """A track's fields for the file template and the tags, as a plan's `meta`.

    docs/interface.md §9; the downloader adds the pool and makes `{song}` and `{version}`."""
    if track is None:
        return {}
    meta = {
        "id": track.id,
        "artist": track.artist,
        "title": track.title,
        "genre": track.genre,
        "bpm": track.bpm,
        "year": track.year,
        "mix": track.mix,
        "editor": track.editor,
        "advisory": track.advisory,
        "quality": track.quality,
        "source": track.source,
        "date": track.date,
        "length_s": track.length_s,
    }
    return {key: value for key, value in meta.items() if value is not None}
