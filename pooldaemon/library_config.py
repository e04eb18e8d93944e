"""[library]: one good copy of each song (docs/interface.md §8).

Only config_values is imported, so config.py can hold this model as a field of the root
`Config`; its error formatting turns the ValueErrors into `library.<key>: <reason>` lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from pooldaemon.config_values import ConfigPath, Duration, list_from_text, no_duplicates, toml_key

#: docs/interface.md §8: the copy a rule takes when several pools offer a song in one sync.
DEFAULT_PREFER_POOLS = ("promoonly", "crateq", "harvest")


def _interval(value: float) -> float:
    if value != 0 and value < 60:
        raise ValueError('must be at least "1m", or "0" for no scheduled audit')
    return value


class LibraryConfig(BaseModel):
    """[library]: duplicates across pools, adopting folders, the audit and what it does."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    duplicates: Literal["skip", "skip_all", "download"] = "skip"
    prefer_pools: Annotated[
        tuple[str, ...], BeforeValidator(list_from_text), AfterValidator(no_duplicates)
    ] = DEFAULT_PREFER_POOLS
    adopt_dirs: Annotated[tuple[ConfigPath, ...], BeforeValidator(list_from_text)] = ()
    audit_interval_s: Annotated[Duration, AfterValidator(_interval)] = toml_key(
        "audit_interval", "1d"
    )
    missing: Literal["deleted", "redownload"] = "deleted"

    def pool_rank(self, pool: str) -> int:
        """Where a pool stands in `prefer_pools` (pools not listed come after, by name)."""
        try:
            return self.prefer_pools.index(pool)
        except ValueError:
            return len(self.prefer_pools)

    def dirs(self) -> list[Path]:
        return list(self.adopt_dirs)
