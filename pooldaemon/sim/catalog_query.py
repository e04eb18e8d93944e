"""The simulated catalog's filters and sort orders: docs/pools/crateq.md's query parameters."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FILTER_PARAMS", "SORT_FIELDS", "Record", "fold", "record_filter", "sorted_ids"]

# docs/pools/crateq.md "Music Catalog" filter parameters the simulator applies.
FILTER_PARAMS = (
    "keywords",
    "artist",
    "title",
    "editor",
    "genreId",
    "categoryId",
    "genreCategoryId",
    "bpm",
    "releaseYear",
    "mix",
    "advisory",
    "qualityId",
    "groupId",
    "days",
)
SORT_FIELDS = {
    "date": "date",
    "artist": "artist",
    "title": "title",
    "genre": "genre",
    "bpm": "bpm",
    "releaseyear": "releaseYear",
    "length": "length",
    "size": "sizeBytes",
    "tool": "tool",
    "mix": "tool",
    "editor": "editor",
    "mediaid": "mediaId",
    "advisory": "advisory",
    "source": "source",
}


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a text, for matching."""
    if text.isascii():
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _int_set(name: str, value: str) -> set[int]:
    try:
        return {int(part) for part in value.split(",") if part.strip()}
    except ValueError:
        raise ValueError(name) from None


def _int_match(name: str, value: str) -> Callable[[int], bool]:
    # docs/pools/crateq.md: an exact value, "a,b,c", or a range "a-b".
    text = value.strip()
    if "-" in text and "," not in text:
        low_text, _, high_text = text.partition("-")
        try:
            low, high = int(low_text), int(high_text)
        except ValueError:
            raise ValueError(name) from None
        return lambda number: low <= number <= high
    wanted = _int_set(name, text)
    return lambda number: number in wanted


Record = dict[str, Any]


def _text_test(fields: tuple[str, ...], needle: str) -> Callable[[Record], bool]:
    def test(record: Record) -> bool:
        return any(needle in fold(str(record[name])) for name in fields)

    return test


def _member_test(field: str, allowed: set[Any], folded: bool = False) -> Callable[[Record], bool]:
    def test(record: Record) -> bool:
        value = record[field]
        return (str(value).casefold() if folded else value) in allowed

    return test


def _int_test(field: str, match: Callable[[int], bool]) -> Callable[[Record], bool]:
    def test(record: Record) -> bool:
        return match(int(record[field]))

    return test


def record_filter(filters: Mapping[str, str]) -> Callable[[Record], bool] | None:
    """A test for records matching every filter; None when nothing filters."""
    tests: list[Callable[[Record], bool]] = []
    for name, value in filters.items():
        if name == "keywords":
            tests.append(_text_test(("artist", "title", "editor"), fold(value.strip())))
        elif name in ("artist", "title", "editor"):
            tests.append(_text_test((name,), fold(value.strip())))
        elif name == "genreId":
            tests.append(_member_test("genreId", _int_set(name, value)))
        elif name in ("categoryId", "genreCategoryId"):
            tests.append(_member_test("categoryId", _int_set(name, value)))
        elif name in ("bpm", "releaseYear"):
            tests.append(_int_test(name, _int_match(name, value)))
        elif name == "mix":
            mixes = {part.strip().casefold() for part in value.split(",") if part.strip()}
            tests.append(_member_test("tool", mixes, folded=True))
        elif name == "advisory":
            # The documents disagree: "Clean"/"Dirty" in examples, "Clean"/"Explicit" in tables.
            wanted = value.strip().casefold().replace("explicit", "dirty")
            tests.append(_member_test("advisory", {wanted}, folded=True))
        elif name == "qualityId":
            tests.append(_member_test("qualityId", _int_set(name, value)))
        elif name == "groupId":
            tests.append(_member_test("groupId", _int_set(name, value)))
    if not tests:
        return None
    return lambda record: all(test(record) for test in tests)


def sorted_ids(records: list[Record], field: str, descending: bool) -> list[int]:
    """Media ids of `records` in the order of `field` (ties by id)."""

    def key(record: Record) -> tuple[Any, int]:
        value = record[field]
        if field == "length":
            minutes, _, seconds = str(value).partition(":")
            value = int(minutes) * 60 + int(seconds or 0)
        elif isinstance(value, str):
            value = fold(value)
        return value, record["mediaId"]

    records.sort(key=key, reverse=descending)
    return [record["mediaId"] for record in records]
