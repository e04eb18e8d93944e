"""Safe extraction of Harvest's ZIP parts into a staging folder renamed into place.

docs/interface.md §5.

Everything that can be judged from the archive's directory is judged before a byte is written
(names, links, methods, encryption, overlaps, declared sizes); then every entry is read once to
check its CRC and its real size; only then is anything written, into a fresh staging folder in
the work area, counted as written; the folder is renamed into the library when every file in it
is fsynced. On any refusal the staging folder is deleted and the archives are left as they were.
"""

from __future__ import annotations

import contextlib
import errno
import lzma
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from pooldaemon.downloader.paths import ensure_dirs, sanitize_component, unique_path
from pooldaemon.errors import ArchiveDamaged, ArchiveRejected
from pooldaemon.fsutil import fsync_dir, full_fsync, same_filesystem

CHUNK_BYTES = 1 << 20
#: Below this an entry's ratio is not judged: a few KB of spaces in a .txt compress 100:1 and
#: harm nobody; a bomb has to produce far more than this to matter.
RATIO_FLOOR_BYTES = 64 * 1024

_SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_METHOD_NAMES = {
    1: "Shrink",
    2: "Reduce",
    3: "Reduce",
    4: "Reduce",
    5: "Reduce",
    6: "Implode",
    9: "Deflate64",
    10: "PKWARE DCL Implode",
    18: "IBM TERSE",
    19: "IBM LZ77",
    93: "Zstandard",
    95: "XZ",
    96: "JPEG",
    97: "WavPack",
    98: "PPMd",
    99: "AES",
}
# Finder and Explorer droppings: never worth a place in a DJ's library.
_JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_DRIVE = re.compile(r"^[A-Za-z]:")
# Errors zipfile and its decompressors raise for bad bytes (not for I/O trouble).
_DECODE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    struct.error,
    ValueError,
    NotImplementedError,
)


@dataclass(frozen=True)
class _Entry:
    """One archive member and where it would land, relative to the destination folder."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # sanitized path components
    is_dir: bool
    junk: bool

    @property
    def key(self) -> tuple[str, ...]:
        """What two entries collide on: case-insensitive filesystems see one name (N2)."""
        return tuple(p.casefold() for p in self.parts)


class _Budget:
    """Counts bytes coming out of the archive, across all its parts (docs/reliability.md Z2)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, n: int, label: str, name: str) -> None:
        """Account for `n` more bytes, refusing once the limit is passed."""
        self.used += n
        if self.used > self.limit:
            raise ArchiveRejected(
                f"{label}: expands beyond the limit of {self.limit} bytes", [name]
            )


def lone_entry(parts: list[Path]) -> str | None:
    """The name of the only file in a set of ZIP parts (folders and Finder or Explorer
    droppings aside), or None when there are several, none, or a part cannot be read.

    A one-file archive of a single track is placed as a track, not as a folder
    (docs/interface.md §9); extraction still judges it like any other archive."""
    names: list[str] = []
    for path in parts:
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (OSError, *_DECODE_ERRORS):
            return None
        for info in infos:
            raw = info.filename
            clean = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
            if raw.endswith(("/", "\\")) or (clean and _is_junk(clean)):
                continue
            names.append(raw)
            if len(names) > 1:
                return None
    return names[0] if names else None


def _is_junk(clean: list[str]) -> bool:
    """Finder and Explorer droppings (`__MACOSX/`, `.DS_Store`, `._x`, `Thumbs.db`)."""
    return clean[0] == "__MACOSX" or clean[-1] in _JUNK_NAMES or clean[-1].startswith("._")


def extract_zip(
    archive: Path,
    dest_root: Path,
    staging: Path,
    *,
    max_total_bytes: int,
    max_entries: int = 10_000,
    max_ratio: float = 100.0,
) -> list[Path]:
    """Extract one archive into `dest_root` (or `dest_root (2)`, … if taken); see extract_parts."""
    return extract_parts(
        [archive],
        dest_root,
        staging,
        max_total_bytes=max_total_bytes,
        max_entries=max_entries,
        max_ratio=max_ratio,
    )


