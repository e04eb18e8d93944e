"""The local zone and its days (docs/interface.md §7, §10): one source for windows and rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pooldaemon.localzone import local_day, local_zone, seconds_to_midnight


def test_local_zone_follows_tz_with_its_dst_rules() -> None:
    zone = local_zone({"TZ": "Europe/Berlin"})
    assert datetime(2026, 7, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=2)
    assert datetime(2026, 1, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=1)
    assert local_zone({"TZ": ":Europe/Berlin"}) == zone
    assert local_zone({"TZ": "Nowhere/Atlantis"}) is not None  # falls back, never fails


def test_days_and_midnights_are_the_zones_not_utcs() -> None:
    # Auckland is 13 hours ahead of UTC in March: its midnight is 11:00 UTC.
    auckland = ZoneInfo("Pacific/Auckland")
    at = datetime(2026, 3, 1, 23, 0, tzinfo=auckland).timestamp()
    assert datetime.fromtimestamp(at, ZoneInfo("UTC")).isoformat() == "2026-03-01T10:00:00+00:00"
    assert local_day(at, auckland) == "2026-03-01"
    assert seconds_to_midnight(at, auckland) == 3600
    assert local_day(at + 3600, auckland) == "2026-03-02"
    assert local_day(at + 3599, auckland) == "2026-03-01"


def test_a_midnight_skipped_by_dst_is_the_jump() -> None:
    # Chile moves its clocks from 00:00 to 01:00 on 6 September 2026: that midnight never shows.
    santiago = ZoneInfo("America/Santiago")
    at = datetime(2026, 9, 5, 23, 0, tzinfo=santiago).timestamp()
    assert seconds_to_midnight(at, santiago) == 3600
    after = at + 3600
    assert local_day(after, santiago) == "2026-09-06"
    assert datetime.fromtimestamp(after, santiago).strftime("%H:%M") == "01:00"
