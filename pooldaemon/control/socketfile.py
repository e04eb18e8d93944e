"""The control socket's file: a private directory, a stale socket cleared, a 0600 bind
(docs/reliability.md S1, S2)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
from pathlib import Path

from pooldaemon.errors import PoolDaemonError


class SocketSetupError(PoolDaemonError):
    """The control socket cannot be created safely; the daemon does not start."""

    code = "socket"


def sun_path_limit() -> int:
    """Longest socket path in bytes (sizeof sun_path less the NUL): 107 Linux, 103 BSD/macOS."""
    return 107 if sys.platform.startswith("linux") else 103


def check_socket_path(path: Path) -> None:
    length = len(os.fsencode(path))
    if length > sun_path_limit():
        raise SocketSetupError(
            f"socket path {path} is {length} bytes; this platform allows at most "
            f"{sun_path_limit()} (set daemon.socket_path to a shorter path)"
        )


def _check_directory(directory: Path) -> None:
    """Create the socket's directory 0700, or refuse one others could write or read (S2)."""
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise SocketSetupError(f"socket directory {directory} is not a plain directory")
    if st.st_uid != os.getuid():
        raise SocketSetupError(
            f"socket directory {directory} is owned by uid {st.st_uid}, not by you "
            f"(uid {os.getuid()}); choose another daemon.socket_path"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise SocketSetupError(
            f"socket directory {directory} has mode {mode:04o}; it must be private to you: "
            f"run `chmod 700 {directory}` or choose another daemon.socket_path"
        )


def _clear_stale(path: Path) -> None:
    """Remove a dead socket of ours; refuse a live one or anything that is not ours (S2)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket; move it away or remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(os.fspath(path))
    except OSError as err:
        if err.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise SocketSetupError(f"cannot tell whether {path} is in use: {err}") from err
    else:
        raise SocketSetupError(f"another daemon is listening on {path}")
    finally:
        probe.close()
    if st.st_uid != os.getuid():
        raise SocketSetupError(
            f"{path} is a stale socket owned by uid {st.st_uid}, not you; remove it by hand"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def bind_socket(path: Path) -> socket.socket:
    """A listening AF_UNIX socket at `path`, mode 0600, in a 0700 directory we own."""
    check_socket_path(path)
    _check_directory(path.parent)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # bind() creates the file with the umask applied: a restrictive umask closes the window
    # between bind and chmod in which another user could connect (the moby umask race).
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError as err:
        sock.close()
        raise SocketSetupError(f"cannot bind the control socket {path}: {err}") from err
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock
