"""The machine's local time zone and its calendar days: one source for everything local.

docs/interface.md §7 and §10: schedule windows, gig mode's clock and rules' `max_per_day` all
read local time in the zone `local_zone` gives ($TZ, else /etc/localtime), so a day and a window
agree with each other, and tests can run the daemon in any zone by setting TZ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LocalClock = Callable[[], datetime]


def local_zone(env: Mapping[str, str]) -> tzinfo:
    """The machine's zone with its DST rules ($TZ, else /etc/localtime), else a fixed offset."""
    name = env.get("TZ", "").lstrip(":")
    try:
        if name:
            return ZoneInfo(name)
        with Path("/etc/localtime").open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):
        zone = datetime.now().astimezone().tzinfo
        assert zone is not None
        return zone


def system_clock(zone: tzinfo) -> LocalClock:
    """Aware local time now, in `zone` (the daemon passes `local_zone(os.environ)`)."""
    return lambda: datetime.now(zone)


def local_day(at: float, zone: tzinfo) -> str:
    """The calendar day in `zone` of a unix time, as YYYY-MM-DD."""
    return datetime.fromtimestamp(at, zone).date().isoformat()


def seconds_to_midnight(at: float, zone: tzinfo) -> float:
    """Seconds from `at` to the next midnight in `zone` (when the day `local_day` gives changes).

    A midnight skipped by a DST jump is the jump itself: zoneinfo reads a missing wall time
    with the offset from before it (fold=0), which is the instant the clock jumps.
    """
    today: date = datetime.fromtimestamp(at, zone).date()
    midnight = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)
    return max(0.0, midnight.timestamp() - at)
