"""Gig mode's eyes: is one of the `[gig] apps` DJ programs running right now?

docs/interface.md §10: process names are matched case-insensitively, on Linux and macOS. A scan
reads only names (Linux: /proc/<pid>/comm and the basename of argv[0]; macOS: `ps -axo comm=`),
so one costs a few milliseconds of CPU and can run every couple of seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

# Linux keeps only the first 15 bytes of a process name in /proc/<pid>/comm.
_COMM_MAX = 15
_PS_TIMEOUT_S = 5.0


def _normal(name: str) -> str:
    name = name.strip().lower()
    return name.removesuffix(".exe")


def match_app(apps: Sequence[str], process_names: Iterable[str]) -> str | None:
    """The first of `apps` (as configured) that one of `process_names` names, or None."""
    names = {_normal(name) for name in process_names if name.strip()}
    for app in apps:
        wanted = _normal(app)
        if wanted in names:
            return app
        # A comm name cut at 15 bytes ("Serato DJ Pro 3" from a longer name) still counts.
        if len(wanted) > _COMM_MAX and wanted[:_COMM_MAX] in names:
            return app
    return None


def linux_process_names(proc: Path = Path("/proc")) -> set[str]:
    """Every process's comm and argv[0] basename, from /proc (processes may vanish meanwhile)."""
    names: set[str] = set()
    try:
        entries = os.listdir(proc)
    except OSError:
        return names
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/comm", "rb") as handle:
                names.add(handle.read().decode("utf-8", "replace").rstrip("\n"))
            with open(f"{proc}/{entry}/cmdline", "rb") as handle:
                argv0 = handle.read(4096).split(b"\0", 1)[0]
        except OSError:  # gone, or not ours to read
            continue
        if argv0:
            names.add(os.path.basename(argv0.decode("utf-8", "replace")))
    return names


def parse_ps_comm(text: str) -> set[str]:
    """Process names from `ps -axo comm=` (macOS prints each executable's full path)."""
    names: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if line:
            names.add(line.rsplit("/", 1)[-1])
    return names


async def _ps_process_names() -> set[str]:
    process = await asyncio.create_subprocess_exec(
        "ps",
        "-axo",
        "comm=",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), _PS_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return parse_ps_comm(out.decode("utf-8", "replace"))


async def process_names() -> set[str]:
    """The names of the running processes; raises OSError or TimeoutError when `ps` fails."""
    if sys.platform.startswith("linux"):
        return await asyncio.to_thread(linux_process_names)
    return await _ps_process_names()


async def running_app(apps: Sequence[str]) -> str | None:
    """The first configured DJ app that is running now, or None."""
    if not apps:
        return None
    return match_app(apps, await process_names())
