"""[exports]: playlists and collections for DJ software (docs/interface.md §9)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from pooldaemon.config_values import (
    describe,
    expand_path,
    list_from_text,
    load_context,
    no_duplicates,
)

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
        BeforeValidator(list_from_text),
        AfterValidator(no_duplicates),
    ] = EXPORT_PLAYLISTS

    @property
    def enabled(self) -> bool:
        """Whether any export is on."""
        return any(
            p is not None
            for p in (self.m3u8_dir, self.rekordbox_xml, self.traktor_nml, self.serato_dir)
        )


def default_playlists_dir(daemon: object) -> Path:
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
