"""`[[rules]]` and `[library]` of the config: typed and checked like every other key.

docs/interface.md §7 fixes the keys. Each value is checked on its own here; what needs the rest of
the config (rule names unique, pools that exist) is checked by `Config` in config.py, which
imports these models. A mix value that looks like a misspelt version word ("Extnded") is refused
with the fix; other words are taken as a pool's own mix name ("DMS").
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from pooldaemon.config_values import describe, first_repeat, template_validator
from pooldaemon.daemon_config import FILE_TEMPLATE_FIELDS
from pooldaemon.songkey import is_version_text, version_phrases

#: A rule's name is shown in `poolctl rules`, in origins ("rule:NAME") and in folders.
RULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: docs/interface.md §4: bpm and year take `N`, `N,M,…` or `N-M`, as the search does.
_NUMBERS = re.compile(r"\d{1,4}(?:-\d{1,4}|(?:,\d{1,4})*)")
_MAX_VALUES = 50
_WORD = re.compile(r"[^\W_]+")


def _one_or_list(value: object) -> object:
    """`genre = "House"` means `genre = ["House"]`."""
    return [value] if isinstance(value, str) else value


def _values(items: tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(item.strip() for item in items)
    if any(not item for item in cleaned):
        raise ValueError("holds an empty value; remove it")
    if len(cleaned) > _MAX_VALUES:
        raise ValueError(f"at most {_MAX_VALUES} values")
    repeat = first_repeat(cleaned, any_case=True)
    if repeat:
        item, first = repeat
        same = "" if first == item else f' (as "{first}": case does not count)'
        raise ValueError(f'"{item}" is listed twice{same}')
    return cleaned


_SUGGESTIONS = sorted({phrase.title() for phrase in version_phrases() if len(phrase) > 3})


def _mix_value(value: str) -> str:
    """A version word pooldaemon knows, or a pool's own mix name; a near miss is a typo."""
    if is_version_text(value):
        return value
    close = difflib.get_close_matches(value.title(), _SUGGESTIONS, n=1, cutoff=0.75)
    if close:
        raise ValueError(f'"{value}" is not a mix pooldaemon knows (did you mean "{close[0]}"?)')
    return value


def _mixes(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_mix_value(item) for item in _values(items))


def _numbers(low: int, high: int) -> AfterValidator:
    def check(text: str) -> str:
        value = text.replace(" ", "")
        if not _NUMBERS.fullmatch(value):
            raise ValueError(f"expected N, N,M,… or N-M (got {describe(text)})")
        if "-" in value:
            start, end = (int(part) for part in value.split("-"))
            if start > end:
                raise ValueError(f"range {start}-{end} runs backwards (write {end}-{start})")
            numbers = [start, end]
        else:
            numbers = [int(part) for part in value.split(",")]
            if len(numbers) > _MAX_VALUES:
                raise ValueError(f"at most {_MAX_VALUES} values")
        for number in numbers:
            if not low <= number <= high:
                raise ValueError(f"{number} is outside {low}-{high}")
        return value

    return AfterValidator(check)


def _rule_name(value: str) -> str:
    if not RULE_NAME.fullmatch(value):
        raise ValueError(
            f"{describe(value)} is not a valid rule name: use letters, digits, - and _ (at most 64)"
        )
    return value


#: As a search takes them (docs/interface.md §4).
_MAX_WORDS, _MAX_WORDS_TEXT = 16, 500


def _words(value: str) -> str:
    if value.strip() and not _WORD.search(value):
        raise ValueError(f"{describe(value)} has no letter or digit to search for")
    if len(value) > _MAX_WORDS_TEXT or len(_WORD.findall(value)) > _MAX_WORDS:
        raise ValueError(f"at most {_MAX_WORDS} words and {_MAX_WORDS_TEXT} characters")
    return value.strip()


def _word_list(items: tuple[str, ...]) -> tuple[str, ...]:
    cleaned = _values(items)
    for item in cleaned:
        _words(item)
    return cleaned


def _folder(value: str) -> str:
    if not value:
        return value
    if value.startswith(("/", "\\", "~")):
        raise ValueError("must be relative to download_dir (remove the leading / or ~)")
    if any(part.strip() in ("", ".", "..") for part in value.split("/")):
        raise ValueError('folder levels must not be empty, "." or ".."')
    return template_validator(FILE_TEMPLATE_FIELDS, ())(value)


StrList = Annotated[tuple[str, ...], BeforeValidator(_one_or_list)]


class RuleConfig(BaseModel):
    """One `[[rules]]` table: which new tracks to download on their own (docs/interface.md §7)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    name: Annotated[str, AfterValidator(_rule_name)]
    #: Empty: every pool with a catalog.
    pools: Annotated[StrList, AfterValidator(_values)] = ()
    words: Annotated[str, AfterValidator(_words)] = ""
    genre: Annotated[StrList, AfterValidator(_values)] = ()
    bpm: Annotated[str, _numbers(1, 999)] | None = None
    year: Annotated[str, _numbers(1, 9999)] | None = None
    mix: Annotated[StrList, AfterValidator(_mixes)] = ()
    exclude_mix: Annotated[StrList, AfterValidator(_mixes)] = ()
    exclude_words: Annotated[StrList, AfterValidator(_word_list)] = ()
    advisory: Literal["clean", "dirty"] | None = None
    media: Literal["audio", "video"] | None = None
    one_version: bool = False
    prefer_mix: Annotated[StrList, AfterValidator(_mixes)] = ()
    #: Jobs this rule may start per local calendar day; None: no limit.
    max_per_day: int | None = Field(None, ge=1, le=100_000)
    #: A prefix put before file_template for this rule's files ("" = none).
    folder: Annotated[str, AfterValidator(_folder)] = ""
    enabled: bool = True

    @property
    def origin(self) -> str:
        """The `origin` of the jobs this rule starts."""
        return f"rule:{self.name}"
