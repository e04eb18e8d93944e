"""Gig mode's detection: a real process named like a DJ app is seen, and unseen once it quits."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pooldaemon.gig import _ps_process_names, match_app, parse_ps_comm, running_app

APPS = ("rekordbox", "Serato DJ Pro", "Traktor Pro 3 Stable Edition", "djay Pro")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


async def eventually(check: Callable[[], Awaitable[bool]], deadline_s: float = 10.0) -> None:
    """Wait until `check()` holds, re-checking quickly; fail after `deadline_s`."""
    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(*argv: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(*argv)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def sees(app: str | None) -> bool:
    return await running_app(APPS) == app


@pytest.mark.parametrize("name", ["rekordbox", "REKORDBOX", "Serato DJ Pro"])
async def test_a_renamed_program_switches_detection_on_and_off(tmp_path: Path, name: str) -> None:
    program = tmp_path / name
    shutil.copy("/bin/sleep", program)
    expected = next(app for app in APPS if app.lower() == name.lower())
    assert await running_app(APPS) is None
    async with running(str(program), "300") as process:
        await eventually(lambda: sees(expected))
        process.kill()
        await process.wait()
        await eventually(lambda: sees(None))


@linux_only
async def test_a_name_longer_than_comm_is_read_from_the_command_line(tmp_path: Path) -> None:
    program = tmp_path / "Traktor Pro 3 Stable Edition"
    shutil.copy("/bin/sleep", program)
    async with running(str(program), "300"):
        await eventually(lambda: sees("Traktor Pro 3 Stable Edition"))
    await eventually(lambda: sees(None))


@linux_only
async def test_a_process_that_renames_itself_is_seen() -> None:
    # prctl(PR_SET_NAME) changes comm only; argv[0] stays the Python interpreter.
    child = (
        "import ctypes, sys, time\n"
        "ctypes.CDLL(None).prctl(15, b'djay Pro', 0, 0, 0)\n"
        "print('renamed', flush=True)\n"
        "time.sleep(300)\n"
    )
    async with running(sys.executable, "-c", child):
        await eventually(lambda: sees("djay Pro"))
    await eventually(lambda: sees(None))


def test_matching_is_case_insensitive_and_exact() -> None:
    assert match_app(APPS, ["bash", "Rekordbox"]) == "rekordbox"
    assert match_app(APPS, ["rekordbox-helper", "serato"]) is None
    assert match_app(APPS, ["Serato DJ Pro.exe"]) == "Serato DJ Pro"
    assert match_app(APPS, ["traktor pro 3 s"]) == "Traktor Pro 3 Stable Edition"  # cut comm
    assert match_app([], ["rekordbox"]) is None


def test_macos_ps_output_is_read_by_basename() -> None:
    text = (
        "/sbin/launchd\n"
        "/Applications/rekordbox 6/rekordbox.app/Contents/MacOS/rekordbox\n"
        "/Applications/Serato DJ Pro.app/Contents/MacOS/Serato DJ Pro\n"
        "  \n"
    )
    names = parse_ps_comm(text)
    assert names == {"launchd", "rekordbox", "Serato DJ Pro"}
    assert match_app(APPS, names) == "rekordbox"


@pytest.mark.skipif(shutil.which("ps") is None, reason="no ps")
async def test_the_ps_scan_sees_a_renamed_program(tmp_path: Path) -> None:
    # The macOS path, run wherever ps exists (procps on Linux prints comm without the path).
    program = tmp_path / "rekordbox"
    shutil.copy("/bin/sleep", program)
    async with running(str(program), "300"):

        async def seen() -> bool:
            return match_app(APPS, await _ps_process_names()) == "rekordbox"

        await eventually(seen)
