"""The drop folder's filesystem side: listing, reading once, choosing names, moving without loss.

Blocking functions, run in threads by the watcher. Nothing here deletes or replaces a user's file:
entries are moved with `link()` then `unlink()` (or `rename()` after an existence check where the
filesystem has no hard links), and result files are written to a temporary file, fsynced, then
linked into place. See `pooldaemon.drop` for the order of steps and why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pooldaemon.drop.parse import MAX_FILE_BYTES, cap_text, is_request_name
from pooldaemon.fsutil import fsync_dir, full_fsync, link_no_clobber
from pooldaemon.store import drops

PROCESSED = "processed"
REJECTED = "rejected"
RESULT_SUFFIX = ".result.json"
ERRORS_SUFFIX = ".errors.txt"
#: Temporary files of ours (result files before they are linked into place).
_TMP_PREFIX = ".pooldaemon-"
_NAME_MAX = 255
#: What identifies a directory entry's state: a change in any of these restarts the wait.
Sig = tuple[int, int, int, int, int, int, int]


def _sig(st: os.stat_result) -> Sig:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A dropped entry as read once: its content, or why it was not read."""

    name: str
    dev: int
    ino: int
    data: bytes | None = None
    problem: str | None = None


def list_dir(drop_dir: Path) -> tuple[dict[str, Sig], list[str], tuple[int, int]]:
    """Request-file candidates with their signatures, names that are not valid UTF-8, and the
    folder's own (dev, inode)."""
    found: dict[str, Sig] = {}
    bad_names: list[str] = []
    folder = os.stat(drop_dir)
    with os.scandir(drop_dir) as entries:
        for entry in entries:
            if not is_request_name(entry.name):
                continue
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                bad_names.append(entry.name)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            found[entry.name] = _sig(st)
    return found, bad_names, (folder.st_dev, folder.st_ino)


def _snapshot(path: Path, seen: Sig) -> Snapshot | None:
    """Read the entry if it is still what was seen stable; None if it changed or went away."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if _sig(st) != seen:
        return None
    name, me = path.name, os.geteuid()

    def refused(problem: str) -> Snapshot:
        return Snapshot(name, st.st_dev, st.st_ino, problem=problem)

    if stat.S_ISLNK(st.st_mode):
        try:
            target = cap_text(os.readlink(path))
        except OSError:
            target = "?"
        return refused(
            f"it is a symbolic link (to {target!r}); links are never followed, so it was not "
            "read: drop the file itself"
        )
    if not stat.S_ISREG(st.st_mode):
        return refused(f"it is not a regular file but {_file_type(st.st_mode)}")
    if st.st_uid != me:
        return refused(
            f"it belongs to another user (uid {st.st_uid}); only files of uid {me} are read"
        )
    if st.st_size > MAX_FILE_BYTES:
        return refused(_too_big(st.st_size))
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:  # replaced by a symlink since lstat: look again next pass
            return None
        raise
    try:
        before = os.fstat(fd)
        if (before.st_dev, before.st_ino) != (st.st_dev, st.st_ino):
            return None
        chunks: list[bytes] = []
        left = MAX_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        return None  # written to while we read: not complete after all
    data = b"".join(chunks)
    if len(data) > MAX_FILE_BYTES:
        return refused(_too_big(len(data)))
    return Snapshot(name, st.st_dev, st.st_ino, data=data)


def snapshot_all(drop_dir: Path, seen: Mapping[str, Sig]) -> dict[str, Snapshot | Exception | None]:
    """`_snapshot` for each name of a batch; an error stays with its file."""
    snaps: dict[str, Snapshot | Exception | None] = {}
    for name, sig in seen.items():
        try:
            snaps[name] = _snapshot(drop_dir / name, sig)
        except Exception as err:
            snaps[name] = err
    return snaps


def _too_big(size: int) -> str:
    return (
        f"it is larger than 1 MiB ({size:,} bytes or more), so it was not read; "
        "split the requests into smaller files"
    )


def _file_type(mode: int) -> str:
    for test, label in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return label
    return "not a file"


def _split_name(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if stem else (name, "")


def _sidecar_suffix(dest: str) -> str:
    return RESULT_SUFFIX if dest.startswith(PROCESSED + "/") else ERRORS_SUFFIX


def _fit(stem: str, tail: str) -> str:
    """Shorten `stem` (on a character boundary) so that stem + tail fits in one name."""
    room = _NAME_MAX - len(tail.encode("utf-8"))
    data = stem.encode("utf-8")
    if len(data) <= room:
        return stem
    return data[: max(room, 1)].decode("utf-8", "ignore")


def _own_folder(path: Path) -> Path:
    """processed/ or rejected/, created if missing; never written through a symlink."""
    path.mkdir(exist_ok=True)
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise NotADirectoryError(f"{path} is not a directory (a symbolic link?): not written to")
    return path


def free_dest(drop_dir: Path, folder: str, name: str, reserved: set[str] | None = None) -> str:
    """`folder/NAME`, or `folder/STEM (2).EXT`, … : a name free together with its sidecar.

    Names in `reserved` (chosen for other files of the same batch) count as taken; the one
    chosen is added to it.
    """
    reserved = set() if reserved is None else reserved
    directory = _own_folder(drop_dir / folder)
    suffix = RESULT_SUFFIX if folder == PROCESSED else ERRORS_SUFFIX
    stem, ext = _split_name(name)
    number = 1
    while True:
        mark = "" if number == 1 else f" ({number})"
        candidate = _fit(stem, f"{mark}{ext}{suffix}") + mark + ext
        dest = f"{folder}/{candidate}"
        if (
            dest not in reserved
            and not os.path.lexists(directory / candidate)
            and not os.path.lexists(directory / (candidate + suffix))
        ):
            reserved.add(dest)
            return dest
        number += 1


def free_dests(drop_dir: Path, wanted: Sequence[tuple[str, str]]) -> list[str | Exception]:
    """`free_dest` for each (folder, name) of a batch, never the same name twice."""
    reserved: set[str] = set()
    chosen: list[str | Exception] = []
    for folder, name in wanted:
        try:
            chosen.append(free_dest(drop_dir, folder, name, reserved))
        except Exception as err:
            chosen.append(err)
    return chosen


class NameTaken(Exception):
    """The destination name was taken between choosing it and using it."""


def _same_entry(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _has_content(path: Path, data: bytes) -> bool:
    """True if `path` is a regular file holding exactly `data` (a result file of ours)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        got = b""
        while len(got) <= len(data):
            chunk = os.read(fd, len(data) + 1 - len(got))
            if not chunk:
                break
            got += chunk
        return got == data
    finally:
        os.close(fd)


