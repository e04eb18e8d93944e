"""The governor: the daemon's limit, schedule windows and gig mode combined into one throttle."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog

from pooldaemon.governor import Governor, Throttle
from pooldaemon.informed_config import GigConfig, ScheduleWindow
from pooldaemon.localzone import local_zone, system_clock
from tests.conftest import eventually

BERLIN = ZoneInfo("Europe/Berlin")
MIB = 1024 * 1024
KIB = 1024


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Apps:
    """A stand-in process table: the app names "running" now."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.error: OSError | None = None

    async def __call__(self, apps: Sequence[str]) -> str | None:
        if self.error is not None:
            raise self.error
        return next((app for app in apps if app in self.running), None)


def governor(
    clock: Clock, apps: Apps, *, windows: Sequence[ScheduleWindow] = (), **gig: object
) -> Governor:
    return Governor(
        bandwidth_limit_bps=8 * MIB,
        schedule=windows,
        gig=GigConfig.model_validate(gig),
        clock=clock,
        scan=apps,
        tick_s=0.01,
        gig_interval_s=0.01,
    )


NIGHT = ScheduleWindow.model_validate({"from": "01:00", "to": "07:00", "bandwidth_limit": "1 MiB"})
EVENING = ScheduleWindow.model_validate({"from": "18:00", "to": "20:00", "downloads": False})


async def test_the_clock_entering_a_window_changes_the_limit_live() -> None:
    clock = Clock(datetime(2026, 6, 3, 0, 59, 59, tzinfo=BERLIN))
    gov = governor(clock, Apps(), windows=[NIGHT, EVENING])
    seen: list[Throttle] = []
    gov.subscribe(seen.append)
    assert gov.throttle == Throttle(False, 8 * MIB, None)
    assert gov.status() == {
        "schedule": {
            "window": None,
            "downloads": True,
            "limit_bps": 8 * MIB,
            "paused": False,
            "reason": None,
            "next_change": "2026-06-03T01:00:00+02:00",
        },
        "gig": None,
    }
    gov.start()
    try:
        clock.now += timedelta(seconds=1)
        await eventually(lambda: len(seen) == 1)
        assert seen[0] == Throttle(False, MIB, "schedule every day 01:00-07:00")
        assert gov.status()["schedule"]["window"] == "every day 01:00-07:00"
        assert gov.status()["schedule"]["next_change"] == "2026-06-03T07:00:00+02:00"
        clock.now = datetime(2026, 6, 3, 18, 30, tzinfo=BERLIN)
        await eventually(lambda: len(seen) == 2)
        assert seen[1] == Throttle(True, None, "schedule every day 18:00-20:00")
        clock.now = datetime(2026, 6, 3, 20, 0, tzinfo=BERLIN)
        await eventually(lambda: len(seen) == 3)
        assert seen[2] == Throttle(False, 8 * MIB, None)
    finally:
        await gov.stop()


async def test_gig_pause_beats_every_window_and_ends_with_the_app() -> None:
    apps = Apps()
    gov = governor(Clock(datetime(2026, 6, 3, 2, 0, tzinfo=BERLIN)), apps, windows=[NIGHT])
    seen: list[Throttle] = []
    gov.subscribe(seen.append)
    gov.start()
    try:
        apps.running = {"rekordbox"}
        await eventually(lambda: gov.throttle.paused)
        assert seen == [Throttle(True, None, "gig: rekordbox")]
        assert gov.status()["gig"] == {"app": "rekordbox", "action": "pause", "limit_bps": None}
        assert gov.status()["schedule"]["window"] == "every day 01:00-07:00"
        apps.running = set()
        await eventually(lambda: not gov.throttle.paused)
        assert seen[-1] == Throttle(False, MIB, "schedule every day 01:00-07:00")
        assert gov.status()["gig"] is None
    finally:
        await gov.stop()


async def test_gig_limit_is_the_lower_of_the_two() -> None:
    apps = Apps()
    apps.running = {"Mixxx"}
    clock = Clock(datetime(2026, 6, 3, 12, 0, tzinfo=BERLIN))
    gov = governor(clock, apps, windows=[NIGHT], action="limit", bandwidth_limit="2 MiB")
    assert await gov.scan_now() == "Mixxx"
    assert gov.throttle == Throttle(False, 2 * MIB, "gig: Mixxx")  # daemon's 8 MiB is higher
    clock.now = datetime(2026, 6, 3, 2, 0, tzinfo=BERLIN)
    assert gov.evaluate() == Throttle(False, MIB, "schedule every day 01:00-07:00")
    assert gov.status()["gig"] == {"app": "Mixxx", "action": "limit", "limit_bps": 2 * MIB}
    # A window with no downloads pauses even a limited gig.
    clock.now = datetime(2026, 6, 3, 19, 0, tzinfo=BERLIN)
    gov.reconfigure(
        bandwidth_limit_bps=0,
        schedule=[EVENING],
        gig=GigConfig(action="limit", bandwidth_limit_bps=2 * MIB),
    )
    assert gov.throttle == Throttle(True, None, "schedule every day 18:00-20:00")


async def test_a_failing_scan_is_logged_once_and_counts_as_no_app() -> None:
    apps = Apps()
    apps.running = {"rekordbox"}
    gov = governor(Clock(datetime(2026, 6, 3, 12, 0, tzinfo=BERLIN)), apps)
    await gov.scan_now()
    assert gov.throttle.paused
    apps.error = OSError("ps: not found")
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            await gov.scan_now()
        apps.error = None
        await gov.scan_now()
    events = [entry["event"] for entry in logs]
    assert events.count("gig.scan_failing") == 1
    assert events.count("gig.scan_recovered") == 1
    assert gov.throttle.paused  # the app is seen again after the recovery


async def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    clock = Clock(datetime(2026, 6, 3, 12, 0, tzinfo=BERLIN))
    gov = governor(clock, Apps(), windows=[NIGHT])
    seen: list[Throttle] = []

    def broken(throttle: Throttle) -> None:
        raise RuntimeError("bug")

    gov.subscribe(broken)
    gov.subscribe(seen.append)
    clock.now = datetime(2026, 6, 3, 2, 0, tzinfo=BERLIN)
    with structlog.testing.capture_logs() as logs:
        gov.evaluate()
    assert seen == [Throttle(False, MIB, "schedule every day 01:00-07:00")]
    assert [entry["event"] for entry in logs].count("throttle.subscriber_failed") == 1


@pytest.mark.skipif(shutil.which("ps") is None and not Path("/proc").is_dir(), reason="no scan")
async def test_a_real_dj_app_pauses_within_five_seconds(tmp_path: Path) -> None:
    program = tmp_path / "rekordbox"
    shutil.copy("/bin/sleep", program)
    clock = system_clock(local_zone(os.environ))
    gov = Governor(bandwidth_limit_bps=0, schedule=[], gig=GigConfig(), clock=clock)
    gov.start()
    try:
        process = await asyncio.create_subprocess_exec(str(program), "300")
        try:
            took_on = await eventually(lambda: gov.throttle.paused, deadline_s=5.0)
        finally:
            process.kill()
            await process.wait()
        took_off = await eventually(lambda: not gov.throttle.paused, deadline_s=5.0)
    finally:
        await gov.stop()
    assert gov.throttle == Throttle(False, None, None)
    print(f"gig on after {took_on:.2f}s, off after {took_off:.2f}s")
