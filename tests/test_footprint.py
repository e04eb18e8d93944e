"""What the daemon does not carry while idle (issue 13: idle RSS): modules imported only when
used. Checked in a fresh interpreter, since the test process imports everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys
import pooldaemon.cli.daemon, pooldaemon.daemon
from pooldaemon.alerts import Alerts
from pooldaemon.informed_config import NotifyConfig
from pooldaemon.downloader import tags
tags.sniff_media(b"ID3")  # sniffing needs no tag library
Alerts(NotifyConfig(), env={})  # no [notify] urls, no desktop: nothing to send with
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _imported(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
    )
    return set(json.loads(out.stdout))


def test_the_idle_daemon_imports_no_tag_notification_or_browser_library() -> None:
    loaded = _imported(_PROBE)
    assert "pooldaemon" in loaded
    for heavy in ("mutagen", "apprise", "selenium", "pydantic_settings"):
        assert heavy not in loaded, f"{heavy} is imported by an idle daemon"


def test_the_tag_library_arrives_with_the_first_tag_write(tmp_path: Path) -> None:
    code = f"""
import json, sys
from pathlib import Path
from pooldaemon.downloader import tags
path = Path({str(tmp_path / "a.mp3")!r})
path.write_bytes(b"\\xff\\xfb\\x90\\x64" + bytes(413))
tags.write_tags(path, {{"artist": "A"}})
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
    assert "mutagen" in _imported(code)
