"""The one typed, frozen configuration object, built from TOML and the environment at the edge.

CONTRACT §2 fixes the keys. Durations and sizes are converted once here, into attributes whose
names carry the unit (TOML `queue_interval = "2m"` → `queue_interval_s == 120.0`). `load_config` is
the only place that reads the config file or the environment; everything else is handed a `Config`.

Here: the models (`[daemon]`, `[pools.<name>]`), loading, and turning pydantic's errors into
`<key path>: <reason>` lines (which need the models, hence one module of ~750 lines). The value
converters the models use are in `config_values.py`; showing a config (masked) and the file
permission warnings in `config_display.py`, re-exported here.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Re-exported: pooldaemon.config is the public entry for everything about the config.
from pooldaemon.config_display import SECRET_MASK as SECRET_MASK
from pooldaemon.config_display import config_warnings as config_warnings
from pooldaemon.config_display import effective_dict as effective_dict
from pooldaemon.config_display import render_effective as render_effective
from pooldaemon.config_rules import RuleConfig
from pooldaemon.config_values import (
    LOAD_CONTEXT,
    ConfigPath,
    Duration,
    NonEmpty,
    Rate,
    Secret,
    Size,
    Url,
    at_least,
    at_most,
    describe,
    expand_path,
    load_context,
    template_validator,
    toml_key,
)
from pooldaemon.config_values import Problem as _Problem
from pooldaemon.config_values import list_from_text as _list_from_text
from pooldaemon.config_values import read_secret_file as _read_secret_file
from pooldaemon.informed_config import (
    SECTIONS as INFORMED_SECTIONS,
)
from pooldaemon.informed_config import (
    GigConfig,
    HooksConfig,
    NotifyConfig,
    Schedule,
)
from pooldaemon.library_config import LibraryConfig
from pooldaemon.units import format_duration

APP_NAME = "pooldaemon"
ENV_PREFIX = "POOLDAEMON_"
CONFIG_PATH_VAR = "POOLDAEMON_CONFIG"
# POOLDAEMON_* variables that are not settings; every other one must name a key (CONTRACT §2).
NON_SETTING_ENV_VARS = frozenset({CONFIG_PATH_VAR})
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
# Pool names appear in refs ("crateq:570291", CONTRACT §3), so they cannot hold ":" or spaces.
_POOL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
# seed 003: "<format>19b8f5935503adde</format>", "an encrypted format identifier".
_HARVEST_FORMAT_ID = re.compile(r"[0-9a-fA-F]{8,64}")
_HARVEST_PLAYLIST_ID = re.compile(r"[A-Za-z0-9_-]+")
_KIB = 1024
_MIB = 1024**2
_GIB = 1024**3


class ConfigError(Exception):
    """The config is unusable; `str()` is one `<key path>: <reason and fix>` line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(dict.fromkeys(problems))
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------------------------------------
# [daemon]


