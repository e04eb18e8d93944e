"""Durable-filesystem helpers: fsync that really flushes, atomic writes, space and mounts."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import sys
from pathlib import Path

# Filesystems that cannot fsync a directory or preallocate say so with these; that is not a
# failure of the data (unlike EIO, which docs/reliability.md D2 says is never retried and ignored).
_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.ENOSYS}
)
#: `link()` is not available here (FAT and exFAT sticks, some network shares, other devices).
NO_HARD_LINKS = frozenset(
    {
        errno.EPERM,
        errno.EXDEV,
        errno.EMLINK,
        errno.ENOSYS,
        errno.EOPNOTSUPP,
        getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
    }
)


def full_fsync(fd: int) -> None:
    """Flush a file's data to stable storage: `F_FULLFSYNC` on macOS (docs/reliability.md)."""
    if sys.platform == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError as err:
            # SMB and some external drives refuse F_FULLFSYNC; plain fsync is the best left.
            if err.errno not in _UNSUPPORTED | {errno.ENOTTY}:
                raise
    os.fsync(fd)


def fsync_dir(path: Path | str | int) -> None:
    """Make a directory's entries (creates, renames) durable; `path` may be an open dir fd."""
    if isinstance(path, int):
        _fsync_dir_fd(path)
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _fsync_dir_fd(fd)
    finally:
        os.close(fd)


def _fsync_dir_fd(fd: int) -> None:
    """fsync a directory fd, tolerating filesystems that cannot sync directories."""
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _UNSUPPORTED:
            raise


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, never a mix.

    The temporary file lives in the same directory (docs/reliability.md D2: a rename never crosses a
    filesystem), gets exactly `mode` whatever the umask (curl CVE-2022-32207: a rewrite must not
    widen permissions), is fsynced before the rename, and the directory after it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            full_fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def preallocate(fd: int, size: int) -> None:
    """Reserve `size` bytes for a file: ENOSPC now, not mid-chunk (docs/reliability.md D1).

    The file's length becomes `size`: progress must be read from the store, not from the length.
    Raises OSError(ENOSPC) without touching the disk when the space is plainly not there;
    filesystems without preallocation are silently skipped.
    """
    if size <= 0 or not hasattr(os, "posix_fallocate"):
        return
    st = os.fstat(fd)
    before = st.st_size
    vfs = os.fstatvfs(fd)
    if stat.S_ISREG(st.st_mode) and size - before > vfs.f_bavail * vfs.f_frsize:
        raise OSError(errno.ENOSPC, f"need {size - before} more bytes, the disk has less free")
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            return
        if err.errno == errno.ENOSPC:
            # ext4 keeps the blocks it managed to allocate before failing: hand them back, or a
            # failed preallocation itself fills the disk.
            os.ftruncate(fd, before)
        raise


def existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_space(path: Path) -> int:
    """Bytes a normal user may still write on the filesystem that holds (or will hold) `path`."""
    return shutil.disk_usage(existing_ancestor(path)).free


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path`, for "disk full: need X on <mount>"."""
    current = Path(os.path.realpath(existing_ancestor(path)))
    dev = current.stat().st_dev
    while current != current.parent:
        if current.parent.stat().st_dev != dev:
            return current
        current = current.parent
    return current


def same_filesystem(a: Path, b: Path) -> bool:
    """Whether a rename from `a` to `b` can stay on one filesystem (docs/reliability.md D2)."""
    return existing_ancestor(a).stat().st_dev == existing_ancestor(b).stat().st_dev


def link_no_clobber(src: Path, dest: Path) -> bool:
    """Give the entry `src` (a symlink itself, never its target) the name `dest`, never
    replacing an entry there: FileExistsError when `dest` is taken.

    True when hard-linked (`src` keeps its name too); False when the filesystem has no hard
    links and `src` was renamed after a check that `dest` is free. Only the daemon writes
    where this is used, so the gap between the check and the rename is not a real race.
    """
    try:
        os.link(src, dest, follow_symlinks=False)
        return True
    except FileExistsError:
        raise
    except NotImplementedError:
        pass
    except OSError as err:
        if err.errno not in NO_HARD_LINKS:
            raise
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "name taken", str(dest))
    os.rename(src, dest)
    return False
