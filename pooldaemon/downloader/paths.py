"""Where a finished file goes: template rendering, name sanitizing and safe joins.

docs/interface.md §5.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pooldaemon.errors import PoolDaemonError
from pooldaemon.fsutil import fsync_dir
from pooldaemon.songkey import Version, parse, parse_version, split_title, version_in_name

MAX_COMPONENT_BYTES = 200

# docs/reliability.md N2: U+202E and friends make "3pm.exe" display as "exe.mp3".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# `/` and `\` split paths; `<>:"|?*` are illegal on the FAT/exFAT/NTFS sticks DJs sync their
# libraries to (curl CVE-2016-0754), so a name that is fine here still has to copy there.
_ILLEGAL = frozenset('/\\<>:"|?*')
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_EXT = re.compile(r"\.([A-Za-z0-9]{1,10})$")
_WHITESPACE = re.compile(r"\s+")
_BRACKETS = {"(": ")", "[": "]", "{": "}"}


class PathEscape(PoolDaemonError):
    """A path would leave the library or pass through a symlink (docs/reliability.md N1, N3)."""

    code = "path_escape"
    http_status = 400


def sanitize_component(text: str, *, fallback: str = "Unknown", max_bytes: int = 200) -> str:
    """Turn any text into one safe path component (docs/interface.md §5, docs/reliability.md N1/N2).

    NFC-normalized; control characters become spaces and whitespace runs collapse (log
    injection); bidi overrides are removed; `/ \\ < > : " | ? *` become `_`; leading spaces and
    dots and trailing dots and spaces are trimmed (a leading dot would hide the file, and
    `.pooldaemon` is the work area); a reserved Windows device name gets `_` after its stem
    (`CON.mp3` → `CON_.mp3`); at most `max_bytes` of UTF-8, cut on a character boundary, keeping a
    short extension. Empty results become `fallback`. The result is stable: sanitizing it again
    returns it unchanged.
    """
    if max_bytes < 32:
        raise ValueError("max_bytes must be at least 32")
    name = _clean(text, max_bytes)
    if not name:
        name = _clean(fallback, max_bytes) or "Unknown"
    return name


def _clean(text: str, max_bytes: int) -> str:
    """Apply every rule of `sanitize_component`; may return ''."""
    # Remove bidi controls before NFC: removing a character could join a base and a combining
    # mark that NFC would then compose.
    text = "".join(ch for ch in str(text) if ch not in _BIDI_CONTROLS)
    text = unicodedata.normalize("NFC", text)
    chars = []
    for ch in text:
        if ch in _ILLEGAL:
            chars.append("_")
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            chars.append(" ")
        else:
            chars.append(ch)
    name = _WHITESPACE.sub(" ", "".join(chars)).lstrip(" .").rstrip(" .")
    # Reserved names before the cut: the cut keeps the start, so "CON_" survives it.
    return _cut(_unreserve(name), max_bytes)


def _unreserve(name: str) -> str:
    """`CON` → `CON_`, `nul.mp3` → `nul_.mp3`: Windows reserves the stem with any extension."""
    stem, dot, rest = name.partition(".")
    if stem.rstrip(" ").upper() in _RESERVED:
        return f"{stem}_{dot}{rest}"
    return name


def _cut(name: str, max_bytes: int) -> str:
    """Cut `name` to `max_bytes` of UTF-8 on a character boundary, keeping a short extension."""
    if len(name.encode()) <= max_bytes:
        return name
    match = _EXT.search(name)
    if match and match.start() > 0:
        stem = _cut_bytes(name[: match.start()], max_bytes - len(match.group(0)))
        stem = stem.rstrip(" .")
        if stem:
            return stem + match.group(0)
    return _cut_bytes(name, max_bytes).rstrip(" .")


def _cut_bytes(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 form fits in `max_bytes`."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def sanitize_ext(ext: str) -> str:
    """An extension as written on disk: lowercase ASCII letters and digits, at most 10."""
    return "".join(ch for ch in ext.lower() if ch in string.ascii_lowercase + string.digits)[:10]


#: Fields a name can do without: an empty one vanishes together with its brackets or the
#: separator before it (`{title} - {version}` → `Title`), instead of reading `Unknown Version`.
OPTIONAL_FIELDS = frozenset(
    {"mix", "version", "advisory", "quality", "editor", "bpm", "key", "year", "rule", "source"}
)
#: Fields that name a version: one already carried by the name is not written again.
VERSION_FIELDS = frozenset({"mix", "version", "advisory", "quality"})
#: The fields a version field is compared with (the name as the pool wrote it).
_NAME_FIELDS = frozenset({"title", "song"})

# An empty field is rendered as this mark first, then removed with its debris.
_EMPTY = "\x00"
_SEPARATOR = r"(?:\s*[-–—_|,;·~]+\s*|\s+)"
# "(…)" holding only empty fields and separators, with the space before it.
_EMPTY_BRACKETS = re.compile(r"\s*[(\[{<][-–—_|,;·~\s]*\x00[-–—_|,;·~\s\x00]*[)\]}>]")
# An empty field and the separator before it, when real text comes before that separator.
_EMPTY_AFTER_TEXT = re.compile(rf"(?<=[^-–—_|,;·~\s(\[{{<\x00]){_SEPARATOR}\x00")
# An empty field at the start (of the level or of a bracket) and the separator after it.
_EMPTY_LEADING = re.compile(rf"\x00{_SEPARATOR}?")


def render_template(template: str, fields: Mapping[str, object], ext: str) -> list[str]:
    """Render `file_template` into sanitized path components, the last one carrying `.ext`.

    Each `/`-separated level of the template is one component, so a field value can never add
    a level. An empty field (missing, None or blank) inside brackets takes the brackets with it
    (`{title} ({mix})` → `Title`); an empty optional field (`OPTIONAL_FIELDS`) takes the
    separator before it (`{title} - {version}` → `Title`); any other empty field renders as
    `Unknown <Field>`. A version field (`VERSION_FIELDS`) whose value the level's `{title}` or
    `{song}` already carries renders empty, so a name never repeats its version
    (`Sexy Lady [Xtendz] - qHD - Clean ({mix})` with mix `Xtendz` → no `(Xtendz)`), and
    `{version}` shows only what the name does not say yet (`Song [Clean] (Extended)`).
    """
    levels = [level for level in template.split("/") if level.strip()]
    if not levels:
        raise ValueError("file_template has no path components")
    ext = sanitize_ext(ext)
    suffix = f".{ext}" if ext else ""
    components = []
    for i, level in enumerate(levels):
        text, first_field = _format_level(level, fields)
        fallback = _unknown(first_field) if first_field else "Unknown"
        if i < len(levels) - 1:
            components.append(sanitize_component(text, fallback=fallback))
        else:
            stem = sanitize_component(text, fallback=fallback, max_bytes=200 - len(suffix))
            components.append(stem + suffix)
    return components


@dataclass
class _Piece:
    """A run of literal template text, or one field's rendered value."""

    text: str
    field: str | None = None  # set for a field
    value: str | None = None  # a field's text; None when it is empty


