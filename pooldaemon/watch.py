"""The drop folder: request files dropped into `drop_dir` become download jobs (CONTRACT §3).

The watcher hands parsed requests to a `submit(requests, idempotency_key)` callable and knows
nothing of the downloader. How it keeps the contract's promises:

- **Complete files only** (RELIABILITY F2, watchdog#586): a file is read once its lstat signature
  (inode, size, mtime, ctime, mode, owner) has stayed the same for `stable_s` (1 s per CONTRACT
  §3), as observed by this process; a file renamed into place is no different. The size and mtime
  are checked again after reading, so a writer that resumes mid-read only delays it.
- **Events are hints, the directory listing is the truth**: every watchfiles event batch, every
  due stability check and a periodic rescan (`rescan_interval_s`; network shares, inotify
  overflow) lead to the same full listing. Missing an event only costs latency.
- **Untrusted input** (RELIABILITY F1): at most 1 MiB + 1 byte is ever read, before any parsing.
  Oversized, binary, UTF-16/32 and other non-UTF-8 files are rejected as a whole. Files are opened
  with O_NOFOLLOW | O_NONBLOCK and must be regular files owned by our effective uid.
- **Refused entries** (symlinks, other users' files, FIFOs and the like) are never read: the
  entry itself (for a symlink, the link, never its target) is moved to `rejected/` with an
  errors file saying why, so the refusal is visible and nothing is deleted.
- **Nothing deleted or overwritten**: files are moved with `link()` then `unlink()`, which cannot
  replace an existing name; where the filesystem has no hard links, `rename()` after an existence
  check. Result files are written to a temporary file, fsynced, then linked into place.
- **No request lost or doubled across a crash** (RELIABILITY C5): the parsed lines are recorded
  under the content's sha256 *before* anything is submitted; the requests are submitted in calls
  of up to SUBMIT_CHUNK, each with the key `drop:<sha256>:<line of its first request>` (the
  submit side stores the outcomes under the key in the same transaction as the jobs and answers a
  key it has seen with those outcomes, creating nothing); then the result and the destination
  name with the exact result text are recorded; then the result file is written and the file
  moved; then the move is marked done. A restart resumes at whichever step was reached.
- **Duplicates**: a file whose content was already processed is answered from the record (same
  job ids, no new submission) and moved like any other. To ask again, change the file (a comment
  line will do).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import watchfiles

from pooldaemon.errors import BadRequest
from pooldaemon.events import EventBus
from pooldaemon.fsutil import fsync_dir, full_fsync, link_no_clobber
from pooldaemon.log import get_logger
from pooldaemon.models import Request
from pooldaemon.refs import parse_line, parse_object
from pooldaemon.store import drops
from pooldaemon.store.db import Store

log = get_logger(__name__)

#: CONTRACT §3: files over 1 MiB are rejected as a whole; one byte more is read to tell.
MAX_FILE_BYTES = 1024 * 1024
PROCESSED = "processed"
REJECTED = "rejected"
RESULT_SUFFIX = ".result.json"
ERRORS_SUFFIX = ".errors.txt"
EXTENSIONS = (".txt", ".json")
#: CONTRACT §3: names still being written by browsers and editors are left alone.
IGNORED_ENDINGS = (".tmp", ".part", ".crdownload", "~")
#: Files handled between two yields to the event loop and two checks for stop.
BATCH_SIZE = 100
#: Requests per submit() call: one engine transaction each, short enough not to hold the store
#: for long. Part of the idempotency keys (`drop:<sha256>:<first line of the call>`): a changed
#: value would re-key calls replayed after a crash, so leave it be.
SUBMIT_CHUNK = 500
#: Longest line text echoed back in a result or errors file.
TEXT_CAP = 200
#: Temporary files of ours (result files before they are linked into place).
_TMP_PREFIX = ".pooldaemon-"
_NAME_MAX = 255
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# C0 and C1 controls other than whitespace: many of them mean the file is not text.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What became of one submitted request: a job id, or the reason it was refused."""

    job: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.job is None) == (self.reason is None):
            raise ValueError("a SubmitOutcome has either a job or a reason")


