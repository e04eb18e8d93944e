"""Schedule windows at a given moment: midnight, weekdays, overlaps, and both DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pooldaemon.informed_config import ScheduleWindow
from pooldaemon.schedule import policy_at

BERLIN = ZoneInfo("Europe/Berlin")
MIB = 1024 * 1024


def window(**keys: object) -> ScheduleWindow:
    return ScheduleWindow.model_validate(keys)


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_outside_every_window_the_daemon_limit_holds() -> None:
    night = window(**{"from": "01:00", "to": "07:00", "bandwidth_limit": "0"})
    policy = policy_at([night], 2 * MIB, berlin(2026, 6, 3, 12, 0))  # a Wednesday
    assert (policy.limit_bps, policy.downloads, policy.window) == (2 * MIB, True, None)
    assert policy.next_change == berlin(2026, 6, 4, 1, 0)
    assert policy_at([], 0, berlin(2026, 6, 3, 12, 0)).limit_bps is None
    assert policy_at([], 0, berlin(2026, 6, 3, 12, 0)).next_change is None


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    friday_night = window(
        days=["fri"], **{"from": "23:00", "to": "07:00", "bandwidth_limit": "1 MiB"}
    )
    # 2026-06-05 is a Friday.
    assert policy_at([friday_night], 0, berlin(2026, 6, 5, 22, 59)).window is None
    inside = policy_at([friday_night], 0, berlin(2026, 6, 5, 23, 0))
    assert inside.window is friday_night and inside.limit_bps == MIB
    assert inside.next_change == berlin(2026, 6, 6, 7, 0)
    saturday = policy_at([friday_night], 0, berlin(2026, 6, 6, 6, 59))
    assert saturday.window is friday_night  # Saturday morning: Friday's window still runs
    after = policy_at([friday_night], 0, berlin(2026, 6, 6, 7, 0))
    assert after.window is None
    assert after.next_change == berlin(2026, 6, 12, 23, 0)  # next Friday
    # Friday morning belongs to Thursday night, which is not listed.
    assert policy_at([friday_night], 0, berlin(2026, 6, 5, 3, 0)).window is None


def test_no_downloads_inside_a_window() -> None:
    evening = window(**{"from": "18:00", "to": "20:00", "downloads": False})
    policy = policy_at([evening], 0, berlin(2026, 6, 3, 19, 0))
    assert policy.downloads is False and policy.window_index == 0


def test_overlapping_windows_the_stricter_holds() -> None:
    wide = window(**{"from": "08:00", "to": "20:00", "bandwidth_limit": "4 MiB"})
    narrow = window(**{"from": "12:00", "to": "13:00", "bandwidth_limit": "1 MiB"})
    stop = window(**{"from": "12:30", "to": "12:40", "downloads": False})
    windows = [wide, narrow, stop]
    assert policy_at(windows, 0, berlin(2026, 6, 3, 9, 0)).limit_bps == 4 * MIB
    noon = policy_at(windows, 0, berlin(2026, 6, 3, 12, 10))
    assert (noon.limit_bps, noon.window_index) == (MIB, 1)
    assert noon.next_change == berlin(2026, 6, 3, 12, 30)
    assert policy_at(windows, 0, berlin(2026, 6, 3, 12, 35)).downloads is False


# Europe/Berlin 2026: clocks go 02:00 CET → 03:00 CEST on 29 March (01:00 UTC), and
# 03:00 CEST → 02:00 CET on 25 October (01:00 UTC).


def test_spring_forward_the_window_is_an_hour_shorter() -> None:
    night = window(**{"from": "01:00", "to": "07:00", "bandwidth_limit": "1 MiB"})
    before = policy_at([night], 0, utc(2026, 3, 28, 23, 59).astimezone(BERLIN))  # 00:59 CET
    assert before.window is None
    assert before.next_change is not None
    assert before.next_change.astimezone(UTC) == utc(2026, 3, 29, 0, 0)  # 01:00 CET
    inside = policy_at([night], 0, utc(2026, 3, 29, 0, 30).astimezone(BERLIN))
    assert inside.window is night
    assert inside.next_change is not None
    assert inside.next_change.astimezone(UTC) == utc(2026, 3, 29, 5, 0)  # 07:00 CEST: 5 h later
    assert policy_at([night], 0, utc(2026, 3, 29, 4, 59).astimezone(BERLIN)).window is night
    assert policy_at([night], 0, utc(2026, 3, 29, 5, 0).astimezone(BERLIN)).window is None


def test_spring_forward_a_start_in_the_skipped_hour_starts_at_the_jump() -> None:
    skipped = window(**{"from": "02:30", "to": "04:00", "downloads": False})
    before = policy_at([skipped], 0, utc(2026, 3, 29, 0, 59).astimezone(BERLIN))  # 01:59 CET
    assert before.window is None
    assert before.next_change is not None
    assert before.next_change.astimezone(UTC) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    at_jump = policy_at([skipped], 0, utc(2026, 3, 29, 1, 0).astimezone(BERLIN))
    assert at_jump.downloads is False
    assert at_jump.next_change is not None
    assert at_jump.next_change.astimezone(UTC) == utc(2026, 3, 29, 2, 0)  # 04:00 CEST
    # The next day the window is the full hour and a half again.
    monday = policy_at([skipped], 0, berlin(2026, 3, 30, 2, 29))
    assert monday.next_change is not None
    assert monday.next_change.astimezone(UTC) == utc(2026, 3, 30, 0, 30)


def test_fall_back_the_window_is_an_hour_longer() -> None:
    night = window(**{"from": "01:00", "to": "07:00", "bandwidth_limit": "1 MiB"})
    start = policy_at([night], 0, utc(2026, 10, 24, 23, 0).astimezone(BERLIN))  # 01:00 CEST
    assert start.window is night
    assert start.next_change is not None
    assert start.next_change.astimezone(UTC) == utc(2026, 10, 25, 6, 0)  # 07:00 CET: 7 h later
    # Both readings of 02:30 are inside.
    assert policy_at([night], 0, berlin(2026, 10, 25, 2, 30, fold=0)).window is night
    assert policy_at([night], 0, berlin(2026, 10, 25, 2, 30, fold=1)).window is night
    assert policy_at([night], 0, utc(2026, 10, 25, 6, 0).astimezone(BERLIN)).window is None


def test_fall_back_a_window_in_the_repeated_hour_runs_once() -> None:
    short = window(**{"from": "02:30", "to": "02:45", "bandwidth_limit": "1 MiB"})
    first = policy_at([short], 0, berlin(2026, 10, 25, 2, 35, fold=0))  # 00:35 UTC
    assert first.window is short
    assert first.next_change is not None
    assert first.next_change.astimezone(UTC) == utc(2026, 10, 25, 0, 45)
    second = policy_at([short], 0, berlin(2026, 10, 25, 2, 35, fold=1))  # 01:35 UTC
    assert second.window is None


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        policy_at([], 0, datetime(2026, 1, 1))
