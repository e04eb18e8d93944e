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
_MOUNTS_PREFIX = f"{MOUNTS_DIR}/"


@dataclass(frozen=True, slots=True)
class OnVolume:
    """A path split into its volume and the part inside it."""

    name: str  # "Macintosh HD", "USB STICK"
    root: PurePosixPath  # "/" or "/Volumes/USB STICK"
    inner: PurePosixPath  # relative to `root`: "Users/dj/Music/a.mp3"


def split_volume(path: PurePosixPath, system_volume: str = SYSTEM_VOLUME_NAME) -> OnVolume:
    """Split an absolute path into volume name, volume root and the path inside it."""
    name, root, inner = split_volume_str(str(path), system_volume)
    return OnVolume(name=name, root=PurePosixPath(root), inner=PurePosixPath(inner))


def split_volume_str(path: str, system_volume: str = SYSTEM_VOLUME_NAME) -> tuple[str, str, str]:
    """`split_volume` on a normalised absolute path string: (name, root, inner), fast enough
    to call for every track of a 100,000-file library."""
    if path.startswith(_MOUNTS_PREFIX):
        name, _, inner = path[len(_MOUNTS_PREFIX) :].partition("/")
        if name:
            return name, _MOUNTS_PREFIX + name, inner
    return system_volume, "/", path.lstrip("/")
