"""The one typed, frozen configuration object, built from TOML and the environment at the edge.

docs/interface.md §2 fixes the keys. Durations and sizes are converted once, into attributes whose
names carry the unit (TOML `queue_interval = "2m"` → `queue_interval_s == 120.0`). `load_config` is
the only place that reads the config file or the environment; everything else is handed a `Config`.

Here: the root `Config` (the sections, and the checks across them), loading (TOML, then the
`POOLDAEMON_*` environment layered over it), and turning pydantic's errors into
`<key path>: <reason>` lines (which need every section's model). Each section's model is in its
own module: `daemon_config.py`, `pool_config.py`, `exports_config.py`, `web_config.py`,
`config_rules.py`, `library_config.py`, `informed_config.py`; the value converters are in
`config_values.py`; showing a config (masked) and the file permission warnings in
`config_display.py`. This module re-exports them: `pooldaemon.config` is the public entry.
"""

from __future__ import annotations

import base64
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

# Re-exported: pooldaemon.config is the public entry for everything about the config.
from pooldaemon.config_display import SECRET_MASK as SECRET_MASK
from pooldaemon.config_display import config_warnings as config_warnings
from pooldaemon.config_display import effective_dict as effective_dict
from pooldaemon.config_display import render_effective as render_effective
from pooldaemon.config_rules import RuleConfig as RuleConfig
from pooldaemon.config_values import LOAD_CONTEXT, describe, expand_path
from pooldaemon.config_values import Problem as _Problem
from pooldaemon.daemon_config import APP_NAME as APP_NAME
from pooldaemon.daemon_config import FILE_TEMPLATE_FIELDS as FILE_TEMPLATE_FIELDS
from pooldaemon.daemon_config import DaemonConfig as DaemonConfig
from pooldaemon.daemon_config import user_dir
from pooldaemon.exports_config import EXPORT_PLAYLISTS as EXPORT_PLAYLISTS
from pooldaemon.exports_config import ExportsConfig as ExportsConfig
from pooldaemon.exports_config import default_playlists_dir
from pooldaemon.informed_config import SECTIONS as INFORMED_SECTIONS
from pooldaemon.informed_config import GigConfig as GigConfig
from pooldaemon.informed_config import HooksConfig as HooksConfig
from pooldaemon.informed_config import NotifyConfig as NotifyConfig
from pooldaemon.informed_config import Schedule as Schedule
from pooldaemon.library_config import LibraryConfig as LibraryConfig
from pooldaemon.pool_config import POOL_TYPES as POOL_TYPES
from pooldaemon.pool_config import CrateQConfig as CrateQConfig
from pooldaemon.pool_config import HarvestConfig as HarvestConfig
from pooldaemon.pool_config import PoolConfig as PoolConfig
from pooldaemon.pool_config import PromoOnlyConfig as PromoOnlyConfig
from pooldaemon.web_config import WebConfig as WebConfig
from pooldaemon.web_config import split_listen as split_listen

ENV_PREFIX = "POOLDAEMON_"
CONFIG_PATH_VAR = "POOLDAEMON_CONFIG"
# POOLDAEMON_* variables that are not settings; every other one names a key (docs/interface.md §2).
NON_SETTING_ENV_VARS = frozenset({CONFIG_PATH_VAR})
# Pool names appear in refs ("crateq:570291", docs/interface.md §3): no ":" and no spaces.
_POOL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


