"""[pools.<name>]: one model per pool type, told apart by `type` (docs/interface.md §2, §6).

Every pool takes the keys of `_PoolBase` (enabled, auto_download, the polling intervals with
their floors, `<secret>_file` indirection); each type adds its endpoints and credentials.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pooldaemon.config_values import (
    Duration,
    NonEmpty,
    Secret,
    Url,
    list_from_text,
    load_context,
    no_duplicates,
    read_secret_file,
    template_validator,
    toml_key,
)
from pooldaemon.config_values import Problem as _Problem
from pooldaemon.units import format_duration

_POOL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
# docs/pools/harvest.md: "<format>19b8f5935503adde</format>", "an encrypted format identifier".
_HARVEST_FORMAT_ID = re.compile(r"[0-9a-fA-F]{8,64}")
_HARVEST_PLAYLIST_ID = re.compile(r"[A-Za-z0-9_-]+")


class _PoolBase(BaseModel):
    """Keys every pool accepts (docs/interface.md §2), secret `_file` indirection and the polling
    floors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # Field names (attributes) of the secrets of this pool type; each also accepts `<key>_file`.
    SECRETS: ClassVar[tuple[str, ...]] = ()
    # Whether the pool type has a catalog to mirror (its adapter's CATALOG capability): without
    # one, `catalog_interval` does nothing and check-config says so.
    HAS_CATALOG: ClassVar[bool] = True
    # docs/interface.md §6, "All pools": each pool has a floor on its polling intervals. Faster
    # polling buys nothing (catalogs change a few times a day) and risks 429s and bans.
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
            data[key] = read_secret_file(key, data.pop(file_key), env, base_dir)
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
    """Exactly one of several credential forms is given in full (docs/interface.md §2: POOL,
    Harvest)."""
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
    """[pools.<name>] type = "crateq" (docs/pools/crateq.md)."""

    SECRETS: ClassVar[tuple[str, ...]] = ("api_key", "password")

    type: Literal["crateq"]
    base_url: Url = "https://api.crateq.com/api"
    api_key: Secret
    username: NonEmpty
    password: Secret
    originator: str = ""
    # docs/interface.md §6: the content download endpoint is not documented, hence configurable.
    download_url: Annotated[
        str,
        AfterValidator(
            template_validator(("base_url", "mediaId", "api_key", "auth"), ("mediaId",))
        ),
    ] = "{base_url}/Content/Download/{mediaId}?key={api_key}&token={auth}"


class PromoOnlyConfig(_PoolBase):
    """[pools.<name>] type = "promoonly": Promo Only POOL (docs/pools/promoonly.md,
    docs/interface.md §6)."""

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
    """docs/interface.md §2: what counts as a Harvest pool's queue."""
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


class HarvestConfig(_PoolBase):
    """[pools.<name>] type = "harvest": Harvest Media (docs/pools/harvest.md, docs/interface.md
    §6)."""

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
        BeforeValidator(list_from_text),
        AfterValidator(no_duplicates),
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
