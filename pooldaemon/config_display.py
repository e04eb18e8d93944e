"""What `pooldaemon check-config` and the socket show of a Config: TOML or JSON, secrets masked,
and warnings about a config file others could read.

Only reads a built Config (pooldaemon.config re-exports these as its public entry).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

from pooldaemon.units import format_duration

if TYPE_CHECKING:
    from pooldaemon.config import Config

SECRET_MASK = "********"
_KIB = 1024
_MIB = 1024**2
_GIB = 1024**3


def _exact_size(n: int) -> str:
    for name, unit in (("GiB", _GIB), ("MiB", _MIB), ("KiB", _KIB)):
        if n and n % unit == 0:
            return f"{n // unit} {name}"
    return str(n) if n == 0 else f"{n} B"


def _display_items(model: BaseModel) -> Iterator[tuple[str, str, Any]]:
    """(attribute, TOML key, value) of each field, `type` first, secrets masked."""
    fields = sorted(type(model).model_fields.items(), key=lambda item: item[0] != "type")
    for name, field in fields:
        value = getattr(model, name)
        key = field.validation_alias if isinstance(field.validation_alias, str) else name
        if isinstance(value, SecretStr):
            value = SECRET_MASK
        elif isinstance(value, tuple) and any(isinstance(item, SecretStr) for item in value):
            value = tuple(SECRET_MASK for _ in value)
        yield name, key, value


def _toml_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if name.endswith("_s"):
        return _toml_str(format_duration(value))
    if name.endswith("_bytes"):
        return _toml_str(_exact_size(value))
    if name.endswith("_bps"):
        return _toml_str(_exact_size(value) + ("/s" if value else ""))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, time):
        return _toml_str(f"{value:%H:%M}")
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_str(str(item)) for item in value) + "]"
    return _toml_str(str(value))


def _toml_str(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def render_effective(cfg: Config) -> str:
    """The effective settings as TOML, secrets shown as "********" (`pooldaemon check-config`)."""
    sections: list[tuple[str, BaseModel]] = [("daemon", cfg.daemon)]
    sections += [(f"pools.{name}", pool) for name, pool in cfg.pools.items()]
    sections.append(("library", cfg.library))
    sections += [("[rules]", rule) for rule in cfg.rules]
    sections += [("notify", cfg.notify), ("hooks", cfg.hooks), ("gig", cfg.gig)]
    sections += [("[schedule]", window) for window in cfg.schedule]
    sections.append(("web", cfg.web))
    sections.append(("exports", cfg.exports))
    out: list[str] = []
    for header, model in sections:
        out.append(f"[{header}]")
        for name, key, value in _display_items(model):
            if value is not None:
                out.append(f"{key} = {_toml_value(name, value)}")
            elif header == "exports":
                out.append(f'{key} = ""')  # docs/interface.md §2: "" switches an export off
        out.append("")
    return "\n".join(out)


def effective_dict(cfg: Config) -> dict[str, Any]:
    """The effective settings as JSON-able data by attribute (units in names), secrets masked."""

    def section(model: BaseModel) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, _key_name, value in _display_items(model):
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, time):
                value = f"{value:%H:%M}"
            elif isinstance(value, tuple):
                value = list(value)
            result[name] = value
        return result

    return {
        "path": str(cfg.path) if cfg.path else None,
        "daemon": section(cfg.daemon),
        "pools": {name: section(pool) for name, pool in cfg.pools.items()},
        "library": section(cfg.library),
        "rules": [section(rule) for rule in cfg.rules],
        "notify": section(cfg.notify),
        "hooks": section(cfg.hooks),
        "schedule": [section(window) for window in cfg.schedule],
        "gig": section(cfg.gig),
        "web": section(cfg.web),
        "exports": section(cfg.exports),  # null: that export is off
    }


def _file_holds_secret(path: Path, secrets: set[str]) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    pools = data.get("pools")
    notify = data.get("notify")
    if isinstance(notify, dict) and notify.get("urls"):
        return True  # Apprise URLs hold tokens
    return isinstance(pools, dict) and any(
        isinstance(pool, dict) and secrets & set(pool) for pool in pools.values()
    )


def _ignored_keys(cfg: Config) -> list[str]:
    """Keys set for a pool whose type has nothing for them to do (no catalog to poll)."""
    warnings = []
    for name, pool in cfg.pools.items():
        if not type(pool).HAS_CATALOG and "catalog_interval_s" in pool.model_fields_set:
            warnings.append(
                f"pools.{name}.catalog_interval: ignored: {pool.type} pools have no catalog "
                "to mirror (only the download queue is polled, every queue_interval)"
            )
    return warnings


def config_warnings(cfg: Config, path: Path | None = None) -> list[str]:
    """What `check-config` warns of: keys a pool type ignores, and (docs/reliability.md S3) a config
    file with secrets that others can read or own."""
    warnings = _ignored_keys(cfg)
    path = path or cfg.path
    # Every pool type the file names validated, so its models' SECRETS are every secret key.
    secrets = {key for pool in cfg.pools.values() for key in type(pool).SECRETS}
    if path is None or not _file_holds_secret(path, secrets):
        return warnings
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        warnings.append(
            f"{path}: holds secrets but has mode {mode:04o}, readable by other users; "
            f"run: chmod 600 {path}"
        )
    if hasattr(os, "getuid") and info.st_uid not in (os.getuid(), 0):
        warnings.append(
            f"{path}: holds secrets but is owned by user id {info.st_uid}, not by you "
            f"({os.getuid()}); that user can read and change it"
        )
    return warnings