def extract_parts(
    parts: list[Path],
    dest_root: Path,
    staging: Path,
    *,
    max_total_bytes: int,
    max_entries: int = 10_000,
    max_ratio: float = 100.0,
) -> list[Path]:
    """Extract independent ZIP parts into one folder, `dest_root` or a ` (2)`-style sibling.

    `staging` is the caller's scratch folder in the work area, on the same filesystem as
    `dest_root`; a leftover from a crash there is removed first (C5). `dest_root.parent` must
    exist. `max_total_bytes` is the caller's min(max_extract_size, free space − margin) and
    counts bytes as written. Returns the extracted files' final paths, in archive order. Raises
    ArchiveRejected (ArchiveDamaged for bad bytes) naming the part and the entries; OSError
    (ENOSPC, EIO) passes through. The parts themselves are never modified or removed.
    """
    if not parts:
        raise ValueError("no archive parts given")
    if not dest_root.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, "destination's parent folder is missing", str(dest_root.parent)
        )
    if not same_filesystem(staging.parent, dest_root.parent):
        # docs/reliability.md D2: a rename must never turn into a copy into the library.
        raise OSError(errno.EXDEV, f"staging {staging} is not on the filesystem of {dest_root}")
    labels = [p.name if len(parts) == 1 else f"part {i} ({p.name})" for i, p in enumerate(parts, 1)]
    with contextlib.ExitStack() as stack:
        archives = [
            stack.enter_context(_open(path, label))
            for path, label in zip(parts, labels, strict=True)
        ]
        count = sum(len(zf.infolist()) for zf in archives)
        if count > max_entries:
            raise ArchiveRejected(f"too many entries: {count} (limit {max_entries})")
        plans = [
            _plan(zf, path, label, max_ratio)
            for zf, path, label in zip(archives, parts, labels, strict=True)
        ]
        _check_across_parts(plans, labels)
        declared = sum(e.info.file_size for plan in plans for e in plan if _wanted_file(e))
        if declared > max_total_bytes:
            raise ArchiveRejected(
                f"{labels[0] if len(parts) == 1 else 'archive set'}: expands beyond the limit of "
                f"{max_total_bytes} bytes ({declared} declared)"
            )
        budget = _Budget(max_total_bytes)
        for zf, plan, label in zip(archives, plans, labels, strict=True):
            for entry in plan:
                if _wanted_file(entry):
                    _copy(zf, entry, label, None, budget, max_ratio)
        return _write_and_publish(
            archives, plans, labels, dest_root, staging, max_total_bytes, max_ratio
        )


@contextlib.contextmanager
def _open(path: Path, label: str) -> Iterator[zipfile.ZipFile]:
    """Open one part read-only, turning "not a ZIP" into a clear refusal."""
    with open(path, "rb") as fh:
        if fh.read(4) == b"PK\x07\x08":
            raise ArchiveRejected(
                f"{label}: a spanned (multi-volume) ZIP set is not supported; "
                "each part must be a complete archive"
            )
    try:
        zf = zipfile.ZipFile(path)
    except _DECODE_ERRORS as err:
        raise ArchiveDamaged(f"{label}: not a readable ZIP archive ({err})") from err
    with zf:
        yield zf


def _plan(zf: zipfile.ZipFile, path: Path, label: str, max_ratio: float) -> list[_Entry]:
    """Judge every entry from the directory and local headers; refuse the archive on any breach."""
    entries: list[_Entry] = []
    unsafe: list[str] = []
    links: list[str] = []
    encrypted: list[str] = []
    ratios: list[str] = []
    methods: dict[int, list[str]] = {}
    for info in zf.infolist():
        raw = info.filename
        pieces = raw.replace("\\", "/").split("/")
        clean = [p for p in pieces if p not in ("", ".")]
        is_dir = raw.endswith(("/", "\\"))  # Windows tools write "folder\\"
        # docs/reliability.md Z1: "../../x", "/abs/x", "C:/x", "..\\x"; "a/../b" is refused too:
        # no honest archive needs it.
        if (
            raw.startswith(("/", "\\"))
            or _DRIVE.match(raw)
            or ".." in pieces
            or (not clean and not is_dir)
        ):
            unsafe.append(raw)
            continue
        if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG, stat.S_IFDIR):
            links.append(raw)
            continue
        junk = _is_junk(clean)
        entry = _Entry(info, tuple(sanitize_component(p) for p in clean), is_dir, junk)
        entries.append(entry)
        if junk or is_dir:
            continue
        if info.flag_bits & 0x1 or info.compress_type == 99:
            encrypted.append(raw)
        elif info.compress_type not in _SUPPORTED_METHODS:
            methods.setdefault(info.compress_type, []).append(raw)
        elif info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(
            info.compress_size, 1
        ):
            ratios.append(raw)
    if unsafe:
        raise ArchiveRejected(f"{label}: entries would land outside the destination folder", unsafe)
    if links:
        raise ArchiveRejected(f"{label}: symlink or special-file entries are not allowed", links)
    if encrypted:
        raise ArchiveRejected(f"{label}: encrypted entries are not supported", encrypted)
    if methods:
        named = ", ".join(f"{m} ({_METHOD_NAMES.get(m, 'unknown')})" for m in sorted(methods))
        raise ArchiveRejected(
            f"{label}: unsupported compression method {named}",
            [raw for names in methods.values() for raw in names],
        )
    _check_names(entries, label)
    overlapping = _overlapping(zf, path, label)
    if overlapping:
        raise ArchiveRejected(
            f"{label}: overlapping entries (a zip bomb; cpython#109858)", overlapping
        )
    if ratios:
        raise ArchiveRejected(
            f"{label}: compression ratio above {max_ratio:g} (a zip bomb)", ratios
        )
    return entries


def _wanted_file(entry: _Entry) -> bool:
    """Entries that become files in the library."""
    return not entry.junk and not entry.is_dir


