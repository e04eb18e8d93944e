"""Which volume a file is on, as Traktor and Serato name it.

Both store a file as (volume, path inside the volume). On macOS an external drive is mounted
at `/Volumes/NAME`; everything else is on the system volume, which Traktor calls by its
name ("Macintosh HD" unless the user renamed it) and Serato by its root `/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

MOUNTS_DIR = PurePosixPath("/Volumes")
SYSTEM_VOLUME_NAME = "Macintosh HD"


@dataclass(frozen=True, slots=True)
class OnVolume:
    """A path split into its volume and the part inside it."""

    name: str  # "Macintosh HD", "USB STICK"
    root: PurePosixPath  # "/" or "/Volumes/USB STICK"
    inner: PurePosixPath  # relative to `root`: "Users/dj/Music/a.mp3"


def split_volume(path: PurePosixPath, system_volume: str = SYSTEM_VOLUME_NAME) -> OnVolume:
    """Split an absolute path into volume name, volume root and the path inside it."""
    parts = path.parts
    if len(parts) > 2 and PurePosixPath(*parts[:2]) == MOUNTS_DIR:
        root = PurePosixPath(*parts[:3])
        return OnVolume(name=parts[2], root=root, inner=PurePosixPath(*parts[3:]))
    return OnVolume(name=system_volume, root=PurePosixPath("/"), inner=PurePosixPath(*parts[1:]))
