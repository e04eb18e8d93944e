"""`pooldaemon demo` as a user runs it: a real process, exit 0, the queued tracks in the library
as media files, and nothing of it left running afterwards (docs/interface.md §1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import clean_env

MEDIA = {".mp3", ".mp4", ".m4a", ".wav", ".aif", ".aiff", ".flac", ".mov"}
#: What the demo's simulated pools have queued: CrateQ 4, Promo Only 3, Harvest's favourites.
AT_LEAST = 4 + 3 + 1


def _group_gone(pgid: int, timeout_s: float = 10.0) -> bool:
    """Whether every process of the group has exited (helpers end just after their parent)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _group_members(pgid: int) -> str:
    ps = subprocess.run(["ps", "-eo", "pid,pgid,stat,args"], capture_output=True, text=True)
    return "\n".join(line for line in ps.stdout.splitlines() if line.split()[1:2] == [str(pgid)])


def test_the_demo_downloads_everything_and_leaves_nothing_running(tmp_path: Path) -> None:
    # Its own session: every process it starts (the daemon's workers included) is in its group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldaemon.cli.daemon", "demo", "--dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clean_env(COLUMNS="120"),
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text + (tmp_path / "pooldaemon.log").read_text()[-4000:]
    assert "Done." in text
    library = tmp_path / "library"
    files = [
        path
        for path in library.rglob("*")
        if path.is_file() and ".pooldaemon" not in path.relative_to(library).parts
    ]
    media = [path for path in files if path.suffix.lower() in MEDIA]
    assert len(media) >= AT_LEAST, sorted(str(p.relative_to(library)) for p in files)
    assert all(path.stat().st_size > 0 for path in media)
    assert {path.relative_to(library).parts[0] for path in media} >= {
        "crateq",
        "promoonly",
        "harvest",
    }
    # Nothing left running: not the daemon, not a decoder process, not a simulator.
    assert _group_gone(proc.pid), _group_members(proc.pid)
