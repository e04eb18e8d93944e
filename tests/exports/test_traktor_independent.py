"""The Traktor writer checked by the NML checker written apart from it (nml_checks.py)."""

from __future__ import annotations

from pathlib import Path

from pooldaemon.exports import export_all
from tests.exports.library import all_targets, make_library
from tests.exports.nml_checks import check_nml


def test_our_nml_passes_the_independent_checker(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    targets = all_targets(tmp_path, library, m3u8_dir=None, rekordbox_xml=None, serato_dir=None)
    [written] = export_all(library.tracks, library.playlists, targets)
    assert check_nml(written.path.read_bytes()) == []
