"""Playlist names turned into file names every filesystem and DJ app accepts."""

from __future__ import annotations

import re

# Characters Windows, macOS (HFS+/APFS, SMB shares) or FAT-formatted USB sticks refuse, and
# control characters; a DJ's stick is often exFAT, so the strictest set applies everywhere.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_MAX_NAME_BYTES = 200  # leaves room for an extension and " (pooldaemon)" under the 255 limit


def safe_file_name(name: str) -> str:
    """`name` with unsafe characters replaced, no leading dots, not empty, at most 200 bytes."""
    cleaned = _UNSAFE.sub("-", name).strip().lstrip(".").strip()
    encoded = cleaned.encode("utf-8")
    if len(encoded) > _MAX_NAME_BYTES:
        cleaned = encoded[:_MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip()
    # A name of only dots or spaces would be hidden or empty.
    return cleaned or "playlist"


def unique_name(name: str, used: set[str]) -> str:
    """`name`, or `stem (2).ext`, `stem (3).ext` … when another playlist already took it.

    Compared case-folded: macOS and Windows disks do not tell `House` from `house`. Without
    this, two playlists whose names clean up alike would overwrite each other's file.
    """
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while candidate.casefold() in used:
        n += 1
        candidate = f"{stem} ({n}){dot}{ext}"
    used.add(candidate.casefold())
    return candidate
