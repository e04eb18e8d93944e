"""`pooldaemon demo` ends with the files it exported and how to import them into rekordbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pyrekordbox.rbxml import RekordboxXml

from tests.conftest import clean_env


def test_demo_ends_with_the_playlists_and_a_rekordbox_xml_that_loads(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "pooldaemon.cli.daemon", "demo", "--dir", str(base)],
        capture_output=True,
        text=True,
        timeout=100,
        env=clean_env(COLUMNS="200", TERM="dumb"),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tail = done.stdout[done.stdout.index("Into the DJ software") :]
    xml_path = base / "rekordbox.xml"
    assert str(xml_path) in tail
    assert "Preferences → Advanced → rekordbox xml → Imported Library" in tail
    playlists = sorted((base / "library" / "Playlists").glob("*.m3u8"))
    assert playlists and all(str(p) in tail for p in playlists)

    # Every downloaded file is in the collection, and only those (an independent reader).
    library = base / "library"
    files = {
        Path(root) / name
        for root, dirs, names in os.walk(library)
        if not Path(root).is_relative_to(library / ".pooldaemon")
        and not Path(root).is_relative_to(library / "Playlists")
        for name in names
    }
    xml = RekordboxXml(xml_path)
    assert {Path("/" + t["Location"]) for t in xml.get_tracks()} == files
