"""Reading the user's folders for adoption: a walk that never loops, and files read only.

docs/interface.md §8 and docs/reliability.md L1: adopting never moves, renames, retags or
deletes a file, and never opens anything but a regular file. So the walk stats before it opens
(a FIFO, a device or a socket is reported, never opened), follows a symbolic link to a folder
only the first time it reaches that folder (a loop is reported), and each file is opened
read-only (`O_RDONLY | O_NONBLOCK`), checked again with `fstat`, and read by mutagen from that
file object. A name that is not UTF-8 (Latin-1 bytes from an old disk), an empty, unreadable,
cut-off or still-growing file is one problem line; the scan goes on.

`read_files` is a pure function of picklable arguments: the library runs it in a worker
process (`offload.py`), beside the event loop.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pooldaemon import songkey
from pooldaemon.audiohash import EXTENSIONS, audio_problem

#: Extensions read as video: their versions carry "video" as the mirror's video tracks do.
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov"})
_NUMBER = re.compile(r"^\s*\d{1,3}(?:\s*[-._)]\s*|\s+)")


@dataclass(frozen=True, slots=True)
class Found:
    """A regular media file the walk found, as `stat` saw it."""

    path: str
    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True, slots=True)
class Problem:
    """A file or folder the scan could not use, and why (docs/interface.md §8 `problems`)."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class FileRead:
    """What reading one file gave: the song from its tags and from its name, its length."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    song_key: str | None = None
    version: str | None = None
    name_key: str | None = None
    name_version: str | None = None
    length_s: float | None = None
    problem: str | None = None


def shown(path: str) -> str:
    """A path for messages and JSON: bytes that are not UTF-8 shown as `\\xe9` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENOENT:
        return "vanished, or a broken symbolic link"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "cannot read: permission denied"
    return f"cannot read: {err.strerror or err}"


def walk(roots: Iterable[str]) -> tuple[list[Found], list[Problem]]:
    """Every media file under `roots` (by extension), and what could not be walked."""
    found: list[Found] = []
    problems: list[Problem] = []
    seen: set[tuple[int, int]] = set()
    folders: list[str] = []

    def consider(path: str, st: os.stat_result) -> None:
        if os.path.splitext(path)[1].lower() not in EXTENSIONS:
            return
        if not _utf8(path):
            problems.append(Problem(shown(path), "the file name is not UTF-8 text: not adopted"))
        elif not stat.S_ISREG(st.st_mode):
            problems.append(Problem(path, "not a regular file (a pipe, device or socket)"))
        else:
            found.append(Found(path, st.st_size, st.st_mtime_ns, st.st_ino))

    for root in roots:
        try:
            st = os.stat(root)
        except OSError as err:
            problems.append(Problem(shown(root), _reason(err)))
            continue
        if stat.S_ISDIR(st.st_mode):
            seen.add((st.st_dev, st.st_ino))
            folders.append(root)
        else:
            consider(root, st)
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as err:
            problems.append(Problem(shown(folder), _reason(err)))
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue  # hidden: macOS "._" shadows, our own work area, editors' swap files
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as err:
                if os.path.splitext(entry.name)[1].lower() in EXTENSIONS or entry.is_symlink():
                    problems.append(Problem(shown(entry.path), _reason(err)))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    if entry.is_symlink():
                        problems.append(
                            Problem(shown(entry.path), "symbolic link loop: not followed again")
                        )
                    continue
                seen.add(key)
                folders.append(entry.path)
            else:
                consider(entry.path, st)
    return found, problems


def read_files(files: Sequence[tuple[str, int, int, int]]) -> list[FileRead]:
    """Read each (path, size, mtime_ns, inode) the walk found (see the module)."""
    return [read_file(*item) for item in files]


def _open_read_only(path: str, flags: int) -> int:
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)


def read_file(path: str, size: int, mtime_ns: int, inode: int) -> FileRead:
    """One file's song from its tags and name, and its length; or why it cannot be adopted."""
    by_name = name_song(path)
    base = FileRead(path, size, mtime_ns, inode, name_key=by_name[0], name_version=by_name[1])
    if size == 0:
        return _with(base, problem="empty file (0 bytes)")
    try:
        with open(path, "rb", opener=_open_read_only) as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):
                return _with(base, problem="not a regular file (a pipe, device or socket)")
            if (before.st_size, before.st_mtime_ns) != (size, mtime_ns):
                return _with(base, problem="changed while being scanned (still being written?)")
            problem = audio_problem(fh, before.st_size, path)
            tags = _tags(fh, path)
            after = os.fstat(fh.fileno())
    except OSError as err:
        return _with(base, problem=_reason(err))
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return _with(base, problem="changed while being scanned (still being written?)")
    if problem is None and isinstance(tags, str):
        problem = tags
    if problem is not None:
        return _with(base, problem=problem)
    assert not isinstance(tags, str)
    artist, title, length = tags
    song = _song(artist, title, path) if artist and title else (None, None)
    return _with(base, song_key=song[0], version=song[1], length_s=length)


def _with(base: FileRead, **changes: Any) -> FileRead:
    fields = {name: getattr(base, name) for name in FileRead.__slots__}
    fields.update(changes)
    return FileRead(**fields)


def _song(artist: str, title: str, path: str) -> tuple[str, str] | tuple[None, None]:
    video = os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS
    parsed = songkey.parse(artist, title, media="video" if video else None)
    if not parsed.key.strip("/") or parsed.key.startswith("/") or parsed.key.endswith("/"):
        return None, None
    return parsed.key, parsed.version.label


def name_song(path: str) -> tuple[str, str] | tuple[None, None]:
    """The song of a file named `Artist - Title (Version).ext` (a leading track number
    dropped); (None, None) for other names."""
    stem = os.path.splitext(os.path.basename(path))[0]
    stem = _NUMBER.sub("", stem, count=1)
    artist, sep, title = stem.partition(" - ")
    if not sep or not artist.strip() or not title.strip():
        return None, None
    return _song(artist, title, path)


_TAG_KEYS = {
    "artist": ("TPE1", "\xa9ART", "artist", "ARTIST", "Author"),
    "title": ("TIT2", "\xa9nam", "title", "TITLE", "Title"),
}


def _tags(fh: Any, path: str) -> tuple[str | None, str | None, float | None] | str:
    """(artist, title, length) from the file's tags; a reason when mutagen cannot read them."""
    import mutagen

    try:
        media = mutagen.File(fh)
    except Exception as err:  # docs/reliability.md L1: one bad file never ends the scan
        return f"tags unreadable: {err}"
    if media is None:
        return None, None, None
    length = getattr(media.info, "length", None)
    tags = media.tags
    values = {name: _first(tags, keys) for name, keys in _TAG_KEYS.items()}
    seconds = float(length) if isinstance(length, int | float) and length > 0 else None
    return values["artist"], values["title"], seconds


def _first(tags: Any, keys: Iterable[str]) -> str | None:
    if tags is None:
        return None
    for key in keys:
        try:
            value = tags.get(key)
        except (KeyError, ValueError, TypeError):
            continue
        if value is None:
            continue
        text = getattr(value, "text", value)
        if isinstance(text, list | tuple):
            text = text[0] if text else None
        if text is not None and str(text).strip():
            return str(text).strip()
    return None
