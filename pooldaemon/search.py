"""`GET /v1/catalog` parameters → a validated CatalogQuery, and its search (docs/interface.md
§4)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pooldaemon.errors import BadRequest
from pooldaemon.models import MAX_PAGE
from pooldaemon.store.db import Store

# The catalog's query builder (store.search) is imported by the first search: an idle daemon
# does not carry it (issue 13: idle RSS).
if TYPE_CHECKING:
    from pooldaemon.store.search import CatalogQuery, NumberFilter

DEFAULT_LIMIT = 50
MAX_LIMIT = MAX_PAGE
MAX_OFFSET = 10_000_000
MAX_TERMS = 16
MAX_VALUES = 50
PARAMS = frozenset(
    {"q", "pool", "genre", "bpm", "year", "mix", "advisory", "media", "limit", "offset", "removed"}
)
# FTS5's unicode61 tokenizer: letters and digits make words, everything else separates them.
# Searching by the same rule means punctuation or FTS5 syntax in a query can never be misread.
_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"^\d{1,4}$")
_POOL = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
#: docs/pools/crateq.md documents Clean/Explicit but examples say "Dirty" (docs/reliability.md §0):
#: both are dirty.
ADVISORIES = {
    "clean": ("Clean",),
    "dirty": ("Dirty", "Explicit"),
    "explicit": ("Dirty", "Explicit"),
}


async def search(store: Store, params: Mapping[str, Any]) -> dict[str, Any]:
    """Parse the parameters and search the mirror: `{"total", "items": [track…]}`."""
    from pooldaemon.store.search import search as search_catalog

    return await search_catalog(store, parse_search(params))


def parse_search(params: Mapping[str, Any]) -> CatalogQuery:
    """Validate search parameters; a BadRequest names the parameter and the form it takes."""
    from pooldaemon.store.search import CatalogQuery

    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise BadRequest(
            f"unknown search parameter {unknown[0]!r} (known: {', '.join(sorted(PARAMS))})"
        )
    values = {key: _text(key, value) for key, value in params.items()}
    return CatalogQuery(
        terms=_terms(values.get("q", "")),
        pools=tuple(_pool(name) for name in _list("pool", values.get("pool"))),
        genres=_list("genre", values.get("genre")),
        mixes=_list("mix", values.get("mix")),
        bpm=_numbers("bpm", values.get("bpm"), 1, 999),
        year=_numbers("year", values.get("year"), 1, 9999),
        advisories=_advisory(values.get("advisory")),
        media=_media(values.get("media")),
        include_removed=_yes("removed", values.get("removed")),
        limit=_int("limit", values.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_int("offset", values.get("offset"), 0, 0, MAX_OFFSET),
    )


def parse_page(params: Mapping[str, str], default_limit: int = DEFAULT_LIMIT) -> tuple[int, int]:
    """`limit` and `offset` of any paged answer (the jobs list), checked like the catalog's."""
    return (
        _int("limit", params.get("limit"), default_limit, 1, MAX_LIMIT),
        _int("offset", params.get("offset"), 0, 0, MAX_OFFSET),
    )


def _text(key: str, value: Any) -> str:
    """One parameter as text; a repeated parameter (`genre=a&genre=b`) counts as a list."""
    if isinstance(value, list | tuple):
        sep = " " if key == "q" else ","
        return sep.join(_text(key, item) for item in value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"{key}: expected text, got {type(value).__name__}")
    return str(value)


def search_terms(text: str) -> tuple[str, ...]:
    """The words of a query as the FTS index sees them (letters and digits only)."""
    return tuple(_WORD.findall(text))


def _terms(text: str) -> tuple[str, ...]:
    if len(text) > 500:
        raise BadRequest("q: at most 500 characters")
    terms = search_terms(text)
    if len(terms) > MAX_TERMS:
        raise BadRequest(f"q: at most {MAX_TERMS} words")
    return terms


def _list(key: str, text: str | None) -> tuple[str, ...]:
    """`a,b,c` → ("a", "b", "c"), blanks dropped (docs/pools/crateq.md's comma-separated
    filters)."""
    if text is None or not text.strip():
        return ()
    items = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not items:
        raise BadRequest(f"{key}: no value given")
    if len(items) > MAX_VALUES:
        raise BadRequest(f"{key}: at most {MAX_VALUES} values")
    if any(len(item) > 200 for item in items):
        raise BadRequest(f"{key}: a value is longer than 200 characters")
    return items


def _pool(name: str) -> str:
    if not _POOL.match(name.lower()):
        raise BadRequest(f"pool: {name[:40]!r} is not a pool name")
    return name.lower()


def _numbers(key: str, text: str | None, low: int, high: int) -> NumberFilter | None:
    """docs/pools/crateq.md: `N`, `N,M,…` or `N-M`."""
    from pooldaemon.store.search import NumberFilter

    if text is None or not text.strip():
        return None
    text = text.strip()
    form = f"{key}: expected N, N,M,… or N-M"
    if "-" in text:
        first, _, last = (part.strip() for part in text.partition("-"))
        if not (_NUMBER.match(first) and _NUMBER.match(last)):
            raise BadRequest(f"{form} (got {text[:40]!r})")
        start, end = int(first), int(last)
        if start > end:
            raise BadRequest(f"{key}: range {start}-{end} runs backwards (write {end}-{start})")
        _bounds(key, (start, end), low, high)
        return NumberFilter(low=start, high=end)
    parts = [part.strip() for part in text.split(",")]
    if not parts or not all(_NUMBER.match(part) for part in parts):
        raise BadRequest(f"{form} (got {text[:40]!r})")
    if len(parts) > MAX_VALUES:
        raise BadRequest(f"{key}: at most {MAX_VALUES} values")
    numbers = tuple(dict.fromkeys(int(part) for part in parts))
    _bounds(key, numbers, low, high)
    return NumberFilter(values=numbers)


def _bounds(key: str, numbers: tuple[int, ...], low: int, high: int) -> None:
    for number in numbers:
        if not low <= number <= high:
            raise BadRequest(f"{key}: {number} is outside {low}-{high}")


def _advisory(text: str | None) -> tuple[str, ...]:
    if text is None or not text.strip():
        return ()
    values = ADVISORIES.get(text.strip().lower())
    if values is None:
        raise BadRequest(f"advisory: expected clean or dirty (got {text[:40]!r})")
    return values


def _media(text: str | None) -> Any:
    if text is None or not text.strip():
        return None
    media = text.strip().lower()
    if media not in ("audio", "video"):
        raise BadRequest(f"media: expected audio or video (got {text[:40]!r})")
    return media


def _yes(key: str, text: str | None) -> bool:
    if text is None or not text.strip():
        return False
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "include"):
        return True
    if lowered in ("0", "false", "no", "exclude"):
        return False
    raise BadRequest(f"{key}: expected true or false (got {text[:40]!r})")


def _int(key: str, text: str | None, default: int, low: int, high: int) -> int:
    if text is None or not text.strip():
        return default
    if not text.strip().isdigit():
        raise BadRequest(f"{key}: expected a whole number (got {text[:40]!r})")
    number = int(text.strip())
    if not low <= number <= high:
        raise BadRequest(f"{key}: must be between {low} and {high} (got {number})")
    return number
