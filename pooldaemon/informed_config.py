"""[notify], [hooks], [[schedule]] and [gig]: keeping the DJ informed and out of the way.

docs/interface.md §10 fixes the keys. These models only depend on units.py so config.py can hold
them as fields of the root `Config`; its error formatting turns their ValueErrors into
`<key path>: <reason>` lines like every other key's.
"""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from pooldaemon.config_values import (
    Problem,
    Rate,
    describe,
    list_from_text,
    load_context,
    no_duplicates_any_case,
    read_secret_file,
)
from pooldaemon.units import format_size

NotifyEvent = Literal["done", "failed", "account", "disk"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("done", "failed", "account", "disk")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# docs/interface.md §10: the DJ apps watched when [gig] is not configured.
DEFAULT_GIG_APPS = (
    "rekordbox",
    "Serato DJ Pro",
    "Traktor",
    "VirtualDJ",
    "Engine DJ",
    "djay Pro",
    "Mixxx",
)
_FROZEN = ConfigDict(frozen=True, extra="forbid", validate_default=True, populate_by_name=True)


def _urls_from_text(value: object) -> object:
    """An env override gives text: a JSON list, or URLs separated by spaces or newlines.

    Not commas: Apprise URLs carry comma-separated parameters ("?to=a,b").
    """
    if isinstance(value, str) and not value.strip().startswith("["):
        return value.split()
    return list_from_text(value)


# ---------------------------------------------------------------------------------------------
# [notify]


def _apprise_url(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    scheme, sep, rest = text.partition("://")
    # The URL is a secret (tokens, passwords in it): the message never repeats it.
    if not sep or not scheme.isascii() or not scheme.replace("+", "").isalnum() or not rest:
        raise ValueError(
            'each entry must be an Apprise URL such as "ntfy://my-topic" or "json://host/path"'
        )
    if any(c.isspace() for c in text):
        raise ValueError("an Apprise URL must not contain spaces")
    return value


class NotifyConfig(BaseModel):
    """[notify]: Apprise URLs, which events are sent, and desktop notifications."""

    model_config = _FROZEN

    # The URLs carry tokens and passwords: like every secret, they may come from a file
    # (`urls_file`, one URL a line) and are masked wherever the config is shown.
    SECRETS: ClassVar[tuple[str, ...]] = ("urls",)

    urls: Annotated[
        tuple[Annotated[SecretStr, AfterValidator(_apprise_url)], ...],
        BeforeValidator(_urls_from_text),
    ] = ()
    on: Annotated[
        tuple[NotifyEvent, ...],
        BeforeValidator(list_from_text),
        AfterValidator(no_duplicates_any_case),
    ] = NOTIFY_EVENTS
    desktop: bool = True

    @model_validator(mode="before")
    @classmethod
    def _urls_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "urls_file" not in data:
            return data
        data = dict(data)
        if "urls" in data:
            raise Problem("urls_file", 'give either "urls" or "urls_file", not both')
        env, base_dir = load_context()
        text = read_secret_file("urls", data.pop("urls_file"), env, base_dir)
        lines = (line.strip() for line in text.splitlines())
        data["urls"] = [line for line in lines if line and not line.startswith("#")]
        return data

    def url_values(self) -> list[str]:
        """The Apprise URLs as plain text (for delivery and the log redactor only)."""
        return [url.get_secret_value() for url in self.urls]


# ---------------------------------------------------------------------------------------------
# [hooks]


def _executable(value: object) -> Path | None:
    if value is None:
        return None
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be the absolute path of an executable (got {describe(value)})")
    path = Path(value)
    if not path.is_absolute():
        raise ValueError(
            f"must be an absolute path (got {describe(value)}); hooks run without a shell"
        )
    if not path.is_file():
        raise ValueError(f'"{path}" does not exist or is not a file')
    if not os.access(path, os.X_OK):
        raise ValueError(f'"{path}" is not executable; run: chmod +x {path}')
    return path


HookPath = Annotated[Path | None, BeforeValidator(_executable)]


class HooksConfig(BaseModel):
    """[hooks]: programs run after a download finished or failed (no shell)."""

    model_config = _FROZEN

    on_done: HookPath = None
    on_failed: HookPath = None


# ---------------------------------------------------------------------------------------------
# [[schedule]]


def _clock_time(value: object) -> time:
    if isinstance(value, time):
        return value
    text = value.strip() if isinstance(value, str) else ""
    hours, sep, minutes = text.partition(":")
    if (
        sep
        and len(hours) in (1, 2)
        and len(minutes) == 2
        and hours.isdigit()
        and minutes.isdigit()
        and int(hours) < 24
        and int(minutes) < 60
    ):
        return time(int(hours), int(minutes))
    raise ValueError(f'must be a time of day as "HH:MM", 00:00 to 23:59 (got {describe(value)})')


def _day(value: object) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if text in DAYS:
        return text
    raise ValueError(f"{describe(value)} is not a day (use {', '.join(DAYS)})")


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class ScheduleWindow(BaseModel):
    """One [[schedule]] window: days (the day it starts), local from–to, and what holds inside."""

    model_config = _FROZEN

    days: Annotated[
        tuple[Annotated[str, BeforeValidator(_day)], ...], AfterValidator(no_duplicates_any_case)
    ] = DAYS
    start: ClockTime = Field(validation_alias="from")
    end: ClockTime = Field(validation_alias="to")
    bandwidth_limit_bps: Rate = Field(0, validation_alias="bandwidth_limit")  # 0: unlimited
    downloads: bool = True

    @model_validator(mode="after")
    def _has_length(self) -> ScheduleWindow:
        if self.start == self.end:
            raise ValueError(
                '"from" and "to" are the same time; a window must have a length '
                "(for all day, leave out [[schedule]] and use [daemon] bandwidth_limit)"
            )
        if not self.days:
            raise ValueError('"days" is empty; leave it out for every day')
        return self

    def label(self) -> str:
        """How status names the window: "mon,tue 01:00-07:00"."""
        days = "every day" if self.days == DAYS else ",".join(self.days)
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"


# ---------------------------------------------------------------------------------------------
# [gig]


def _app_name(value: str) -> str:
    if not value.strip():
        raise ValueError("an app name must not be empty")
    return value.strip()


class GigConfig(BaseModel):
    """[gig]: while one of these DJ apps runs, downloads pause or drop to a low limit."""

    model_config = _FROZEN

    apps: Annotated[
        tuple[Annotated[str, AfterValidator(_app_name)], ...],
        BeforeValidator(list_from_text),
        AfterValidator(no_duplicates_any_case),
    ] = DEFAULT_GIG_APPS
    action: Literal["pause", "limit"] = "pause"
    bandwidth_limit_bps: Rate = Field(256 * 1024, validation_alias="bandwidth_limit")

    @model_validator(mode="after")
    def _limit_is_set(self) -> GigConfig:
        if self.action == "limit" and self.bandwidth_limit_bps == 0:
            raise ValueError(
                'action = "limit" needs a bandwidth_limit above 0 (such as "256 KiB"); '
                'for no downloads at all use action = "pause"'
            )
        return self

    def describe_limit(self) -> str:
        """The gig limit for display: "256.0 KiB/s"."""
        return f"{format_size(self.bandwidth_limit_bps)}/s"


# [[schedule]] from the environment: a JSON list of tables.
Schedule = Annotated[tuple[ScheduleWindow, ...], BeforeValidator(list_from_text)]

#: The tables this module adds to the config, by TOML name (for config.py's key hints).
SECTIONS: dict[str, type[BaseModel]] = {
    "notify": NotifyConfig,
    "hooks": HooksConfig,
    "schedule": ScheduleWindow,
    "gig": GigConfig,
}
