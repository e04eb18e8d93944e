"""Replace an export file atomically, and never over a file the user edited by hand.

docs/reliability.md E1: a kill while an export is written leaves the old file or the new one,
never a torn one; an exported file a user edited survives, and ours lands beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pooldaemon.exports.reuse import Layout
from pooldaemon.fsutil import fsync_dir, full_fsync

# Exports are read by DJ software running as the same user; other users may read them too,
# like any file in ~/Music.
_MODE = 0o644
_BUFFER_BYTES = 1 << 20

#: A file's inode, size, mtime and ctime (ns): what an edit, a copy over it or a replacement
#: changes. The ctime cannot be set back by a user's tools, so a file whose identity is still
#: the one recorded right after writing it holds the bytes written.
Identity = tuple[int, int, int, int]


def identity(path: Path) -> Identity | None:
    """`Identity` of the file at `path`, or None when there is none."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return _identity(info)


def _identity(info: os.stat_result) -> Identity:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class Written:
    """One export file on disk: where it went, what it holds, and why it went there."""

    format: str  # "m3u8" | "rekordbox" | "traktor" | "serato"
    target: Path  # the path the config asked for
    path: Path  # where the bytes went: `target`, or beside it when the user edited `target`
    digest: str  # SHA-256 (hex) of the bytes written; the caller keeps it for the next run
    # False when the file already held exactly these bytes and was left alone (not rewritten).
    replaced: bool = True
    # Where the parts of the file are, for the next export to copy from.
    layout: Layout | None = None
    # `identity` of `path` right after the write (None: it changed at once).
    identity: Identity | None = None

    @property
    def beside(self) -> bool:
        """Whether the user's own edit of `target` kept us from replacing it."""
        return self.path != self.target


def beside_path(target: Path) -> Path:
    """`NAME (pooldaemon).EXT` next to `target`: where ours goes when the user owns `target`."""
    return target.with_name(f"{target.stem} (pooldaemon){target.suffix}")


def file_digest(path: Path) -> str | None:
    """SHA-256 of the file at `path`, or None when there is none."""
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def write_export(
    fmt: str,
    target: Path,
    chunks: Iterable[bytes] | Callable[[BinaryIO | None], Iterable[bytes]],
    last_digest: str | None,
) -> Written:
    """Write `chunks` to `target`, or beside it when `target` is not what we wrote last.

    `last_digest` is the SHA-256 of what pooldaemon wrote to `target` last time (None: never).
    A file at `target` with any other content is the user's, and stays as it is. `chunks` may
    be a function given the file being replaced, open, when it still holds exactly what we
    wrote last (else None): a collection copies its unchanged parts from it.
    """
    with contextlib.ExitStack() as stack:
        old, on_disk = _open_digest(target, stack)
        path = target
        if on_disk is not None and on_disk != last_digest:
            path = beside_path(target)
            old, on_disk = _open_digest(path, stack)
        # What we wrote last is still there: identical new bytes leave it as it is (same inode,
        # same mtime), so DJ software and backups see no change.
        ours = on_disk is not None and on_disk == last_digest
        if callable(chunks):
            chunks = chunks(old if ours else None)
        digest, replaced = replace_atomically(path, chunks, keep_if=on_disk if ours else None)
        now: Identity | None = None
        if not replaced:
            assert old is not None
            now = _identity(os.fstat(old.fileno()))
    if replaced:
        now = identity(path)
    return Written(fmt, target, path, digest, replaced, identity=now)


def splice_export(
    fmt: str,
    target: Path,
    before: Written,
    chunks: Callable[[BinaryIO], Iterable[bytes]],
) -> Written | None:
    """Write `target` again from `before`, the file written there last, given it open.

    Only when that file is still exactly as written (its `identity` unchanged: nobody edited,
    replaced or touched it since); None otherwise, and nothing is written.
    """
    if before.identity is None or before.beside:
        return None  # the user's file is at `target`: a full export looks at it again
    with contextlib.ExitStack() as stack:
        try:
            old = stack.enter_context(before.path.open("rb"))
        except FileNotFoundError:
            return None
        if _identity(os.fstat(old.fileno())) != before.identity:
            return None
        digest, replaced = replace_atomically(before.path, chunks(old), keep_if=before.digest)
    if not replaced:
        return dataclasses.replace(before, replaced=False)
    return Written(fmt, target, before.path, digest, identity=identity(before.path))


def _open_digest(path: Path, stack: contextlib.ExitStack) -> tuple[BinaryIO | None, str | None]:
    """The file at `path` open for reading, and its SHA-256; (None, None) when there is none.

    Kept open: what is read later is the file that was hashed, even if it is replaced meanwhile.
    """
    try:
        handle = stack.enter_context(path.open("rb"))
    except FileNotFoundError:
        return None, None
    return handle, hashlib.file_digest(handle, "sha256").hexdigest()


def replace_atomically(
    path: Path, chunks: Iterable[bytes], keep_if: str | None = None
) -> tuple[str, bool]:
    """Stream `chunks` into a temp file beside `path`, fsync, rename over `path`.

    Returns the SHA-256 of the bytes and whether `path` was replaced: when their digest is
    `keep_if` (the caller knows `path` holds exactly that), the temp file is dropped unsynced
    and `path` is left untouched. The temp file is in the same directory so the rename never
    crosses a filesystem; a kill before the rename leaves the old `path` untouched (and a
    `.NAME.*.tmp` the next run removes).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    hasher = hashlib.sha256()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _MODE)
    try:
        try:
            os.fchmod(fd, _MODE)
            with os.fdopen(fd, "wb", buffering=_BUFFER_BYTES, closefd=False) as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
            digest = hasher.hexdigest()
            if digest != keep_if:
                full_fsync(fd)
        finally:
            os.close(fd)
        if digest == keep_if:
            tmp.unlink()
            return digest, False
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return digest, True


def _remove_stale_temps(path: Path) -> None:
    """Remove temp files a killed export left next to `path` (only exports write these names)."""
    prefix = f".{path.name}."
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path.parent):
            name = entry.name
            if name.startswith(prefix) and name.endswith(".tmp") and len(name) == len(prefix) + 16:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