def _format_level(level: str, fields: Mapping[str, object]) -> tuple[str, str | None]:
    """Format one template level; also return its first field name (for the fallback)."""
    pieces: list[_Piece] = []
    for literal, name, spec, conversion in string.Formatter().parse(level):
        if literal:
            pieces.append(_Piece(literal))
        if name is not None:
            value = _render_value(fields.get(name), spec or "", conversion)
            # The mark must stay unique: a NUL in a value becomes a space (sanitizing would).
            value = value.replace(_EMPTY, " ") if value is not None else None
            pieces.append(_Piece("", field=name, value=value))
    _drop_carried_versions(pieces)
    for piece in pieces:
        if piece.field is not None:
            piece.text = _EMPTY if piece.value is None else piece.value
    text = _remove_empty(pieces)
    first_field = next((p.field for p in pieces if p.field), None)
    return text, first_field


def _drop_carried_versions(pieces: list[_Piece]) -> None:
    """Empty each version field whose value the name so far already carries.

    The name so far is the level with only its title, song and earlier version fields filled
    in (an artist called "Club Dogo" carries no "Club" mix)."""
    for index, piece in enumerate(pieces):
        if piece.field not in VERSION_FIELDS or piece.value is None:
            continue
        shown: list[str] = []
        for position, other in enumerate(pieces):
            if other.field is None:
                shown.append(other.text)
            elif other.value is not None and (
                other.field in _NAME_FIELDS or (other.field in VERSION_FIELDS and position < index)
            ):
                shown.append(other.value)
            else:
                shown.append(_EMPTY)
        name = _strip_marks("".join(shown))
        if name and version_in_name(name, piece.value):
            piece.value = None
        elif name and piece.field == "version":
            piece.value = _version_left(name, piece.value)


