"""Atomic replacement and the user's own edits (docs/reliability.md E1)."""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pooldaemon.exports import export_all
from pooldaemon.exports.writefile import beside_path, write_export
from tests.exports.library import all_targets, make_library

REPO = Path(__file__).resolve().parents[2]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_first_write_and_our_own_rewrite_replace_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "list.m3u8"
    first = write_export("m3u8", target, [b"one\n", b"two\n"], None)
    assert first.path == target and not first.beside
    assert target.read_bytes() == b"one\ntwo\n" and first.digest == _sha(b"one\ntwo\n")
    second = write_export("m3u8", target, [b"three\n"], first.digest)
    assert second.path == target and target.read_bytes() == b"three\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in target.parent.iterdir()) == ["list.m3u8"]


def test_a_hand_edited_file_survives_and_ours_lands_beside_it(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    targets = all_targets(tmp_path, library)
    first = export_all(library.tracks, library.playlists, targets)
    digests = {w.target: w.digest for w in first}
    xml = targets.rekordbox_xml
    assert xml is not None
    edited = xml.read_bytes().replace(b"</DJ_PLAYLISTS>", b"<!-- mine --></DJ_PLAYLISTS>")
    xml.write_bytes(edited)

    again = all_targets(tmp_path, library, last_digests=digests)
    second = export_all(library.tracks, library.playlists, again)
    by_target = {w.target: w for w in second}
    assert xml.read_bytes() == edited  # the user's edit survives
    moved = by_target[xml]
    assert moved.beside and moved.path == beside_path(xml)
    assert moved.path.name == "rekordbox (pooldaemon).xml"
    assert _sha(moved.path.read_bytes()) == moved.digest == digests[xml]
    # Files nobody edited were simply replaced.
    assert all(not w.beside for w in second if w.target != xml)


def test_an_unchanged_export_is_not_rewritten(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    first = export_all(library.tracks, library.playlists, all_targets(tmp_path, library))
    before = {w.path: (w.path.stat().st_ino, w.path.stat().st_mtime_ns) for w in first}
    digests = {w.target: w.digest for w in first}
    # One playlist changes (a track leaves it); every other file would get the same bytes.
    changed = library.playlists[0]
    playlists = [replace(changed, tracks=changed.tracks[1:]), *library.playlists[1:]]
    again = all_targets(tmp_path, library, last_digests=digests)
    second = export_all(library.tracks, playlists, again)

    rewritten = {w.path for w in second if w.replaced}
    # The changed playlist's M3U8 and crate and the two collections listing it.
    assert {w.format for w in second if w.replaced} == {"m3u8", "serato", "rekordbox", "traktor"}
    assert len(rewritten) == 4
    for w in second:
        stat = w.path.stat()
        same = (stat.st_ino, stat.st_mtime_ns) == before[w.path]
        assert same == (w.path not in rewritten), w.path
        assert _sha(w.path.read_bytes()) == w.digest
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_unchanged_file_beside_the_users_edit_is_not_rewritten(tmp_path: Path) -> None:
    target = tmp_path / "list.m3u8"
    target.write_bytes(b"the user's own list\n")
    first = write_export("m3u8", target, [b"ours\n"], None)
    assert first.beside and first.replaced
    inode = first.path.stat().st_ino
    second = write_export("m3u8", target, [b"ours\n"], first.digest)
    assert second.path == first.path and not second.replaced
    assert first.path.stat().st_ino == inode
    third = write_export("m3u8", target, [b"ours, changed\n"], second.digest)
    assert third.replaced and third.path.read_bytes() == b"ours, changed\n"
    assert target.read_bytes() == b"the user's own list\n"


def test_a_file_we_never_wrote_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "collection.nml"
    target.write_bytes(b"the user's own collection")
    result = write_export("traktor", target, [b"ours"], None)
    assert target.read_bytes() == b"the user's own collection"
    assert result.path == tmp_path / "collection (pooldaemon).nml"
    assert result.path.read_bytes() == b"ours"


_WRITER = textwrap.dedent(
    """
    import sys
    from dataclasses import replace
    from pathlib import Path
    from pooldaemon.exports.rekordbox import rekordbox_bytes
    from pooldaemon.exports.writefile import write_export
    from tests.exports.library import make_library

    base, target = Path(sys.argv[1]), Path(sys.argv[2])
    library = make_library(base)
    digest = sys.argv[3]
    for round_ in range(1000):
        tracks = [
            replace(t, title=f"round {round_}")
            for _ in range(4000)
            for t in library.tracks
        ]
        digest = write_export("rekordbox", target, rekordbox_bytes(tracks, []), digest).digest
    """
)


def _mid_write(proc: subprocess.Popen[bytes], target: Path, before: os.stat_result) -> bool:
    """Whether the writer is mid-export: a big temp file, or the target changed under us."""
    assert proc.poll() is None, "the writer ended before it was killed"
    now = target.stat()
    if (now.st_ino, now.st_size) != (before.st_ino, before.st_size):
        return True
    temps = [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    return any(p.stat().st_size > 1 << 20 for p in temps if p.exists())


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_sigkill_mid_export_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rekordbox.xml"
    initial = write_export("rekordbox", target, [b'<DJ_PLAYLISTS Version="1.0.0"/>'], None)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(4):
        before = target.read_bytes()
        before_stat = target.stat()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                str(tmp_path / f"lib{attempt}"),
                str(target),
                _sha(before),
            ],
            env=env,
            cwd=REPO,
        )
        try:
            _wait_for(functools.partial(_mid_write, proc, target, before_stat), timeout_s=60)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        data = target.read_bytes()
        root = ET.fromstring(data)  # a torn file would not parse
        if data != before:
            collection = root.find("COLLECTION")
            assert collection is not None
            titles = {t.attrib["Name"] for t in collection.findall("TRACK")}
            assert collection.attrib["Entries"] == str(len(collection.findall("TRACK")))
            assert len(titles) == 1  # one whole round, not a mix of two
    # The next export clears what the killed ones left behind.
    write_export("rekordbox", target, [b"<x/>"], _sha(target.read_bytes()))
    assert sorted(p.name for p in target.parent.iterdir()) == ["rekordbox.xml"]
    assert initial.digest != _sha(target.read_bytes())
