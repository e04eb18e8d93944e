"""Config values: TOML or environment text → typed values, as Annotated types the models use.

Durations ("2m"), sizes ("8 MiB"), rates ("2 MiB/s"), paths (`~`, `$VAR`, relative to the config
file), secrets, URLs and file templates are converted and checked here once, so config.py's
models only name them. Errors are ValueErrors whose message config.py turns into a
`<key path>: <reason>` line.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, StringConstraints

from pooldaemon.units import format_duration, format_size, parse_duration, parse_rate, parse_size

_ENV_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")

# load_config hands the environment and the config file's directory to the validators through
# this variable (the pattern pydantic's docs give for validation context with custom
# initialisers): the validators of nested models read it wherever they are.
LOAD_CONTEXT: ContextVar[tuple[Mapping[str, str], Path] | None] = ContextVar(
    "LOAD_CONTEXT", default=None
)


def load_context() -> tuple[Mapping[str, str], Path]:
    """The environment and base directory being validated with (os.environ and cwd by default)."""
    return LOAD_CONTEXT.get() or (os.environ, Path.cwd())


def describe(value: object) -> str:
    """A value as TOML would spell it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _to_seconds(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)  # a bare number is seconds (TOML allows inf and nan; we do not)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"{describe(value)} is not a duration (examples: 90s, 2m, 6h)")


def _to_bytes(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        return parse_size(value)
    raise ValueError(f"{describe(value)} is not a size (examples: 8 MiB, 512 KiB, 1 GiB)")


def _to_bytes_per_s(value: object) -> int:
    """A rate: a size per second, optionally written with "/s" ("2 MiB/s"); 0 is unlimited."""
    if isinstance(value, str):
        return parse_rate(value)
    return _to_bytes(value)


def expand_path(value: object, env: Mapping[str, str], base_dir: Path) -> Path:
    """`~` and `$VAR` expanded from `env`, relative paths taken from `base_dir`, made absolute."""
    if isinstance(value, Path):
        text = str(value)  # already a path (a default, or a command-line argument): no $VAR
    elif isinstance(value, str) and value.strip():
        text = _ENV_VAR.sub(lambda match: _env_value(match, env, value), value.strip())
    else:
        raise ValueError(f"must be a path (got {describe(value)})")
    if text == "~" or text.startswith("~/"):
        home = env.get("HOME") or str(Path.home())
        text = home + text[1:]
    elif text.startswith("~"):
        text = os.path.expanduser(text)  # ~user
    return Path(os.path.normpath(base_dir / text))


def _env_value(match: re.Match[str], env: Mapping[str, str], text: str) -> str:
    name = match.group(1) or match.group(2)
    if name not in env:
        raise ValueError(f'uses ${name}, which is not set in the environment (got "{text}")')
    return env[name]


def _to_path(value: object) -> Path:
    env, base_dir = load_context()
    return expand_path(value, env, base_dir)


def _nonempty_secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        raise ValueError("must not be empty")
    return value


def _http_url(value: str) -> str:
    if not re.match(r"https?://[^/\s?#]+", value) or any(c.isspace() for c in value):
        # docs/reliability.md S3: a URL may carry "user:password@"; echo it only when it cannot.
        got = "" if "@" in value else f" (got {describe(value)})"
        raise ValueError(f"must be an http:// or https:// URL{got}")
    return value.rstrip("/")


def _check_template(text: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> list[str]:
    """The placeholders of a str.format template, checked against `allowed`; raises ValueError."""
    names = ", ".join("{" + name + "}" for name in allowed)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ValueError(
            f"is not a valid template ({err}; write a literal brace as {{{{ or }}}})"
        ) from None
    fields = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed:
            raise ValueError(f"unknown placeholder {{{field}}} (allowed: {names})")
        if spec or conversion:
            raise ValueError(f"write placeholders plainly, as {{{field}}}, without ! or : options")
        fields.append(field)
    for name in required:
        if name not in fields:
            raise ValueError(f"must contain {{{name}}}")
    return fields


def template_validator(allowed: tuple[str, ...], required: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        _check_template(value, allowed, required)
        return value

    return check


def _show(value: float, unit: Literal["duration", "size"]) -> str:
    return format_duration(value) if unit == "duration" else format_size(int(value))


def at_least(floor: float, unit: Literal["duration", "size"]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value < floor:
            raise ValueError(f"must be at least {_show(floor, unit)} (got {_show(value, unit)})")
        return value

    return check


def at_most(ceiling: float, unit: Literal["duration", "size"]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value > ceiling:
            raise ValueError(f"must be at most {_show(ceiling, unit)} (got {_show(value, unit)})")
        return value

    return check


Duration = Annotated[float, BeforeValidator(_to_seconds)]
Size = Annotated[int, BeforeValidator(_to_bytes)]
Rate = Annotated[int, BeforeValidator(_to_bytes_per_s)]
ConfigPath = Annotated[Path, BeforeValidator(_to_path)]
Secret = Annotated[SecretStr, AfterValidator(_nonempty_secret)]
Url = Annotated[str, AfterValidator(_http_url)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


def toml_key(name: str, default: Any, **kwargs: Any) -> Any:
    """A field read from TOML key `name` (the attribute's name carries the unit, the key not)."""
    return Field(default, validation_alias=name, **kwargs)


SECRET_FILE_MAX_BYTES = 64 * 1024


class Problem(ValueError):
    """A validator's complaint about `key` of the model being validated (None: the model itself)."""

    def __init__(self, key: str | None, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def read_secret_file(key: str, value: object, env: Mapping[str, str], base_dir: Path) -> str:
    """docs/interface.md §2: `<key>_file = "path"` holds the secret; a trailing newline is not part
    of it."""
    file_key = f"{key}_file"
    try:
        path = expand_path(value, env, base_dir)
    except ValueError as err:
        raise Problem(file_key, str(err)) from None
    try:
        with path.open("rb") as handle:
            raw = handle.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as err:
        raise Problem(file_key, f'cannot read "{path}": {err.strerror or err}') from None
    if len(raw) > SECRET_FILE_MAX_BYTES:
        raise Problem(file_key, f'"{path}" is over 64 KiB; it should hold only the {key}')
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(file_key, f'"{path}" is not UTF-8 text') from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise Problem(file_key, f'"{path}" is empty')
    return text


def list_from_text(value: object) -> object:
    """An env override gives text: accept a JSON list or comma-separated items."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f'"{text}" is not a JSON list of strings') from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def first_repeat(items: tuple[str, ...], *, any_case: bool = False) -> tuple[str, str] | None:
    """The first item that repeats an earlier one, with that earlier one; None if none repeats."""
    seen: dict[str, str] = {}
    for item in items:
        key = item.casefold() if any_case else item
        if key in seen:
            return item, seen[key]
        seen[key] = item
    return None


def no_duplicates(items: tuple[str, ...]) -> tuple[str, ...]:
    """A list key names each item once (the first repeated one is reported)."""
    repeat = first_repeat(items)
    if repeat:
        raise ValueError(f'"{repeat[0]}" is listed twice')
    return items


def no_duplicates_any_case(items: tuple[str, ...]) -> tuple[str, ...]:
    """A list key names each item once, "Traktor" and "traktor" being the same item."""
    repeat = first_repeat(items, any_case=True)
    if repeat:
        raise ValueError(f'"{repeat[0]}" is listed twice')
    return items
