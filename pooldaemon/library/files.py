"""A library file on disk as the audit and heal see it: looked at read-only, put back in one
rename (docs/interface.md §8, docs/reliability.md L2-L4)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pooldaemon.audiohash import read_audio
from pooldaemon.fsutil import fsync_dir


@dataclass(frozen=True, slots=True)
class Seen:
    """A library file as the audit found it."""

    missing: bool = False
    #: Written to while it was read (DJ software saving tags): no verdict this time.
    changing: bool = False
    size: int | None = None
    mtime_ns: int | None = None
    inode: int | None = None
    audio_hash: str | None = None
    problem: str | None = None


def same_stat(entry: dict[str, Any]) -> bool:
    """Whether the file still has the size, mtime and inode recorded in its library entry."""
    try:
        st = os.stat(entry["path"])
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns, st.st_ino) == (
        entry["size"],
        entry["mtime_ns"],
        entry["inode"],
    )


def _open_read_only(path: str, flags: int) -> int:
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)


def look(path: str, read: bool) -> Seen:
    """A library file as it is now: missing, or its stat and (when `read`) audio checksum."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Seen(missing=True)
    except OSError as err:
        return Seen(problem=f"cannot reach the file: {err.strerror or err}")
    if stat.S_ISDIR(st.st_mode):
        # An album's folder (Harvest ZIP sets): its presence is what is checked; "" is the
        # checksum of "a folder", so it is not computed again.
        return Seen(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, audio_hash="")
    if not stat.S_ISREG(st.st_mode):
        return Seen(problem="no longer a regular file")
    if not read:
        return Seen(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)
    try:
        with open(path, "rb", opener=_open_read_only) as fh:
            now = os.fstat(fh.fileno())
            if not stat.S_ISREG(now.st_mode):
                return Seen(problem="no longer a regular file")
            audio = read_audio(fh, now.st_size, path)
            after = os.fstat(fh.fileno())
    except OSError as err:
        return Seen(problem=f"cannot read the file: {err.strerror or err}")
    if (after.st_size, after.st_mtime_ns) != (now.st_size, now.st_mtime_ns):
        return Seen(changing=True)
    return Seen(
        size=now.st_size,
        mtime_ns=now.st_mtime_ns,
        inode=now.st_ino,
        audio_hash=audio.audio_hash,
        problem=audio.problem,
    )


def put_back(source: str, target: str) -> None:
    """The healed file replaces what is at `target` in one rename (same folder tree: the
    download folder), made durable."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    fsync_dir(Path(target).parent)
    if Path(source).parent != Path(target).parent:
        fsync_dir(Path(source).parent)
