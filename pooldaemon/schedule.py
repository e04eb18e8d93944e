"""Which [[schedule]] window is in force at a moment, and when that next changes (pure).

docs/interface.md §10: windows are in local time, a window may cross midnight, and its days are
the days it starts on. Times are compared as instants (UTC), never as wall-clock readings, so a
DST change neither stretches nor shortens a window by reading the clock twice:

- a start or end in the hour skipped in spring ("02:30" on the night clocks go 02:00 → 03:00)
  happens when the clock first shows a later time, at the jump;
- a start or end in the hour repeated in autumn happens the first time the clock shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from pooldaemon.informed_config import DAYS, ScheduleWindow

_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Policy:
    """What holds at a moment: the limit (None: unlimited), whether transfers may run, and why."""

    limit_bps: int | None
    downloads: bool
    window: ScheduleWindow | None  # None: outside every window, [daemon] bandwidth_limit holds
    window_index: int | None
    next_change: datetime | None  # in the zone of the moment asked about; None: never


def _instant(day: date, wall: time, zone: tzinfo) -> datetime:
    """The first instant at which the local clock in `zone` shows `wall` on `day`, or later."""
    target = datetime.combine(day, wall)
    first = datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)  # fold=0: the first of two
    if first.astimezone(zone).replace(tzinfo=None) == target:
        return first
    # `wall` does not exist that day (the clock jumps over it): find the jump, minute by minute.
    # zoneinfo maps a missing time with fold=1 to an instant before the jump; a gap is at most
    # a few hours, and transitions fall on whole minutes.
    probe = datetime.combine(day, wall, tzinfo=zone).replace(fold=1).astimezone(UTC)
    probe = min(probe, first)
    while probe.astimezone(zone).replace(tzinfo=None) < target:
        probe += _MINUTE
    return probe


def _occurrence(window: ScheduleWindow, day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The window starting on `day` as [start, end) instants in UTC."""
    end_day = day if window.end > window.start else day + timedelta(days=1)
    return _instant(day, window.start, zone), _instant(end_day, window.end, zone)


def _stricter(a: ScheduleWindow, b: ScheduleWindow) -> bool:
    """Overlapping windows: no downloads beats a limit, a lower limit beats a higher one."""
    if a.downloads != b.downloads:
        return not a.downloads

    def rate(w: ScheduleWindow) -> float:
        return w.bandwidth_limit_bps or float("inf")

    return rate(a) < rate(b)


def policy_at(windows: Sequence[ScheduleWindow], default_limit_bps: int, now: datetime) -> Policy:
    """The policy at `now` (an aware local datetime) and the next instant it may change."""
    if now.tzinfo is None:
        raise ValueError("policy_at needs an aware datetime (local time with its zone)")
    zone = now.tzinfo
    at = now.astimezone(UTC)
    today = now.date()
    chosen: tuple[int, ScheduleWindow] | None = None
    next_change: datetime | None = None
    # A window lasts under a day, so only yesterday's can still be running; a window on one
    # weekday only next starts up to a week ahead.
    for offset in range(-1, 8):
        day = today + timedelta(days=offset)
        for index, window in enumerate(windows):
            if DAYS[day.weekday()] not in window.days:
                continue
            start, end = _occurrence(window, day, zone)
            if start <= at < end and (chosen is None or _stricter(window, chosen[1])):
                chosen = (index, window)
            for boundary in (start, end):
                if boundary > at and (next_change is None or boundary < next_change):
                    next_change = boundary
    local_next = next_change.astimezone(zone) if next_change is not None else None
    if chosen is None:
        return Policy(default_limit_bps or None, True, None, None, local_next)
    index, window = chosen
    return Policy(window.bandwidth_limit_bps or None, window.downloads, window, index, local_next)