def _version_left(name: str, shown: str) -> str | None:
    """The part of a `{version}` the name does not say yet: `Song [Clean]` + `Extended Clean`
    → `Extended`."""
    _, have = split_title(name)
    want = parse_version(shown)
    have_mix = set((have.mix or "").split())
    mix = " ".join(word for word in (want.mix or "").split() if word not in have_mix)
    left = Version(
        mix or None,
        None if want.advisory == have.advisory else want.advisory,
        None if want.quality == have.quality else want.quality,
        want.video and not have.video and want.quality is None,
    )
    return _version_shown(left) or None


def _remove_empty(pieces: list[_Piece]) -> str:
    """Join the pieces; empty fields vanish with their brackets or separator, or read
    `Unknown <Field>` when they are neither optional nor alone in brackets."""
    bracketed = [m.span() for m in _EMPTY_BRACKETS.finditer("".join(p.text for p in pieces))]
    position = 0
    for piece in pieces:
        length = len(piece.text)
        if piece.field is not None and piece.value is None:
            inside = any(start <= position < end for start, end in bracketed)
            if not inside and piece.field not in OPTIONAL_FIELDS:
                piece.text = _unknown(piece.field)
        position += length
    return _strip_marks("".join(p.text for p in pieces))


def _strip_marks(text: str) -> str:
    """Remove empty-field marks with the brackets or separator that belonged to them."""
    text = _EMPTY_BRACKETS.sub("", text)
    while True:  # "T - {year} - {rule}": each pass takes one " - " and the mark after it
        shorter = _EMPTY_AFTER_TEXT.sub("", text)
        if shorter == text:
            break
        text = shorter
    text = _EMPTY_LEADING.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


#: Extensions whose files are videos (for the version's quality and `{version}`).
_VIDEO_EXTS = frozenset({"mp4", "m4v", "mov"})
_QUALITY_SHOWN = {"sd": "SD", "qhd": "qHD", "hd": "HD", "fhd": "FHD", "4k": "4K"}


def template_fields(
    meta: Mapping[str, Any], *, pool: str, item_id: str, ext: str, origin: str = ""
) -> dict[str, Any]:
    """Every `file_template` field for one download (docs/interface.md §9).

    `meta` is the plan's metadata as the pool gave it (artist, title, mix, advisory, genre,
    bpm, key, year or date, source, quality, editor); `origin` the job's ("rule:NAME" fills
    `{rule}`). `{song}` and `{version}` come from songkey: the title without version
    annotations, and the version the title and the pool's fields name."""
    fields: dict[str, Any] = {**meta, "pool": pool, "id": item_id}
    title = _text(meta.get("title"))
    artist = _text(meta.get("artist"))
    if title:
        parsed = parse(
            artist,
            title,
            mix=_text(meta.get("mix")) or None,
            advisory=_text(meta.get("advisory")) or None,
            media="video" if sanitize_ext(ext) in _VIDEO_EXTS else None,
            quality=_text(meta.get("quality")) or None,
        )
        fields["song"] = parsed.song
        fields["version"] = _version_shown(parsed.version)
        if parsed.version.advisory:
            fields["advisory"] = parsed.version.advisory.title()
    if not _text(meta.get("year")):
        date = _text(meta.get("date"))
        fields["year"] = date[:4] if date[:4].isdigit() else None
    rule_name = origin.removeprefix("rule:") if origin.startswith("rule:") else ""
    fields["rule"] = rule_name or None
    return fields


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _version_shown(version: Version) -> str:
    """A version label as a name shows it: `xtendz clean qhd` → `Xtendz Clean qHD`."""
    words = version.label.split()
    return " ".join(_QUALITY_SHOWN.get(word) or word[:1].upper() + word[1:] for word in words)