def _user_dir(kind: Literal["data", "config"], env: Mapping[str, str]) -> Path:
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
    """[daemon]: where files go and how the downloader behaves (CONTRACT §2, §5)."""

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
    # Drop folder (CONTRACT §3): poll instead of OS events (network shares, some containers), and
    # rescan this often anyway in case an event was missed.
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
        """Fill the path defaults that depend on other paths or on the environment (CONTRACT §2)."""
        if not isinstance(data, dict):
            return data
        env, base_dir = load_context()
        data = {
            "download_dir": "~/Music/RecordPools",
            "state_dir": _user_dir("data", env),
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
        """CONTRACT §5: the template is a relative path whose last part tells tracks apart."""
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
        """RELIABILITY S2: a Unix socket path has a hard length limit; fail here, not at bind()."""
        limit = 103 if sys.platform == "darwin" else 107  # sun_path minus the NUL
        length = len(os.fsencode(value))
        if length > limit:
            raise ValueError(
                f"is {length} bytes long, more than the {limit} a Unix socket path allows; "
                "choose a shorter path"
            )
        return value


# ---------------------------------------------------------------------------------------------
# [pools.<name>]


class _PoolBase(BaseModel):
    """Keys every pool accepts (CONTRACT §2), secret `_file` indirection and the polling floors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # Field names (attributes) of the secrets of this pool type; each also accepts `<key>_file`.
    SECRETS: ClassVar[tuple[str, ...]] = ()
    # Whether the pool type has a catalog to mirror (its adapter's CATALOG capability): without
    # one, `catalog_interval` does nothing and check-config says so.
    HAS_CATALOG: ClassVar[bool] = True
    # CONTRACT §6, "All pools": each pool has a floor on its polling intervals. Faster polling
    # buys nothing (catalogs change a few times a day) and risks 429s and bans.
    INTERVAL_FLOORS_S: ClassVar[dict[str, float]] = {
        "queue_interval_s": 60.0,
        "catalog_interval_s": 15 * 60.0,
    }

    enabled: bool = True
    auto_download: bool = True
    catalog_interval_s: Duration = toml_key("catalog_interval", "6h")
    queue_interval_s: Duration = toml_key("queue_interval", "2m")

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        env, base_dir = load_context()
        data = dict(data)
        for key in cls.SECRETS:
            file_key = f"{key}_file"
            if file_key not in data:
                continue
            if key in data:
                raise _Problem(file_key, f'give either "{key}" or "{file_key}", not both')
            data[key] = _read_secret_file(key, data.pop(file_key), env, base_dir)
        return data

    @field_validator("catalog_interval_s", "queue_interval_s")
    @classmethod
    def _at_least_floor(cls, value: float, info: ValidationInfo) -> float:
        floor = cls.INTERVAL_FLOORS_S[info.field_name or ""]
        if value < floor:
            raise ValueError(
                f"must be at least {format_duration(floor)} (got {format_duration(value)}): "
                "polling faster risks the pool's rate limits"
            )
        return value

    def secret_values(self) -> list[str]:
        """The configured secrets of this pool, as plain text."""
        values = [getattr(self, key) for key in self.SECRETS]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


def _require_one_form(cfg: BaseModel, forms: dict[str, tuple[str, ...]], description: str) -> None:
    """Exactly one of several credential forms is given in full (CONTRACT §2: POOL, Harvest)."""
    present = {
        name: [key for key in keys if getattr(cfg, key) is not None] for name, keys in forms.items()
    }
    used = [name for name, keys in present.items() if keys]
    if len(used) > 1:
        raise _Problem(None, f"give {description}, not both")
    if not used:
        raise _Problem(None, f"missing credentials: give {description}")
    for key in forms[used[0]]:
        if getattr(cfg, key) is None:
            raise _Problem(
                None, f'missing required key "{key}" (needed with "{present[used[0]][0]}")'
            )


class CrateQConfig(_PoolBase):
    """[pools.<name>] type = "crateq" (seed 004)."""

    SECRETS: ClassVar[tuple[str, ...]] = ("api_key", "password")

    type: Literal["crateq"]
    base_url: Url = "https://api.crateq.com/api"
    api_key: Secret
    username: NonEmpty
    password: Secret
    originator: str = ""
    # CONTRACT §6: the content download endpoint is not documented, hence configurable.
    download_url: Annotated[
        str,
        AfterValidator(
            template_validator(("base_url", "mediaId", "api_key", "auth"), ("mediaId",))
        ),
    ] = "{base_url}/Content/Download/{mediaId}?key={api_key}&token={auth}"


class PromoOnlyConfig(_PoolBase):
    """[pools.<name>] type = "promoonly": Promo Only POOL (seeds 000–002, CONTRACT §6)."""

    HAS_CATALOG: ClassVar[bool] = False  # no catalog listing is documented
    SECRETS: ClassVar[tuple[str, ...]] = ("password", "token")

    type: Literal["promoonly"]
    base_url: Url = "https://api.promoonly.com"
    # Either a signed-in account (the daemon renews the 5-minute token) or a fixed id and token.
    email: NonEmpty | None = None
    password: Secret | None = None
    user_id: int | None = Field(None, ge=1)
    token: Secret | None = None
    download_url: Annotated[
        str, AfterValidator(template_validator(("server", "dl_token"), ("dl_token",)))
    ] = "https://{server}/pool/v5/download/{dl_token}"

    @model_validator(mode="after")
    def _one_auth_form(self) -> PromoOnlyConfig:
        _require_one_form(
            self,
            {"sign-in": ("email", "password"), "fixed token": ("user_id", "token")},
            "either email and password (sign-in) or user_id and token (fixed token)",
        )
        return self


def _queue_source(item: str) -> str:
    """CONTRACT §2: what counts as a Harvest pool's queue."""
    kind, _, ident = item.partition(":")
    if item in ("favourites", "latest") or (
        kind == "playlist" and _HARVEST_PLAYLIST_ID.fullmatch(ident)
    ):
        return item
    hint = difflib.get_close_matches(kind, ["favourites", "latest", "playlist"], n=1)
    suggestion = f'; did you mean "{hint[0]}"?' if hint and hint[0] != kind else ""
    raise ValueError(
        f'"{item}" is not a queue source '
        f'(use "favourites", "latest" or "playlist:<ID>"{suggestion})'
    )


def _harvest_format(value: str) -> str:
    lowered = value.strip().lower()
    if lowered in ("mp3", "wav", "aiff"):
        return lowered
    if _HARVEST_FORMAT_ID.fullmatch(value.strip()):
        return value.strip()
    raise ValueError(
        f'"{value}" is not a format (use mp3, wav, aiff, or a format ID from getserviceinfo '
        'such as "19b8f5935503adde")'
    )


def _no_duplicates(items: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f'"{repeated[0]}" is listed twice')
    return items


class HarvestConfig(_PoolBase):
    """[pools.<name>] type = "harvest": Harvest Media (seed 003, CONTRACT §6)."""

    SECRETS: ClassVar[tuple[str, ...]] = (
        "client_secret",
        "access_key",
        "service_token",
        "password",
    )

    type: Literal["harvest"]
    base_url: Url = "https://service.harvestmedia.net/HMP-WS.svc"
    auth_url: Url = "https://auth.harvestmedia.net/oauth2/token"
    # Either OAuth client credentials plus access key, or a service token handed out by the pool.
    client_id: NonEmpty | None = None
    client_secret: Secret | None = None
    access_key: Secret | None = None
    service_token: Secret | None = None
    username: NonEmpty
    password: Secret
    format: Annotated[str, AfterValidator(_harvest_format)] = "mp3"
    wire: Literal["json", "xml"] = "json"
    queue_interval_s: Duration = toml_key("queue_interval", "5m")
    auto_download_from: Annotated[
        tuple[Annotated[str, AfterValidator(_queue_source)], ...],
        BeforeValidator(_list_from_text),
        AfterValidator(_no_duplicates),
    ] = ("favourites",)

    @model_validator(mode="after")
    def _one_service_form(self) -> HarvestConfig:
        _require_one_form(
            self,
            {
                "client credentials": ("client_id", "client_secret", "access_key"),
                "service token": ("service_token",),
            },
            "either client_id, client_secret and access_key, or service_token",
        )
        return self


POOL_TYPES: dict[str, type[CrateQConfig | PromoOnlyConfig | HarvestConfig]] = {
    "crateq": CrateQConfig,
    "promoonly": PromoOnlyConfig,
    "harvest": HarvestConfig,
}
PoolConfig = Annotated[CrateQConfig | PromoOnlyConfig | HarvestConfig, Field(discriminator="type")]


# ---------------------------------------------------------------------------------------------
# [exports]

#: docs/interface.md §9: one playlist per pool, one per rule, and "New this week".
EXPORT_PLAYLISTS = ("pool", "rule", "recent")
#: What a path key of [exports] says to switch that export off.
_OFF = ""


def _export_path(value: object) -> Path | None:
    """An export's path, or None for "" (that export is off)."""
    if isinstance(value, str) and value.strip() == _OFF:
        return None
    if value is None or isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise ValueError(f'must be a path, or "" to switch this export off (got {describe(value)})')
    env, base_dir = load_context()
    return expand_path(value, env, base_dir)


ExportPath = Annotated[Path | None, BeforeValidator(_export_path)]


def _suffix_check(suffix: str, example: str) -> AfterValidator:
    def check(value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() != suffix:
            raise ValueError(
                f'must name a {suffix} file, e.g. "{example}" (got "{value}"); "" switches it off'
            )
        return value

    return AfterValidator(check)


def _serato_folder(value: Path | None) -> Path | None:
    """Serato keeps its library in a folder named `_Serato_`; crates elsewhere go unseen."""
    if value is not None and value.name != "_Serato_":
        raise ValueError(
            f'must be Serato\'s "_Serato_" folder, e.g. "~/Music/_Serato_" (got "{value}"); '
            '"" switches it off'
        )
    return value


def _playlist_kind(item: str) -> str:
    if item in EXPORT_PLAYLISTS:
        return item
    hint = difflib.get_close_matches(item, EXPORT_PLAYLISTS, n=1)
    suggestion = f'; did you mean "{hint[0]}"?' if hint else ""
    raise ValueError(
        f'"{item}" is not a kind of playlist (use "pool", "rule" or "recent"{suggestion})'
    )


class ExportsConfig(BaseModel):
    """[exports]: playlists and collections for DJ software (docs/interface.md §9).

    A path key set to "" is None here: that export is off. `m3u8_dir` defaults to
    `<download_dir>/Playlists` (filled in by `Config`, which knows download_dir).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    m3u8_dir: ExportPath = None
    rekordbox_xml: Annotated[ExportPath, _suffix_check(".xml", "~/Music/rekordbox.xml")] = None
    traktor_nml: Annotated[ExportPath, _suffix_check(".nml", "~/Music/pooldaemon.nml")] = None
    serato_dir: Annotated[ExportPath, AfterValidator(_serato_folder)] = None
    playlists: Annotated[
        tuple[Annotated[str, AfterValidator(_playlist_kind)], ...],
        BeforeValidator(_list_from_text),
        AfterValidator(_no_duplicates),
    ] = EXPORT_PLAYLISTS

    @property
    def enabled(self) -> bool:
        """Whether any export is on."""
        return any(
            p is not None
            for p in (self.m3u8_dir, self.rekordbox_xml, self.traktor_nml, self.serato_dir)
        )


def _default_playlists_dir(daemon: object) -> Path:
    """docs/interface.md §2: `m3u8_dir` defaults to `<download_dir>/Playlists`."""
    raw = daemon.get("download_dir") if isinstance(daemon, dict) else None
    env, base_dir = load_context()
    try:
        return expand_path(raw if raw is not None else "~/Music/RecordPools", env, base_dir) / (
            "Playlists"
        )
    except ValueError:
        # download_dir's own validator reports the bad value; this only keeps [exports] valid.
        return Path("/Playlists")


# ---------------------------------------------------------------------------------------------
# [web]


def split_listen(text: str) -> tuple[str, int]:
    """`"127.0.0.1:8577"` or `"[::1]:8577"` → (host, port); raises ValueError."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f'must be "host:port", like "127.0.0.1:8577" or "[::1]:8577" (got {describe(text)})'
        )
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"the host must be an IP address or localhost, not {describe(host)}"
            ) from None
    return host, int(port)