class ConfigError(Exception):
    """The config is unusable; `str()` is one `<key path>: <reason and fix>` line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(dict.fromkeys(problems))
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------------------------------------
# The whole config


class Config(BaseModel):
    """The whole configuration: [daemon], the [pools.<name>] tables and every other section; see
    `load_config`.

    A plain model: load_config layers the TOML file and the environment itself (it needs the
    file's directory and an injectable environment). pydantic-settings did that layering once;
    it cost the idle daemon 2.3 MiB of RSS for a dozen lines."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daemon: DaemonConfig
    pools: dict[str, PoolConfig]
    rules: tuple[RuleConfig, ...] = ()
    exports: ExportsConfig
    # docs/interface.md §10 (pooldaemon/informed_config.py)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    schedule: Schedule = ()
    gig: GigConfig = Field(default_factory=GigConfig)
    # docs/interface.md §8 (pooldaemon/library_config.py)
    library: LibraryConfig = Field(default_factory=LibraryConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {"daemon": {}, "pools": {}, "exports": {}, **data}
        exports = data["exports"]
        if isinstance(exports, dict) and "m3u8_dir" not in exports:
            data["exports"] = {**exports, "m3u8_dir": default_playlists_dir(data["daemon"])}
        if isinstance(data["pools"], dict):
            for name in data["pools"]:
                if not _POOL_NAME.fullmatch(str(name)):
                    raise _Problem(
                        f"pools.{name}",
                        f'"{name}" is not a valid pool name: use lowercase letters, digits, '
                        '"-" and "_", starting with a letter (it is used in refs like '
                        '"crateq:570291")',
                    )
        return data

    @model_validator(mode="after")
    def _rules_fit(self) -> Config:
        """docs/interface.md §7: rule names are unique; rules and prefer_pools name real pools."""
        configured = sorted(self.pools)
        seen: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                raise _Problem(
                    f"rules[{index}].name",
                    f'"{rule.name}" is the name of rules[{seen[rule.name]}] too; '
                    "give each rule its own name",
                )
            seen[rule.name] = index
            for pool in rule.pools:
                if pool not in self.pools:
                    raise _Problem(f"rules[{index}].pools", _unknown_pool(pool, configured))
        # The default order names pool types ("promoonly", "crateq", "harvest"); only an order
        # the user wrote must name configured pools.
        explicit = "prefer_pools" in self.library.model_fields_set
        for pool in self.library.prefer_pools if explicit else ():
            if pool not in self.pools:
                raise _Problem("library.prefer_pools", _unknown_pool(pool, configured))
        return self

    @property
    def path(self) -> Path | None:
        """The config file this was loaded from (None: defaults only)."""
        return self._path

    def enabled_pools(self) -> dict[str, CrateQConfig | PromoOnlyConfig | HarvestConfig]:
        """The pools with `enabled = true`, by name."""
        return {name: pool for name, pool in self.pools.items() if pool.enabled}

    def secrets(self) -> list[str]:
        """Every configured secret value, longest first, for the log redactor (docs/reliability.md
        S3)."""
        found: set[str] = set()
        for pool in self.pools.values():
            found.update(pool.secret_values())
            if isinstance(pool, PromoOnlyConfig) and pool.user_id is not None and pool.token:
                # docs/interface.md §6: the Bearer value is Base64(userid:token); redact it too.
                pair = f"{pool.user_id}:{pool.token.get_secret_value()}"
                found.add(base64.b64encode(pair.encode()).decode())
        found.update(self.notify.url_values())
        return sorted(found, key=lambda s: (-len(s), s))


def _unknown_pool(pool: str, configured: list[str]) -> str:
    """A rule names a pool that is not configured: say which are, and the likely one."""
    known = ", ".join(configured) or "none"
    return f'no pool "{pool}" is configured{_suggest(pool, configured)} (pools: {known})'


# ---------------------------------------------------------------------------------------------
# Loading


def _env_tables(environ: Mapping[str, str]) -> dict[str, Any]:
    """POOLDAEMON_<SECTION>__<KEY> (and deeper, `__`-separated) variables as nested tables, names
    lower-cased; values stay text, never JSON-decoded (a password "null" or "[1]" is that text):
    the validators parse them exactly like TOML strings. Variables naming no section are left
    to `_env_settings`, which reports them."""
    data: dict[str, Any] = {}
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NON_SETTING_ENV_VARS:
            continue
        *tables, key = upper[len(ENV_PREFIX) :].lower().split("__")
        if (tables[0] if tables else key) not in Config.model_fields:
            continue
        table = data
        for part in tables:
            inner = table.get(part)
            if not isinstance(inner, dict):
                inner = table[part] = {}
            table = inner
        table[key] = environ[name]
    return data


def resolve_config_path(path: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """docs/interface.md §1: `--config`, else $POOLDAEMON_CONFIG, else the user config dir's
    file."""
    environ = os.environ if env is None else env
    if path is None and environ.get(CONFIG_PATH_VAR, "").strip():
        path = Path(environ[CONFIG_PATH_VAR].strip())
    if path is None:
        return user_dir("config", environ) / "config.toml"
    return expand_path(path, environ, Path.cwd())


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError([f"{path}: config file not found"])
    if not path.is_file():
        raise ConfigError([f"{path}: not a file"])
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        text = str(err)
        where = re.search(r"\(at line (\d+), column (\d+)\)$", text)
        reason = text[: where.start()].strip() if where else text
        position = f"line {where.group(1)}, column {where.group(2)}: " if where else ""
        raise ConfigError([f"{path}: {position}invalid TOML: {reason}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from None


def _env_settings(environ: Mapping[str, str]) -> tuple[dict[tuple[str, ...], str], list[str]]:
    """Key paths set by POOLDAEMON_<SECTION>__<KEY> variables, and unknown sections named."""
    paths: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NON_SETTING_ENV_VARS:
            continue
        key_path = tuple(upper[len(ENV_PREFIX) :].lower().split("__"))
        paths[key_path] = name
        if key_path[0] not in Config.model_fields:
            hint = _suggest(key_path[0], list(Config.model_fields))
            problems.append(
                f"{'.'.join(key_path)}: unknown key{hint} (from {name}; settings are named "
                f"{ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}DAEMON__CHUNK_SIZE)"
            )
    return paths, problems


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` merged into `base` table by table (an env var replaces one key, not a pool)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge (TOML, then env overrides) and validate the config; raises ConfigError."""
    environ = os.environ if env is None else env
    explicit = path is not None or bool(environ.get(CONFIG_PATH_VAR, "").strip())
    try:
        file = resolve_config_path(path, environ)
    except ValueError as err:
        raise ConfigError([f"{CONFIG_PATH_VAR}: {err}"]) from None
    # A missing default file means "all defaults, no pools"; a missing named file is an error.
    source = file if explicit or file.exists() else None
    file_data = _read_toml(file) if source else {}
    env_paths, problems = _env_settings(environ)
    data = _merge(file_data, _env_tables(environ))
    token = LOAD_CONTEXT.set((environ, source.parent if source else Path.cwd()))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(problems + _problems(err, data, env_paths)) from None
    finally:
        LOAD_CONTEXT.reset(token)
    if problems:
        raise ConfigError(problems)
    cfg._path = source
    return cfg


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into `<key path>: <reason>` lines


def toml_keys(model: type[BaseModel]) -> list[str]:
    """The keys a TOML table for `model` accepts, secrets' `<key>_file` forms included."""
    keys = [
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in model.model_fields.items()
    ]
    secrets = getattr(model, "SECRETS", ())
    return keys + [f"{key}_file" for key in secrets]


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _known_keys(table: list[Any], data: dict[str, Any]) -> list[str]:
    if not table:
        return list(Config.model_fields)
    if table == ["daemon"]:
        return toml_keys(DaemonConfig)
    if len(table) == 2 and table[0] == "rules":
        return toml_keys(RuleConfig)
    if table == ["exports"]:
        return toml_keys(ExportsConfig)
    if table == ["library"]:
        return toml_keys(LibraryConfig)
    if (
        table
        and str(table[0]) in INFORMED_SECTIONS
        and len(table) == (2 if table[0] == "schedule" else 1)
    ):
        return toml_keys(INFORMED_SECTIONS[str(table[0])])
    if table == ["web"]:
        return toml_keys(WebConfig)
    if len(table) == 2 and table[0] == "pools":
        pool = data.get("pools", {}).get(table[1], {})
        model = POOL_TYPES.get(str(pool.get("type"))) if isinstance(pool, dict) else None
        return toml_keys(model) if model else []
    return []


def _secret_names() -> set[str]:
    return {key for model in POOL_TYPES.values() for key in model.SECRETS}


def _reason(error: Any, loc: list[Any], data: dict[str, Any]) -> str:
    """One pydantic error as a sentence; `loc` is adjusted in place to the key it is about."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    hidden = bool(loc) and str(loc[-1]) in _secret_names()
    got = "" if hidden else f" (got {describe(value)})"
    if kind == "value_error":
        problem = ctx.get("error")
        if isinstance(problem, _Problem):
            if problem.key is not None:
                loc.append(problem.key)
            return problem.reason
        return str(problem)
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1], data)
        return "unknown key" + (
            _suggest(str(loc[-1]), known) or f" (known keys: {', '.join(known)})"
        )
    if kind == "missing":
        return f'missing required key "{loc.pop()}"'
    if kind == "union_tag_invalid":
        loc.append("type")
        types = list(POOL_TYPES)
        return (
            f"unknown pool type {describe(ctx.get('tag'))}{_suggest(str(ctx.get('tag')), types)}"
            + (f" (known: {', '.join(types)})")
        )
    if kind == "union_tag_not_found":
        return f'missing required key "type" (one of: {", ".join(POOL_TYPES)})'
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = "at least" if kind == "greater_than_equal" else "at most"
        return f"must be {bound} {ctx.get('ge', ctx.get('le'))} (got {value})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if kind == "string_type":
        return f"must be a string{got}"
    if kind == "literal_error":
        return f"must be one of {str(ctx.get('expected', '')).replace(chr(39), chr(34))}{got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a table{got}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    return str(error["msg"]).splitlines()[0]


def _problems(
    err: ValidationError, data: dict[str, Any], env_paths: dict[tuple[str, ...], str]
) -> list[str]:
    lines = []
    for error in err.errors(include_url=False):
        loc = list(error["loc"])
        # A discriminated union puts the tag in the location: pools.<name>.<type>.<key>.
        if len(loc) >= 3 and loc[0] == "pools" and loc[2] in POOL_TYPES:
            del loc[2]
        reason = _reason(error, loc, data)
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        path = path.removeprefix(".")
        keys = tuple(str(part) for part in loc)
        origin = [name for p, name in env_paths.items() if keys[: len(p)] == p]
        suffix = f" (from {origin[0]})" if origin else ""
        lines.append(f"{path or 'config'}: {reason}{suffix}")
    return lines