def _render_value(value: object, spec: str, conversion: str | None) -> str | None:
    """One field's text, or None when it is missing or blank."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if conversion == "r":
        value = repr(value)
    elif conversion == "a":
        value = ascii(value)
    try:
        text = format(value, spec)
    except (ValueError, TypeError):
        # A spec that does not fit the value ("{bpm:03d}" with "128") is the user's template
        # meeting a pool's data: show the value rather than fail the download.
        text = str(value)
    return text if text.strip() else None


def _unknown(field: str) -> str:
    """`genre` → `Unknown Genre`, `release_name` → `Unknown Release Name`."""
    words = re.split(r"[^0-9A-Za-z]+", field)
    return " ".join(["Unknown", *(w.capitalize() for w in words if w)])


def final_path(root: Path, components: list[str]) -> Path:
    """Join sanitized components under `root`, refusing escapes and symlinks (N1, N3).

    Every component that already exists is checked with `lstat` and must not be a symlink (this
    includes the file name itself); the joined path's realpath must lie inside realpath(root).
    """
    if not components:
        raise PathEscape("no path components")
    for comp in components:
        if comp in ("", ".", "..") or any(ch in comp for ch in "/\\\0"):
            raise PathEscape(f"unsafe path component {comp!r}")
    real_root = os.path.realpath(root)
    current = real_root
    for comp in components:
        current = os.path.join(current, comp)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode):
            raise PathEscape(f"refusing to write through a symlink: {current}")
    candidate = os.path.join(real_root, *components)
    if not os.path.realpath(candidate).startswith(real_root.rstrip(os.sep) + os.sep):
        raise PathEscape(f"path leaves the library root: {candidate}")
    return Path(root, *components)


def ensure_dirs(root: Path, components: list[str]) -> Path:
    """Create the folders for `components[:-1]` under `root` without following symlinks.

    `root` itself must exist: creating it could write onto the disk under an unmounted library
    drive. Each new folder's parent is fsynced so a later rename into it survives a crash (C4).
    Returns the folder the file (the last component) goes in.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for comp in components[:-1]:
            if comp in ("", ".", "..") or "/" in comp:
                raise PathEscape(f"unsafe path component {comp!r}")
            try:
                os.mkdir(comp, 0o755, dir_fd=fd)
                fsync_dir(fd)
            except FileExistsError:
                pass
            try:
                child = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as err:
                # Linux says ENOTDIR for a symlink opened with O_DIRECTORY|O_NOFOLLOW, BSDs ELOOP.
                if err.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(
                    os.stat(comp, dir_fd=fd, follow_symlinks=False).st_mode
                ):
                    raise PathEscape(f"refusing to follow the symlink {comp!r} in {root}") from err
                raise
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return Path(root, *components[:-1])


def unique_path(
    path: Path,
    *,
    same_content: Callable[[Path], bool] | None = None,
    split_ext: bool = True,
) -> Path:
    """A free name for `path`: itself, or `name (2).ext`, `name (3).ext`, … (docs/interface.md §5).

    Names are compared case-insensitively and NFC-normalized, since libraries end up on
    case-insensitive filesystems (docs/reliability.md N2). An existing regular file for which
    `same_content` is true is returned as is: it is our own earlier result, adopted (C4).
    `split_ext=False` numbers the whole name (for folders).
    """
    parent = path.parent
    try:
        entries = os.listdir(parent)
    except FileNotFoundError:
        return path
    taken: dict[str, list[str]] = {}
    for entry in entries:
        taken.setdefault(_fold(entry), []).append(entry)
    match = _EXT.search(path.name) if split_ext else None
    stem, suffix = (path.name[: match.start()], match.group(0)) if match else (path.name, "")
    for n in range(1, 10_000):
        if n == 1:
            name = path.name
        else:
            tag = f" ({n})"
            budget = MAX_COMPONENT_BYTES - len(tag.encode()) - len(suffix.encode())
            name = _cut_bytes(stem, budget).rstrip(" .") + tag + suffix
        existing = taken.get(_fold(name))
        if not existing:
            return parent / name
        if same_content is not None:
            for entry in existing:
                candidate = parent / entry
                if stat.S_ISREG(os.lstat(candidate).st_mode) and same_content(candidate):
                    return candidate
    raise FileExistsError(errno.EEXIST, "no free name left", str(path))


def _fold(name: str) -> str:
    """The key two names collide on: NFC and case-folded."""
    return unicodedata.normalize("NFC", name).casefold()