def _write_temporary(directory: Path, data: bytes) -> Path:
    """A new temporary file of ours in `directory` holding `data` (not yet fsynced)."""
    tmp = directory / f"{_TMP_PREFIX}{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return tmp


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        full_fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, path: Path, data: bytes) -> bool:
    """Give the fsynced temporary `tmp` (holding `data`) the name `path`, never replacing one.

    Returns False when an identical file is already there (our own earlier attempt); raises
    NameTaken when a different one is. `tmp` is removed either way.
    """
    try:
        try:
            link_no_clobber(tmp, path)
            return True
        except FileExistsError:
            if _has_content(path, data):
                return False
            raise NameTaken(str(path)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_new(path: Path, data: bytes) -> bool:
    """Create `path` with `data`, durably and without replacing anything (see `_install`)."""
    tmp = _write_temporary(path.parent, data)
    try:
        _fsync_file(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return _install(tmp, path, data)


def _link_entry(src: Path, dest: Path) -> None:
    """Give the entry at `src` (a symlink itself, never its target) a second name `dest`."""
    try:
        # Only the daemon writes into processed/ and rejected/: no race with the rename fallback.
        link_no_clobber(src, dest)
    except FileExistsError:
        if _same_entry(src, dest):
            return
        raise NameTaken(str(dest)) from None


def _sidecar_path(drop_dir: Path, placement: drops.Placement) -> Path:
    dest = drop_dir / placement.dest
    return dest.with_name(dest.name + _sidecar_suffix(placement.dest))


def settle(drop_dir: Path, placement: drops.Placement) -> str:
    """Where an interrupted move stands: "present" (not moved), "moved", or "gone"."""
    try:
        st = os.lstat(drop_dir / placement.name)
        if (st.st_dev, st.st_ino) == (placement.dev, placement.ino):
            return "present"
    except FileNotFoundError:
        pass
    try:
        st = os.lstat(drop_dir / placement.dest)
    except FileNotFoundError:
        return "gone"
    if (st.st_dev, st.st_ino) != (placement.dev, placement.ino):
        return "gone"
    with contextlib.suppress(NameTaken):
        _write_new(_sidecar_path(drop_dir, placement), placement.sidecar.encode("utf-8"))
    return "moved"


#: What `place_all` reports per file: "moved", "gone", "taken" (choose another name) or the
#: error that stopped this one file.
PlaceOutcome = str | Exception


def place_all(drop_dir: Path, placements: Sequence[drops.Placement]) -> list[PlaceOutcome]:
    """Write each sidecar, then move each file, with one durability barrier per step.

    Order per file, as in the module docstring: sidecar data fsynced → sidecar linked → file
    linked into its folder → that folder fsynced → old name unlinked → drop_dir fsynced. The new
    name is durable before the old one goes, so a crash leaves two names, never none. Doing the
    fsyncs once per batch rather than once per file is what lets a flood drain quickly.
    """
    outcomes: list[PlaceOutcome] = ["" for _ in placements]
    temporaries: dict[int, Path] = {}
    try:
        for index, placement in enumerate(placements):
            try:
                where = settle(drop_dir, placement)
                if where != "present":
                    outcomes[index] = where
                    continue
                folder = _own_folder((drop_dir / placement.dest).parent)
                data = placement.sidecar.encode("utf-8")
                temporaries[index] = _write_temporary(folder, data)
            except Exception as err:
                outcomes[index] = err
        for index, tmp in list(temporaries.items()):
            try:
                _fsync_file(tmp)
            except Exception as err:
                outcomes[index] = err
                del temporaries[index]
        folders: set[Path] = set()
        for index, tmp in temporaries.items():
            placement = placements[index]
            side = _sidecar_path(drop_dir, placement)
            try:
                created = _install(tmp, side, placement.sidecar.encode("utf-8"))
            except NameTaken:
                outcomes[index] = "taken"
                continue
            except Exception as err:
                outcomes[index] = err
                continue
            dest = drop_dir / placement.dest
            try:
                _link_entry(drop_dir / placement.name, dest)
            except Exception as err:
                if created:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(side)
                outcomes[index] = "taken" if isinstance(err, NameTaken) else err
                continue
            outcomes[index] = "linked"
            folders.add(dest.parent)
        for folder in folders:
            fsync_dir(folder)
        for index, placement in enumerate(placements):
            if outcomes[index] == "linked":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(drop_dir / placement.name)
                outcomes[index] = "moved"
        if folders:
            fsync_dir(drop_dir)
    finally:
        for tmp in temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return outcomes


def remove_our_temporaries(drop_dir: Path) -> None:
    """Result files a crash left half-written: named by us, in our own folders."""
    for folder in (PROCESSED, REJECTED):
        directory = drop_dir / folder
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(_TMP_PREFIX) and entry.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
