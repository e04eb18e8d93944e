"""XML attribute text for the streaming writers: escaped, and only characters XML 1.0 allows."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

# `&`, `<`, `>` and `"` are markup; tab, newline and carriage return are escaped so a parser
# hands them back instead of normalising them to spaces; the rest are not allowed in XML 1.0 at
# all (control characters, lone surrogates from undecodable file names, U+FFFE/U+FFFF).
_OTHER_CHARS = "\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_SPECIAL = re.compile(f'[&<>"{_OTHER_CHARS}]')
_OTHER = re.compile(f"[{_OTHER_CHARS}]")
_ESCAPES = {"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}


def _replace(match: re.Match[str]) -> str:
    return _ESCAPES.get(match.group(), "\ufffd")


def attr(value: str) -> str:
    """`value` ready to sit between double quotes in an XML attribute."""
    if _SPECIAL.search(value) is None:
        return value
    # Plain replaces beat a callback per match; `&` goes first so the others stay intact.
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = value.replace('"', "&quot;")
    if _OTHER.search(value) is None:
        return value
    return _OTHER.sub(_replace, value)


# For the values many tracks share (genre, label, album, artist, a directory): a dict lookup
# instead of a regular-expression search, millions of times in a 100,000-file collection.
shared_attr = functools.lru_cache(maxsize=4096)(attr)


def attrs(pairs: Iterable[tuple[str, str | None]]) -> str:
    """` NAME="value"` for each pair whose value is not None, escaped."""
    return "".join(f' {name}="{attr(value)}"' for name, value in pairs if value is not None)


def opt(name: str, value: str | None) -> str:
    """` NAME="value"`, or nothing when `value` is None or empty (for values tracks share)."""
    return f' {name}="{shared_attr(value)}"' if value else ""