#: `submit(requests, idempotency_key)`: one outcome per request, in order. Raising means "not
#: decided, try again later" (the requests stay recorded and are submitted again).
Submit = Callable[[list[Request], str], Awaitable[list[SubmitOutcome]]]
#: Configured pool name → the request kinds it supports (what `refs.parse_line` takes).
PoolKinds = Callable[[], Mapping[str, Sequence[str]]]


@dataclass(frozen=True, slots=True)
class DropReport:
    """One dropped file handled: where it went and how many of its requests were accepted."""

    file: str  # its name in drop_dir
    moved_to: str  # relative to drop_dir: "processed/NAME" or "rejected/NAME"
    accepted: int
    rejected: int
    error: str | None = None  # why the whole file was refused or rejected
    duplicate: bool = False  # same content as a file handled before: answered from the record


def idempotency_key(sha256: str, line: int) -> str:
    """The key of the submit() call whose first request is on `line` of this content."""
    return f"drop:{sha256}:{line}"


def submit_chunks(lines: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The parsed requests of a content in the calls they are submitted in.

    Derived only from the recorded lines and SUBMIT_CHUNK, so a replay after a crash makes the
    same calls with the same keys.
    """
    requests = [entry for entry in lines if "request" in entry]
    return [requests[i : i + SUBMIT_CHUNK] for i in range(0, len(requests), SUBMIT_CHUNK)]


def is_request_name(name: str) -> bool:
    """CONTRACT §3: `*.txt` and `*.json` (any case); dotfiles and partial downloads are not."""
    lower = name.lower()
    return (
        not name.startswith(".")
        and lower.endswith(EXTENSIONS)
        and not lower.endswith(IGNORED_ENDINGS)
    )


# --- reading and parsing -------------------------------------------------------------------


class FileProblem(Exception):
    """The file is rejected as a whole; the message says why, for the errors file."""


def decode_request_file(data: bytes) -> str:
    """Bytes → text, or FileProblem for binary, UTF-16/32 and other non-UTF-8 content."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileProblem("UTF-32 text (it starts with a UTF-32 byte-order mark); save it as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileProblem("UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8")
    if b"\x00" in data:
        if _looks_utf16(data):
            raise FileProblem("UTF-16 text without a byte-order mark; save it as UTF-8")
        raise FileProblem("binary data (it contains NUL bytes), not a text file of requests")
    if data.startswith(codecs.BOM_UTF8):
        # Windows editors add it; the rest is UTF-8 all the same.
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        if _mostly_binary(data):
            raise FileProblem(
                "binary data (mostly non-text bytes), not a text file of requests"
            ) from None
        line = data.count(b"\n", 0, err.start) + 1
        raise FileProblem(
            f"not UTF-8: byte 0x{data[err.start]:02X} on line {line} is not valid UTF-8 "
            "(Latin-1 or Windows-1252 text?); save it as UTF-8"
        ) from None
    controls = len(_CONTROLS.findall(text))
    if controls * 20 > len(text):
        raise FileProblem("binary data (mostly non-text characters), not a text file of requests")
    return text


def _looks_utf16(data: bytes) -> bool:
    half = len(data) // 2
    if half < 2:
        return False
    even, odd = data[0::2].count(0), data[1::2].count(0)
    return (odd >= 0.4 * half and even <= 0.05 * half) or (
        even >= 0.4 * half and odd <= 0.05 * half
    )


def _mostly_binary(data: bytes) -> bool:
    # Control bytes mark binary data; many high bytes alone are just another 8-bit charset.
    sample = data[:4096]
    controls = sum(1 for b in sample if b < 0x09 or 0x0E <= b < 0x20 or b == 0x7F)
    return controls * 10 > len(sample)


def parse_request_file(
    name: str, data: bytes, pools: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """Every request line of a dropped file, parsed or with its reason; FileProblem if none.

    Entries are `{"line", "text", "request": {…}}` or `{"line", "text", "reason"}`; "line" is
    1-based (the position in the list for `.json`).
    """
    if not data:
        raise FileProblem("the file is empty: no requests")
    text = decode_request_file(data)
    if name.lower().endswith(".json"):
        return _parse_json(text, pools)
    entries: list[dict[str, Any]] = []
    for number, raw in enumerate(_LINE_BREAK.split(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entries.append(_entry(number, line, partial(parse_line, line, pools)))
    if not entries:
        raise FileProblem("no requests: only blank lines and comments")
    return entries


def _entry(number: int, text: str, parse: Callable[[], Request]) -> dict[str, Any]:
    try:
        request = parse()
    except BadRequest as err:
        return {"line": number, "text": _cap(text), "reason": err.message}
    return {"line": number, "text": _cap(text), "request": asdict(request)}


class _DuplicateKeys:
    """A JSON object that names a key twice (Python's json would silently keep the last)."""

    def __init__(self, obj: dict[str, Any], key: str) -> None:
        self.obj = obj
        self.key = key


def _object_pairs(pairs: list[tuple[str, Any]]) -> Any:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            return _DuplicateKeys(obj, key)
        seen.add(key)
    return obj  # pragma: no cover - unreachable: a shorter dict means a repeated key


def _no_constant(name: str) -> Any:
    # RELIABILITY §0: Python's json takes NaN and Infinity without complaint; JSON does not.
    raise ValueError(f"{name} is not a JSON value")


def _parse_json(text: str, pools: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    try:
        value = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise FileProblem(f"not valid JSON: {err}{_json_hint(text, err.pos)}") from None
    except ValueError as err:
        raise FileProblem(f"not valid JSON: {err}") from None
    except RecursionError:
        raise FileProblem("not valid JSON for requests: nested too deeply") from None
    if not isinstance(value, list):
        raise FileProblem(
            'a .json request file holds a list of objects such as [{"pool": "crateq", '
            f'"id": "570291"}}]; this one holds {_json_kind(value)}'
        )
    if not value:
        raise FileProblem("the list is empty: no requests")
    entries: list[dict[str, Any]] = []
    for number, item in enumerate(value, start=1):
        if isinstance(item, _DuplicateKeys):
            shown = json.dumps(item.obj, ensure_ascii=False)
            entries.append(
                {"line": number, "text": _cap(shown), "reason": f"key {item.key!r} given twice"}
            )
            continue
        shown = json.dumps(_plain(item), ensure_ascii=False)
        entries.append(_entry(number, shown, partial(parse_object, item, pools)))
    return entries


def _json_hint(text: str, pos: int) -> str:
    """Name the usual culprit when the parser stopped right at it (RELIABILITY F1)."""
    here = text[pos : pos + 2]
    if here.startswith(("//", "/*", "#")):
        return " (JSON allows no comments)"
    if here[:1] in ("]", "}") and text[:pos].rstrip().endswith(","):
        return " (JSON allows no trailing commas)"
    return ""


def _plain(value: Any) -> Any:
    """JSON value with any duplicate-key marker nested inside turned back into its dict."""
    if isinstance(value, _DuplicateKeys):
        return _plain(value.obj)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, dict | _DuplicateKeys):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def _cap(text: str) -> str:
    return text if len(text) <= TEXT_CAP else text[: TEXT_CAP - 1] + "…"


def _printable(text: str) -> str:
    """Text safe to show in an errors file: control characters and stray bytes escaped."""
    return _UNPRINTABLE.sub(
        lambda m: (
            f"\\x{ord(m.group()) - 0xDC00:02x}"
            if 0xDC80 <= ord(m.group()) <= 0xDCFF
            else f"\\x{ord(m.group()):02x}"
            if ord(m.group()) < 0x100
            else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )


def build_result(
    lines: list[dict[str, Any]], outcomes: Mapping[int, SubmitOutcome]
) -> dict[str, Any]:
    """CONTRACT §3 result: accepted lines with their job, rejected lines with the reason."""
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for entry in lines:
        if "request" in entry:
            outcome = outcomes[entry["line"]]
            if outcome.job is not None:
                ref = Request(**entry["request"]).ref
                accepted.append({"line": entry["line"], "ref": ref, "job": outcome.job})
                continue
            reason = outcome.reason
        else:
            reason = entry["reason"]
        rejected.append({"line": entry["line"], "text": entry["text"], "reason": reason})
    return {"accepted": accepted, "rejected": rejected}


def result_text(result: Mapping[str, Any]) -> str:
    """The exact content of NAME.result.json."""
    doc = {"accepted": result["accepted"], "rejected": result["rejected"]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def errors_text(name: str, problem: str | None, rejected: Sequence[Mapping[str, Any]] = ()) -> str:
    """The exact content of NAME.errors.txt: the whole-file problem, or each rejected line."""
    shown = _printable(name)
    if problem is not None:
        head = f"{shown}: not used, nothing was queued: {problem}"
    else:
        head = f"{shown}: no valid request in this file, nothing was queued."
    lines = [head, "The file was moved here unchanged.", ""]
    for entry in rejected:
        lines.append(f"line {entry['line']}: {_printable(entry['reason'])}")
        lines.append(f"    {_printable(entry['text'])}")
    return "\n".join(lines).rstrip("\n") + "\n"


# --- the filesystem side (runs in threads) --------------------------------------------------

#: What identifies a directory entry's state: a change in any of these restarts the wait.
_Sig = tuple[int, int, int, int, int, int, int]


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A dropped entry as read once: its content, or why it was not read."""

    name: str
    dev: int
    ino: int
    data: bytes | None = None
    problem: str | None = None


def _list_dir(drop_dir: Path) -> tuple[dict[str, _Sig], list[str], tuple[int, int]]:
    """Request-file candidates with their signatures, names that are not valid UTF-8, and the
    folder's own (dev, inode)."""
    found: dict[str, _Sig] = {}
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


def _snapshot(path: Path, seen: _Sig) -> _Snapshot | None:
    """Read the entry if it is still what was seen stable; None if it changed or went away."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if _sig(st) != seen:
        return None
    name, me = path.name, os.geteuid()

    def refused(problem: str) -> _Snapshot:
        return _Snapshot(name, st.st_dev, st.st_ino, problem=problem)

    if stat.S_ISLNK(st.st_mode):
        try:
            target = _cap(os.readlink(path))
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
    return _Snapshot(name, st.st_dev, st.st_ino, data=data)


def _snapshot_all(
    drop_dir: Path, seen: Mapping[str, _Sig]
) -> dict[str, _Snapshot | Exception | None]:
    """`_snapshot` for each name of a batch; an error stays with its file."""
    snaps: dict[str, _Snapshot | Exception | None] = {}
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


def _free_dest(drop_dir: Path, folder: str, name: str, reserved: set[str] | None = None) -> str:
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


def _free_dests(drop_dir: Path, wanted: Sequence[tuple[str, str]]) -> list[str | Exception]:
    """`_free_dest` for each (folder, name) of a batch, never the same name twice."""
    reserved: set[str] = set()
    chosen: list[str | Exception] = []
    for folder, name in wanted:
        try:
            chosen.append(_free_dest(drop_dir, folder, name, reserved))
        except Exception as err:
            chosen.append(err)
    return chosen


class _NameTaken(Exception):
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
    _NameTaken when a different one is. `tmp` is removed either way.
    """
    try:
        try:
            link_no_clobber(tmp, path)
            return True
        except FileExistsError:
            if _has_content(path, data):
                return False
            raise _NameTaken(str(path)) from None
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
        raise _NameTaken(str(dest)) from None


def _sidecar_path(drop_dir: Path, placement: drops.Placement) -> Path:
    dest = drop_dir / placement.dest
    return dest.with_name(dest.name + _sidecar_suffix(placement.dest))


def _settle(drop_dir: Path, placement: drops.Placement) -> str:
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
    with contextlib.suppress(_NameTaken):
        _write_new(_sidecar_path(drop_dir, placement), placement.sidecar.encode("utf-8"))
    return "moved"


#: What `_place_all` reports per file: "moved", "gone", "taken" (choose another name) or the
#: error that stopped this one file.
PlaceOutcome = str | Exception


def _place_all(drop_dir: Path, placements: Sequence[drops.Placement]) -> list[PlaceOutcome]:
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
                where = _settle(drop_dir, placement)
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
            except _NameTaken:
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
                outcomes[index] = "taken" if isinstance(err, _NameTaken) else err
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


def _remove_our_temporaries(drop_dir: Path) -> None:
    """Result files a crash left half-written: named by us, in our own folders."""
    for folder in (PROCESSED, REJECTED):
        directory = drop_dir / folder
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(_TMP_PREFIX) and entry.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


# --- the watcher -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Seen:
    sig: _Sig
    since: float
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Decision:
    folder: str
    sidecar: str
    accepted: int
    rejected: int
    error: str | None
    duplicate: bool


def _decision(
    name: str, record: drops.DropRecord | None, problem: str | None, duplicate: bool
) -> _Decision:
    """Where the file goes and the exact text written beside it."""
    if problem is not None or record is None or record.result is None:
        problem = problem or "it could not be read"
        return _Decision(REJECTED, errors_text(name, problem), 0, 0, problem, False)
    result = record.result
    accepted, rejected = len(result["accepted"]), len(result["rejected"])
    if accepted:
        return _Decision(PROCESSED, result_text(result), accepted, rejected, None, duplicate)
    return _Decision(
        REJECTED, errors_text(name, None, result["rejected"]), 0, rejected, None, duplicate
    )


class DropWatcher:
    """Turns files dropped into `drop_dir` into submitted requests (CONTRACT §3)."""

    def __init__(
        self,
        drop_dir: Path,
        store: Store,
        submit: Submit,
        pools: PoolKinds,
        events: EventBus,
        *,
        force_polling: bool,
        rescan_interval_s: float,
        stable_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._dir = Path(drop_dir)
        self._store = store
        self._submit = submit
        self._pools = pools
        self._events = events
        self._force_polling = force_polling
        self._rescan_s = max(rescan_interval_s, 0.05)
        self._stable_s = max(stable_s, 0.0)
        self._clock = clock
        self._stop_timeout_s = stop_timeout_s
        self._candidates: dict[str, _Seen] = {}
        self._scan_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._watch_stop = asyncio.Event()  # ends one awatch run: stop, or watch anew
        self._watched: tuple[int, int] | None = None  # (dev, inode) of the folder watched
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._resume_at: float | None = None  # None: not yet tried; inf: done
        self._problems: dict[str, str] = {}  # key → last problem logged (log on change)

    @property
    def drop_dir(self) -> Path:
        return self._dir

    async def start(self) -> None:
        """Start watching; files already in the folder are handled once they are stable."""
        if self._tasks:
            return
        self._stopping = False
        self._stop_event.clear()
        await self._ensure_dirs()
        self._tasks = [
            asyncio.create_task(self._run(), name="drop-scan"),
            asyncio.create_task(self._watch(), name="drop-watch"),
        ]

    async def stop(self) -> None:
        """Stop after the file in hand (bounded by stop_timeout_s, then cancelled)."""
        self._stopping = True
        self._stop_event.set()
        self._watch_stop.set()
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("drop watcher task failed", error=result)

    async def scan(self) -> list[DropReport]:
        """One pass: list the folder, note what changed, handle every file now stable.

        The background loop calls this on every event, due stability check and rescan; tests
        call it directly (with a fake clock) instead of waiting.
        """
        async with self._scan_lock:
            now = self._clock()
            if self._resume_at is None or now >= self._resume_at:
                await self._resume(now)
            ready = await self._ready(now)
            reports: list[DropReport] = []
            for start in range(0, len(ready), BATCH_SIZE):
                if self._stopping:
                    break
                reports += await self._handle_batch(ready[start : start + BATCH_SIZE])
                await asyncio.sleep(0)  # let events and the socket API through
            return reports

    # -- the loop

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.scan()
            except Exception as err:  # the watcher never dies of one bad pass
                self._problem("scan", f"drop folder scan failed: {err}", error=err)
                # The store or the folder is failing as a whole: no tight loop (RELIABILITY §2
                # oracle 7); events are ignored until the next rescan.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), self._rescan_s)
                continue
            self._clear_problem("scan")
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait())

    async def _watch(self) -> None:
        """OS events (or watchfiles' own polling) only wake the scan loop."""
        while not self._stopping:
            self._watch_stop = asyncio.Event()
            # awatch arms its watcher before its first await: one more pass right after that
            # catches files created between the last pass and the watch being live.
            asyncio.get_running_loop().call_soon(self._wake.set)
            try:
                st = await asyncio.to_thread(os.stat, self._dir)
                self._watched = (st.st_dev, st.st_ino)
                async for _changes in watchfiles.awatch(
                    self._dir,
                    watch_filter=None,
                    stop_event=self._watch_stop,
                    force_polling=self._force_polling,
                    # watchfiles' default 50 ms step wakes its thread 20 times a second, which
                    # alone costs ~0.2 % CPU idle; 200 ms costs a fifth of that and adds at most
                    # 0.15 s to a drop the 1 s stability wait already delays (issue 2's budget).
                    step=200,
                    recursive=False,
                    ignore_permission_denied=True,
                ):
                    self._wake.set()
                continue  # stopped, or asked to watch the folder anew
            except Exception as err:
                self._watched = None
                # A missing or unmounted folder: rescans carry on; try watching again later.
                self._problem("watch", f"cannot watch {self._dir}: {err}", error=err)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), self._rescan_s)

    def _next_wait(self) -> float:
        now = self._clock()
        due = [self._rescan_s]
        for seen in self._candidates.values():
            due.append(max(seen.since + self._stable_s, seen.retry_at) - now)
        if self._resume_at is not None and self._resume_at != float("inf"):
            due.append(self._resume_at - now)
        return min(max(min(due), 0.01), self._rescan_s)

    async def _ensure_dirs(self, *, parents: bool = True) -> bool:
        """Create the folder and its processed/ and rejected/ (at start; later only the folder
        itself, so an unmounted share's missing path is not recreated on the local disk)."""

        def make() -> None:
            self._dir.mkdir(parents=parents, exist_ok=True)
            for folder in (PROCESSED, REJECTED):
                (self._dir / folder).mkdir(exist_ok=True)
            _remove_our_temporaries(self._dir)

        try:
            await asyncio.to_thread(make)
        except OSError as err:
            self._problem("folder-make", f"drop folder {self._dir} is not usable: {err}", error=err)
            return False
        self._clear_problem("folder-make")
        return True

    async def _ready(self, now: float) -> list[str]:
        """Update the candidates from a fresh listing; names stable for stable_s, oldest first."""
        try:
            listing, bad_names, folder = await asyncio.to_thread(_list_dir, self._dir)
        except OSError as err:
            self._problem(
                "folder-list", f"drop folder {self._dir} cannot be listed: {err}", error=err
            )
            await self._ensure_dirs(parents=False)
            return []
        self._clear_problem("folder-list")
        if self._watched is not None and folder != self._watched:
            # The folder was recreated or remounted: the watch is on the old one. Restart it.
            self._watched = None
            self._watch_stop.set()
        for name in bad_names:
            self._problem(
                f"name:{name!r}",
                f"drop folder: {_printable(name)!r} is left alone: its name is not valid UTF-8",
            )
        for name in list(self._candidates):
            if name not in listing:
                del self._candidates[name]
        ready: list[tuple[float, str]] = []
        for name, sig in listing.items():
            seen = self._candidates.get(name)
            if seen is None or seen.sig != sig:
                self._candidates[name] = _Seen(sig, now)
            elif now - seen.since >= self._stable_s and now >= seen.retry_at:
                ready.append((seen.since, name))
        return [name for _since, name in sorted(ready)]

    # -- one file

    async def _handle_batch(self, names: Sequence[str]) -> list[DropReport]:
        """Handle up to BATCH_SIZE stable files, each step once for the whole batch.

        Per file the order is always: lines recorded as pending → requests submitted → result
        and destination recorded → result file written and file moved → move recorded. Doing
        each step for the batch at once saves a database round trip or a thread hop per file.
        """
        prepared = await self._prepare(names)
        if not prepared:
            return []
        outcomes = await asyncio.to_thread(_place_all, self._dir, [p for _n, _d, p in prepared])
        reports: list[DropReport] = []
        moved: list[drops.Placement] = []
        vanished: list[drops.Placement] = []
        for (name, decision, placement), outcome in zip(prepared, outcomes, strict=True):
            try:
                placement, outcome = await self._retry_taken(placement, outcome)
                if isinstance(outcome, Exception):
                    raise outcome
            except Exception as err:
                self._failed(name, err)
                continue
            self._candidates.pop(name, None)
            self._clear_problem(f"file:{name}")
            if outcome == "gone":
                vanished.append(placement)
                continue
            moved.append(placement)
            reports.append(
                DropReport(
                    file=name,
                    moved_to=placement.dest,
                    accepted=decision.accepted,
                    rejected=decision.rejected,
                    error=decision.error,
                    duplicate=decision.duplicate,
                )
            )
        await drops.finish_placements(self._store, moved=moved, vanished=vanished)
        for report in reports:
            self._events.publish("drop", **asdict(report))
            log.info("drop file handled", **asdict(report))
        return reports

    async def _prepare(self, names: Sequence[str]) -> list[tuple[str, _Decision, drops.Placement]]:
        """Read the files, submit what is new, and record where each goes (before any move)."""
        seen = {name: self._candidates[name].sig for name in names}
        snaps = await asyncio.to_thread(_snapshot_all, self._dir, seen)
        files: list[tuple[_Snapshot, str | None]] = []
        for name in names:
            snap = snaps[name]
            if isinstance(snap, Exception):
                self._failed(name, snap)
            elif snap is None:
                self._candidates.pop(name, None)  # changed or gone: the next pass decides
            else:
                sha = hashlib.sha256(snap.data).hexdigest() if snap.data is not None else None
                files.append((snap, sha))
        if not files:
            return []
        records = await drops.get_drops(self._store, [sha for _s, sha in files if sha])
        known = set(records)
        placements = await drops.find_placements(
            self._store,
            # A content never recorded cannot have a move under way.
            [(s.name, s.dev, s.ino, sha) for s, sha in files if sha is None or sha in records],
        )
        # Parse each new content once (two files of a batch may hold the same bytes).
        problems: dict[str, str] = {}
        new: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        pools = self._pools() if any(sha and sha not in records for _s, sha in files) else {}
        for snap, sha in files:
            if snap.problem or sha is None or snap.data is None or sha in records or sha in new:
                continue
            try:
                new[sha] = (snap.name, parse_request_file(snap.name, snap.data, pools))
            except FileProblem as err:
                problems[snap.name] = str(err)
        records.update(await drops.add_drops(self._store, new))
        # Submit each pending content once; a failure keeps it pending and its files waiting.
        results: dict[str, dict[str, Any]] = {}
        failures: dict[str, Exception] = {}
        for sha, record in records.items():
            if record.state != drops.PENDING:
                continue
            try:
                results[sha] = await self._submit_all(record)
            except Exception as err:
                failures[sha] = err
                continue
            records[sha] = replace(record, state=drops.SUBMITTED, result=results[sha])
        decided: list[tuple[_Snapshot, str | None, _Decision]] = []
        first_of: dict[str, str] = {}
        for snap, sha in files:
            if sha is not None and sha in failures:
                self._failed(snap.name, failures[sha])
                continue
            content = records.get(sha) if sha is not None else None
            earlier = first_of.setdefault(sha, snap.name) if sha is not None else snap.name
            # Same content as an earlier file (not this very file again after a restart).
            duplicate = content is not None and (
                (sha in known and (content.moved_to is not None or content.name != snap.name))
                or earlier != snap.name
            )
            problem = snap.problem or problems.get(snap.name)
            decided.append((snap, sha, _decision(snap.name, content, problem, duplicate)))
        missing = [
            (snap, sha, decision)
            for snap, sha, decision in decided
            if (snap.name, snap.dev, snap.ino, sha) not in placements
        ]
        dests = await asyncio.to_thread(
            _free_dests, self._dir, [(d.folder, snap.name) for snap, _sha, d in missing]
        )
        wanted: list[drops.NewPlacement] = []
        for (snap, sha, decision), dest in zip(missing, dests, strict=True):
            if isinstance(dest, Exception):
                self._failed(snap.name, dest)
                continue
            wanted.append(
                drops.NewPlacement(snap.name, snap.dev, snap.ino, sha, dest, decision.sidecar)
            )
        for placement in await drops.add_placements(self._store, wanted, results):
            placements[(placement.name, placement.dev, placement.ino, placement.sha256)] = placement
        prepared: list[tuple[str, _Decision, drops.Placement]] = []
        for snap, sha, decision in decided:
            found = placements.get((snap.name, snap.dev, snap.ino, sha))
            if found is not None:
                prepared.append((snap.name, decision, found))
        return prepared

    def _failed(self, name: str, err: Exception) -> None:
        # One bad file never blocks the others; it is tried again after a rescan interval.
        seen = self._candidates.get(name)
        if seen is not None:
            seen.retry_at = self._clock() + self._rescan_s
        self._problem(f"file:{name}", f"drop file {name!r} not handled yet: {err}", error=err)

    async def _retry_taken(
        self, placement: drops.Placement, outcome: PlaceOutcome
    ) -> tuple[drops.Placement, PlaceOutcome]:
        """A name taken since it was chosen: record the next free one, then move there."""
        for _attempt in range(100):
            if outcome != "taken":
                return placement, outcome
            folder = placement.dest.partition("/")[0]
            dest = await asyncio.to_thread(_free_dest, self._dir, folder, placement.name)
            placement = await drops.change_dest(self._store, placement, dest)
            [outcome] = await asyncio.to_thread(_place_all, self._dir, [placement])
        raise OSError(f"no free name for {placement.name!r} in {placement.dest}")

    async def _submit_all(self, record: drops.DropRecord) -> dict[str, Any]:
        """Submit every parsed request of a recorded content; the result for the result file."""
        outcomes: dict[int, SubmitOutcome] = {}
        for chunk in submit_chunks(record.lines):
            key = idempotency_key(record.sha256, chunk[0]["line"])
            got = await self._submit([Request(**entry["request"]) for entry in chunk], key)
            if len(got) != len(chunk) or not all(isinstance(o, SubmitOutcome) for o in got):
                raise TypeError(f"submit answered {len(got)} outcomes for {len(chunk)} requests")
            outcomes.update(zip((entry["line"] for entry in chunk), got, strict=True))
        return build_result(record.lines, outcomes)

    async def _resume(self, now: float) -> None:
        """Finish what a previous run left half done (RELIABILITY C5)."""
        try:
            if not await asyncio.to_thread(self._dir.is_dir):
                # An unmounted share must not make every unfinished move look "gone".
                raise FileNotFoundError(f"{self._dir} is not there")
            for record in await drops.pending_drops(self._store):
                await drops.record_result(
                    self._store, record.sha256, await self._submit_all(record)
                )
                log.info("drop requests resumed after a restart", file=record.name)
            moved: list[drops.Placement] = []
            vanished: list[drops.Placement] = []
            for placement in await drops.unfinished_placements(self._store):
                where = await asyncio.to_thread(_settle, self._dir, placement)
                if where == "moved":
                    moved.append(placement)
                elif where == "gone":
                    vanished.append(placement)
                # "present": the normal pass moves it, to the destination already chosen.
            await drops.finish_placements(self._store, moved=moved, vanished=vanished)
        except Exception as err:
            self._resume_at = now + self._rescan_s
            self._problem(
                "resume", f"drop folder: unfinished work not resumed yet: {err}", error=err
            )
            return
        self._resume_at = float("inf")
        self._clear_problem("resume")

    # -- log on change (STYLE habit 4)

    def _problem(self, key: str, message: str, *, error: BaseException | None = None) -> None:
        if self._problems.get(key) == message:
            return
        self._problems[key] = message
        log.warning(message, error=error)

    def _clear_problem(self, key: str) -> None:
        if self._problems.pop(key, None) is not None:
            log.info("drop folder problem cleared", what=key)
