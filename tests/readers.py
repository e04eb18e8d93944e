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
