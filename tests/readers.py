"""Independent readers the tests check our files with: exiftool and ffprobe (Debian:
libimage-exiftool-perl, ffmpeg), None where they are not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

EXIFTOOL = shutil.which("exiftool")
FFPROBE = shutil.which("ffprobe")


def ffprobe_tags(path: Path) -> dict[str, str]:
    """ffprobe's container-level tags."""
    assert FFPROBE is not None
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    tags: dict[str, str] = json.loads(out)["format"].get("tags", {})
    return tags


def after_id3(data: bytes) -> bytes:
    """The bytes after a leading ID3v2 tag (the audio), or all of them when there is none.

    The tag's size is a 28-bit syncsafe integer; a footer adds 10 bytes (ID3v2.4 §3.1).
    """
    if data[:3] != b"ID3":
        return data
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    return data[10 + size + (10 if data[5] & 0x10 else 0) :]
