"""ZIP parts as a pool serves a multi-part download, and the spoiled ones tests ask for.

Pure functions over (name, bytes) entries: `split_parts` packs them into parts, `zip_parts`
writes each part as a ZIP, spoiling part 1 as an archive kind says (a path escaping the folder,
a symlink, a bomb, a corrupt or truncated part, an entry in two parts).
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterable

from pooldaemon.sim.media import zip_bytes


def split_parts(
    entries: list[tuple[str, bytes]], part_size: int, forced: int | None
) -> list[list[tuple[str, bytes]]]:
    """Entries packed in order into parts of at most `part_size` bytes (an entry too big for
    one part gets its own), or into `forced` parts of about equal count."""
    if forced is not None:
        count = max(1, min(forced, len(entries)))
        base, extra = divmod(len(entries), count)
        even: list[list[tuple[str, bytes]]] = []
        start = 0
        for index in range(count):
            size = base + (1 if index < extra else 0)
            even.append(entries[start : start + size])
            start += size
        return even
    groups: list[list[tuple[str, bytes]]] = [[]]
    used = 0
    for name, data in entries:
        if groups[-1] and used + len(data) > part_size:
            groups.append([])
            used = 0
        groups[-1].append((name, data))
        used += len(data)
    return groups


def _zip(entries: Iterable[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def _info(name: str, *, compress: bool = False, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = mode << 16
    info.create_system = 3  # Unix, so the mode bits (and a symlink's S_IFLNK) mean something
    return info


def zip_parts(kind: str, groups: list[list[tuple[str, bytes]]]) -> tuple[list[bytes], list[str]]:
    """Each group as a ZIP part, with part 1 (or 1 and 2) spoiled as `kind` says."""
    plain = [list(group) for group in groups]
    extra: list[tuple[zipfile.ZipInfo, bytes]] = []
    bad: list[str] = []
    if kind == "slip":
        bad = ["../../escaped.txt"]
        extra = [(_info(bad[0]), b"written outside the folder\n")]
    elif kind == "absolute":
        bad = ["/tmp/escaped.txt"]
        extra = [(_info(bad[0]), b"written at an absolute path\n")]
    elif kind == "symlink":
        bad = ["evil-link", "evil-link/passwd"]
        extra = [
            (_info(bad[0], mode=0o120777), b"../../../../../../etc"),
            (_info(bad[1]), b"through the link\n"),
        ]
    elif kind == "bomb":
        bad = ["bomb.wav"]
        extra = [(_info(bad[0], compress=True), bytes(4 * 1024 * 1024))]
    elif kind == "duplicate" and len(plain) > 1:
        bad = [plain[0][0][0]]
        plain[1] = [plain[0][0], *plain[1]]
    parts = []
    for index, group in enumerate(plain):
        members = [(_info(name), data) for name, data in group]
        if index == 0:
            members += extra
        parts.append(_zip(members) if members else zip_bytes({}))
    if kind == "corrupt":
        parts[0] = _flip_first_entry(parts[0])
        bad = [plain[0][0][0]]
    elif kind == "truncated":
        parts[0] = parts[0][: len(parts[0]) * 3 // 5]
        bad = [name for name, _ in plain[0]]
    return parts, bad


def _flip_first_entry(data: bytes) -> bytes:
    """Flip one byte in the middle of the first entry's stored data (its CRC then fails)."""
    name_len, extra_len = struct.unpack_from("<HH", data, 26)
    start = 30 + name_len + extra_len
    size = struct.unpack_from("<I", data, 18)[0]
    at = start + max(0, size // 2)
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
