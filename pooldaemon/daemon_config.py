"""[daemon]: where files go and how the downloader behaves (docs/interface.md §2, §5).

Its path defaults depend on the environment (XDG directories, HOME), read through
`config_values.load_context` so tests can move them; `user_dir` is also where `load_config`
looks for the config file.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from pooldaemon.config_values import (
    ConfigPath,
    Duration,
    NonEmpty,
    Rate,
    Size,
    at_least,
    at_most,
    expand_path,
    load_context,
    template_validator,
    toml_key,
)

APP_NAME = "pooldaemon"
FILE_TEMPLATE_FIELDS = (
    "pool",
    "source",
    "genre",
    "artist",
    "title",
    "song",
    "version",
    "mix",
    "advisory",
    "bpm",
    "key",
    "year",
    "rule",
    "editor",
    "quality",
    "id",
)
_KIB = 1024
_MIB = 1024**2
_GIB = 1024**3


def user_dir(kind: Literal["data", "config"], env: Mapping[str, str]) -> Path:
    """platformdirs' per-user directory for pooldaemon, with XDG variables and HOME from `env`."""
    if sys.platform in ("win32", "darwin"):
        getter = platformdirs.user_data_dir if kind == "data" else platformdirs.user_config_dir
        return Path(getter(APP_NAME, appauthor=False))
    # platformdirs' Unix rule, computed from `env` rather than os.environ so tests can move it.
    xdg = env.get("XDG_DATA_HOME" if kind == "data" else "XDG_CONFIG_HOME", "").strip()
    if xdg:
        return Path(xdg) / APP_NAME
    home = Path(env.get("HOME") or Path.home())
    return home / (".local/share" if kind == "data" else ".config") / APP_NAME


class DaemonConfig(BaseModel):
    """[daemon]: where files go and how the downloader behaves (docs/interface.md §2, §5)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # The four paths get their defaults in _path_defaults (they depend on the environment):
    download_dir: ConfigPath  # ~/Music/RecordPools
    drop_dir: ConfigPath  # <download_dir>/Requests
    state_dir: ConfigPath  # platformdirs user data dir
    socket_path: ConfigPath  # $XDG_RUNTIME_DIR/pooldaemon/control.sock, else <state_dir>/…
    max_active_downloads: int = Field(3, ge=1, le=32)
    connections_per_download: int = Field(4, ge=1, le=16)
    chunk_size_bytes: Annotated[
        Size, AfterValidator(at_least(256 * _KIB, "size")), AfterValidator(at_most(_GIB, "size"))
    ] = toml_key("chunk_size", "8 MiB")
    bandwidth_limit_bps: Rate = toml_key("bandwidth_limit", "0")  # 0: unlimited
    file_template: Annotated[
        NonEmpty, AfterValidator(template_validator(FILE_TEMPLATE_FIELDS, ()))
    ] = "{pool}/{genre}/{artist} - {title} ({mix})"
    write_tags: bool = True
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # ZIP extraction limits (docs/interface.md §5): the output (also capped at run time by free
    # space less a margin), the entries of an archive set, and each entry's compression ratio.
    max_extract_size_bytes: Annotated[Size, AfterValidator(at_least(_MIB, "size"))] = toml_key(
        "max_extract_size", "8 GiB"
    )
    max_extract_entries: int = Field(10_000, ge=1, le=1_000_000)
    max_extract_ratio: float = Field(100.0, ge=2.0, le=100_000.0, allow_inf_nan=False)
    # Drop folder (docs/interface.md §3): poll instead of OS events (network shares, some
    # containers), and rescan this often anyway in case an event was missed.
    force_polling: bool = False
    drop_rescan_interval_s: Annotated[Duration, AfterValidator(at_least(1, "duration"))] = toml_key(
        "drop_rescan_interval", "30s"
    )
    # A download does not start, and a running one pauses, while free space is below this.
    min_free_space_bytes: Size = toml_key("min_free_space", "512 MiB")
    # A transfer with no bytes for stall_timeout, or slower than speed_floor (per job, "0" = off)
    # for longer than speed_grace, is dropped and retried, up to max_attempts tries in all.
    stall_timeout_s: Annotated[Duration, AfterValidator(at_least(5, "duration"))] = toml_key(
        "stall_timeout", "30s"
    )
    speed_floor_bps: Rate = toml_key("speed_floor", "16 KiB")
    speed_grace_s: Duration = toml_key("speed_grace", "20s")
    max_attempts: int = Field(5, ge=1, le=100)
    # Time allowed for one pool API call (not a file transfer; those are governed by stall_timeout).
    request_timeout_s: Annotated[
        Duration,
        AfterValidator(at_least(5, "duration")),
        AfterValidator(at_most(600, "duration")),
    ] = toml_key("request_timeout", "60s")

    @model_validator(mode="before")
    @classmethod
    def _path_defaults(cls, data: Any) -> Any:
        """Fill the path defaults that depend on other paths or on the environment
        (docs/interface.md §2)."""
        if not isinstance(data, dict):
            return data
        env, base_dir = load_context()
        data = {
            "download_dir": "~/Music/RecordPools",
            "state_dir": user_dir("data", env),
            **data,
        }
        bases: dict[str, Path] = {}
        for key in ("download_dir", "state_dir"):
            try:
                bases[key] = expand_path(data[key], env, base_dir)
            except ValueError:
                # The field's own validator reports the bad value, so validation fails anyway;
                # the placeholder only keeps that from hiding the other keys' problems.
                bases[key] = Path("/")
        data.setdefault("drop_dir", bases["download_dir"] / "Requests")
        if "socket_path" not in data:
            runtime = env.get("XDG_RUNTIME_DIR", "").strip()
            runtime_dir = Path(runtime) / APP_NAME if runtime else bases["state_dir"]
            data["socket_path"] = runtime_dir / "control.sock"
        return data

    @field_validator("file_template")
    @classmethod
    def _template_names_files(cls, value: str) -> str:
        """docs/interface.md §5: the template is a relative path whose last part tells tracks
        apart."""
        parts = value.split("/")
        if value.startswith(("/", "\\", "~")):
            raise ValueError("must be relative to download_dir (remove the leading / or ~)")
        if any(part.strip() in ("", ".", "..") for part in parts):
            raise ValueError('folder levels must not be empty, "." or ".."')
        name = parts[-1]
        if not re.search(r"\{(title|id)\}", name) and not (
            "{song}" in name and "{version}" in name
        ):
            raise ValueError(
                "the file name part (after the last /) must contain {title} or {id} (or {song} "
                "with {version}), or every track would get the same name"
            )
        return value

    @field_validator("socket_path")
    @classmethod
    def _socket_path_fits(cls, value: Path) -> Path:
        """docs/reliability.md S2: a Unix socket path has a hard length limit; fail here, not at
        bind()."""
        limit = 103 if sys.platform == "darwin" else 107  # sun_path minus the NUL
        length = len(os.fsencode(value))
        if length > limit:
            raise ValueError(
                f"is {length} bytes long, more than the {limit} a Unix socket path allows; "
                "choose a shorter path"
            )
        return value
