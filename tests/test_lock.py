"""The single-instance lock on the state directory (docs/reliability.md S4)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pooldaemon.lock import AlreadyRunning, InstanceLock, read_pid

HOLD = """
import sys, time
from pathlib import Path
from pooldaemon.lock import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_acquire_creates_private_lock_file_with_our_pid(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lock = InstanceLock(state)
    lock.acquire()
    try:
        assert lock.held
        assert (state / "pooldaemon.lock").stat().st_mode & 0o777 == 0o600
        assert state.stat().st_mode & 0o777 == 0o700
        assert read_pid(state / "pooldaemon.lock") == __import__("os").getpid()
    finally:
        lock.release()


def test_second_lock_on_same_dir_is_refused_naming_pid(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as caught:
            InstanceLock(tmp_path).acquire()
        pid = __import__("os").getpid()
        assert caught.value.pid == pid
        assert str(caught.value) == (
            f"pooldaemon is already running (pid {pid}) for state dir {tmp_path}"
        )
    finally:
        first.release()


def test_release_lets_the_next_one_in_and_keeps_the_file(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    first.release()
    assert (tmp_path / "pooldaemon.lock").exists()  # never unlinked: no inode race
    assert read_pid(tmp_path / "pooldaemon.lock") is None
    second = InstanceLock(tmp_path)
    second.acquire()
    second.release()


def test_lock_held_by_another_process_then_freed_by_its_death(
    tmp_path: Path, stop_process: list[subprocess.Popen[bytes]]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=False
    )
    stop_process.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"locked\n"
    with pytest.raises(AlreadyRunning, match=rf"\(pid {proc.pid}\)"):
        InstanceLock(tmp_path).acquire()
    # SIGKILL leaves no chance to clean up: the kernel drops the flock anyway.
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = InstanceLock(tmp_path)
    lock.acquire()
    lock.release()