def _listen(value: str) -> str:
    split_listen(value)
    return value.strip()


class WebConfig(BaseModel):
    """[web]: the dashboard (docs/interface.md §11); loopback only unless allow_remote with TLS."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    enabled: bool = True
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8577"  # port 0: any free port
    allow_remote: bool = False
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def loopback(self) -> bool:
        """Whether `listen` names a loopback address (only this machine can connect)."""
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback

    @model_validator(mode="after")
    def _remote_needs_tls(self) -> WebConfig:
        """docs/reliability.md W1: session cookies never cross a network in the clear."""
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise _Problem(missing, "tls_cert and tls_key go together; give both or neither")
        if self.loopback:
            return self
        if not self.allow_remote:
            raise _Problem(
                "listen",
                f"{self.host} is not a loopback address; other machines could reach the "
                "dashboard: set allow_remote = true with tls_cert and tls_key, or listen on "
                "127.0.0.1",
            )
        if self.tls_cert is None:
            raise _Problem(
                "tls_cert", "allow_remote = true needs tls_cert and tls_key (HTTPS only)"
            )
        return self


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
            data["exports"] = {**exports, "m3u8_dir": _default_playlists_dir(data["daemon"])}
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
        """Every configured secret value, longest first, for the log redactor (RELIABILITY S3)."""
        found: set[str] = set()
        for pool in self.pools.values():
            found.update(pool.secret_values())
            if isinstance(pool, PromoOnlyConfig) and pool.user_id is not None and pool.token:
                # CONTRACT §6: the Bearer value is Base64(userid:token); redact it too.
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
    """CONTRACT §1: `--config`, else $POOLDAEMON_CONFIG, else the user config dir's file."""
    environ = os.environ if env is None else env
    if path is None and environ.get(CONFIG_PATH_VAR, "").strip():
        path = Path(environ[CONFIG_PATH_VAR].strip())
    if path is None:
        return _user_dir("config", environ) / "config.toml"
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