def _check_names(entries: list[_Entry], label: str) -> None:
    """Refuse duplicates (also after sanitizing and ignoring case) and file/folder clashes."""
    seen: dict[tuple[str, ...], str] = {}
    duplicates: list[str] = []
    folders: set[tuple[str, ...]] = set()
    for entry in entries:
        if entry.junk:
            continue
        key = entry.key
        folders.update(key[:i] for i in range(1, len(key)))
        if entry.is_dir:
            folders.add(key)
        elif key in seen:
            duplicates += [seen[key], entry.info.filename]
        else:
            seen[key] = entry.info.filename
    if duplicates:
        raise ArchiveRejected(f"{label}: duplicate entry names (ignoring case)", duplicates)
    clashes = [name for key, name in seen.items() if key in folders]
    if clashes:
        raise ArchiveRejected(f"{label}: entries that are both a file and a folder", clashes)


def _overlapping(zf: zipfile.ZipFile, path: Path, label: str) -> list[str]:
    """Entries whose bytes overlap another's or the central directory (docs/reliability.md).

    Python 3.11.7 lacks the cpython#109858 fix, so each entry's span (local header, name, extra
    field, compressed data) is computed from its local header and checked here.
    """
    spans: list[tuple[int, int, str]] = []
    with open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            header = fh.read(30)
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                raise ArchiveDamaged(f"{label}: bad local header", [info.filename])
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            end = info.header_offset + 30 + name_len + extra_len + info.compress_size
            spans.append((info.header_offset, end, info.filename))
    spans.sort()
    bad: list[str] = []
    for (_, end, name), (start, _, other) in pairwise(spans):
        if end > start:
            bad += [n for n in (name, other) if n not in bad]
    start_dir = getattr(zf, "start_dir", None)
    if spans and start_dir is not None and spans[-1][1] > start_dir and spans[-1][2] not in bad:
        bad.append(spans[-1][2])
    return bad


def _check_across_parts(plans: list[list[_Entry]], labels: list[str]) -> None:
    """Parts share one folder: the same file in two parts is refused, not overwritten."""
    owner: dict[tuple[str, ...], int] = {}
    for i, plan in enumerate(plans):
        clashes: list[str] = []
        first = None
        for entry in plan:
            if not _wanted_file(entry):
                continue
            j = owner.setdefault(entry.key, i)
            if j != i:
                clashes.append(entry.info.filename)
                first = j if first is None else first
        if clashes:
            assert first is not None
            raise ArchiveRejected(f"{labels[i]}: entry names collide with {labels[first]}", clashes)


def _copy(
    zf: zipfile.ZipFile,
    entry: _Entry,
    label: str,
    sink: Callable[[bytes], object] | None,
    budget: _Budget,
    max_ratio: float,
) -> None:
    """Stream one entry to `sink` (or nowhere), checking CRC, real size, ratio and the budget."""
    info = entry.info
    written = 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(CHUNK_BYTES):
                written += len(chunk)
                budget.spend(len(chunk), label, info.filename)
                if written > RATIO_FLOOR_BYTES and written > max_ratio * max(info.compress_size, 1):
                    raise ArchiveRejected(
                        f"{label}: compression ratio above {max_ratio:g} (a zip bomb)",
                        [info.filename],
                    )
                if sink is not None:
                    sink(chunk)
    except _DECODE_ERRORS as err:
        raise ArchiveDamaged(f"{label}: damaged entry ({err})", [info.filename]) from err
    if written != info.file_size:
        # cpython#83522: the header's size is a claim; what came out decides.
        raise ArchiveDamaged(
            f"{label}: entry produced {written} bytes, its header says {info.file_size}",
            [info.filename],
        )


def _write_and_publish(
    archives: list[zipfile.ZipFile],
    plans: list[list[_Entry]],
    labels: list[str],
    dest_root: Path,
    staging: Path,
    max_total_bytes: int,
    max_ratio: float,
) -> list[Path]:
    """Write every entry into a fresh staging folder, fsync it all, rename it into place."""
    _remove(staging)
    staging.mkdir(mode=0o755)
    try:
        budget = _Budget(max_total_bytes)
        written: list[tuple[str, ...]] = []
        folders: set[Path] = {staging}
        for zf, plan, label in zip(archives, plans, labels, strict=True):
            for entry in plan:
                if entry.junk:
                    continue
                if entry.is_dir:
                    # ensure_dirs creates all components but the last.
                    folders.add(ensure_dirs(staging, [*entry.parts, ""]))
                    continue
                folder = ensure_dirs(staging, list(entry.parts))
                folders.add(folder)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                with open(os.open(folder / entry.parts[-1], flags, 0o644), "wb") as out:
                    _copy(zf, entry, label, out.write, budget, max_ratio)
                    out.flush()
                    full_fsync(out.fileno())
                written.append(entry.parts)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
        final = unique_path(dest_root, split_ext=False)
        os.rename(staging, final)
    except BaseException:
        _remove(staging)
        raise
    fsync_dir(final.parent)
    return [final.joinpath(*parts) for parts in written]


def _remove(path: Path) -> None:
    """Delete a staging folder (or anything, even a symlink, planted in its place)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
