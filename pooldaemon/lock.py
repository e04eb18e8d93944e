"""One daemon per state directory: an flock held for the life of the process (docs/reliability.md
S4)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from pooldaemon.errors import PoolDaemonError

LOCK_NAME = "pooldaemon.lock"


class AlreadyRunning(PoolDaemonError):
    """Another pooldaemon holds the state directory."""

    code = "already_running"
    http_status = 409

    def __init__(self, message: str, *, pid: int | None) -> None:
        super().__init__(message, detail={"pid": pid})
        self.pid = pid


class InstanceLock:
    """`flock(LOCK_EX | LOCK_NB)` on `state_dir/pooldaemon.lock`, with our pid written inside.

    The lock file is never deleted: unlinking a lock file lets a third process lock a fresh inode
    while a second one still holds the old one. The kernel drops the lock when the process dies,
    so a crash never leaves a stale lock behind.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning naming the pid that holds it."""
        if self._fd is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = read_pid(self.path)
            holder = f"pid {pid}" if pid else "pid unknown"
            raise AlreadyRunning(
                f"pooldaemon is already running ({holder}) for state dir {self.state_dir}",
                pid=pid,
            ) from None
        # Only the holder writes: a reader that sees an empty file is looking at a start-up.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (process exit does this too)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the only descriptor releases the flock


def read_pid(path: Path) -> int | None:
    """The pid recorded in a lock file, if it holds one."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
