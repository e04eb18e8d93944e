"""Adopting a folder of 2,000 files (docs/interface.md §8, docs/reliability.md L1): tags first,
then file names, then lengths; ambiguity reported; the odd files reported; nothing written.

The mirror is filled through the store's own page writer; the files are the simulators' media,
tagged by mutagen. Every file's bytes and mtime are hashed before and after."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mutagen.id3 import ID3, TIT2, TPE1

from pooldaemon.events import EventBus
from pooldaemon.library.keeper import Library
from pooldaemon.library.scan import read_files, walk
from pooldaemon.library_config import LibraryConfig
from pooldaemon.models import Request, Track
from pooldaemon.sim.media import write_media
from pooldaemon.store import Store, catalog
from pooldaemon.store import library as store_library
from tests.another_user import NOBODY, as_nobody

TAGGED, NAMED, UNKNOWN, AMBIGUOUS = 1200, 400, 250, 100
# 128 kbit/s CBR frames: 16,000 bytes a second.
SIX_SECONDS = 96_000 + 10


async def no_submit(request: Request, origin: str, **_: Any) -> dict[str, Any]:
    raise AssertionError("adopting never downloads")


def fingerprint(root: Path) -> dict[bytes, tuple[str, int]]:
    """Every regular file under `root`: its bytes' SHA-256 and its mtime (links not followed)."""
    seen: dict[bytes, tuple[str, int]] = {}
    for folder, _dirs, files in os.walk(os.fsencode(root)):
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            with open(path, "rb") as fh:
                seen[path] = (hashlib.sha256(fh.read()).hexdigest(), st.st_mtime_ns)
    return seen


def tag(path: Path, artist: str, title: str) -> None:
    tags = ID3(path)
    tags.add(TPE1(text=artist))
    tags.add(TIT2(text=title))
    tags.save(path)


async def build(store: Store, root: Path) -> dict[str, Any]:
    """The mirror (CrateQ and Harvest tracks) and a folder holding copies of some of them."""
    crateq: list[Track] = []
    harvest: list[Track] = []
    expected: dict[str, str] = {}  # path → the ref it must be matched to
    music = root / "Music"
    for i in range(TAGGED):
        crateq.append(
            Track(
                "crateq",
                str(1000 + i),
                artist=f"Artist {i} feat. Guest",
                title=f"Song {i}",
                mix="Extended",
                advisory="Clean",
            )
        )
        path = music / f"tagged/{i % 7}/track{i:05d}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_media(path, "mp3", f"t{i}", 6000)
        # A DJ's own tags: featured artist spelled differently, version in brackets.
        tag(path, f"Artist {i} ft. Someone", f"Song {i} [Extended Clean]")
        expected[str(path)] = f"crateq:{1000 + i}"
    for i in range(NAMED):
        harvest.append(
            Track(
                "harvest",
                f"h{i}",
                artist=f"Band {i}",
                title=f"Tune {i}",
                mix="Intro",
                advisory="Dirty",
            )
        )
        # The same song+version in CrateQ too: one recording, prefer_pools picks CrateQ.
        crateq.append(
            Track("crateq", str(5000 + i), artist=f"Band {i}", title=f"Tune {i} (Intro) (Dirty)")
        )
        path = music / "named" / f"{i + 1:02d} - Band {i} - Tune {i} (Intro Dirty).wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_media(path, "wav", f"n{i}", 3000)
        expected[str(path)] = f"crateq:{5000 + i}"
    for i in range(UNKNOWN):
        path = music / "other" / f"Nobody {i} - Unknown {i}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_media(path, "mp3", f"u{i}", 6000)
    for i in range(AMBIGUOUS):
        # Two CrateQ recordings of one song+version, 4 s apart; the 6 s file is within 3 s of
        # both: which one it is cannot be told.
        for n, length in ((0, 4), (1, 8)):
            crateq.append(
                Track(
                    "crateq",
                    str(9000 + 2 * i + n),
                    artist=f"Twin {i}",
                    title=f"Echo {i}",
                    length_s=length,
                )
            )
        path = music / "ambiguous" / f"twin{i}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_media(path, "mp3", f"a{i}", SIX_SECONDS)
        tag(path, f"Twin {i}", f"Echo {i}")
    await catalog.apply_page(store, "crateq", crateq, seen_at=time.time())
    await catalog.apply_page(store, "harvest", harvest, seen_at=time.time())
    # docs/reliability.md L1: the odd ones.
    odd = music / "odd"
    odd.mkdir()
    (odd / "empty.mp3").write_bytes(b"")
    whole = music / "tagged/0/track00000.mp3"
    (odd / "cut.mp3").write_bytes(whole.read_bytes()[:-200])
    os.mkfifo(odd / "pipe.mp3")
    os.symlink(music, odd / "loop")
    os.symlink(odd / "nowhere.mp3", odd / "dangling.mp3")
    with open(os.fsencode(odd) + b"/Caf\xe9 del Mar.mp3", "wb") as fh:  # a Latin-1 name
        fh.write(whole.read_bytes())
    (music / "notes.txt").write_text("not media: ignored")
    files = TAGGED + NAMED + UNKNOWN + AMBIGUOUS
    assert files == 1950
    for i in range(2000 - files - 6):
        path = music / "other" / f"Filler {i} - Filler {i}.mp3"
        write_media(path, "mp3", f"f{i}", 6000)
    return {"music": music, "expected": expected}


async def test_adopting_2000_files_matches_reports_and_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    built = await build(store, tmp_path)
    music: Path = built["music"]
    before = fingerprint(music)
    library = Library(store, LibraryConfig(), EventBus(), no_submit)

    preview = await library.adopt([str(music)], dry_run=True)
    assert await store_library.state_counts(store) == {}  # a dry run records nothing
    report = await library.adopt([str(music)])
    assert {k: v for k, v in preview.items() if k != "items"} == report

    assert report["matched"] == TAGGED + NAMED
    assert report["ambiguous"] == AMBIGUOUS
    problems = {Path(p["path"]).name: p["reason"] for p in report["problems"]}
    assert problems == {
        "empty.mp3": "empty file (0 bytes)",
        "cut.mp3": "truncated: the last MP3 frame is cut short",
        "pipe.mp3": "not a regular file (a pipe, device or socket)",
        "loop": "symbolic link loop: not followed again",
        "dangling.mp3": "vanished, or a broken symbolic link",
        "Caf\\xe9 del Mar.mp3": "the file name is not UTF-8 text: not adopted",
    }
    # Every regular media file is scanned once, plus the odd entries.
    assert report["scanned"] == 2000 - 6 + 6
    assert report["unmatched"] == 2000 - 6 - TAGGED - NAMED - AMBIGUOUS

    listed = await store_library.list_entries(store, state="adopted", limit=5000)
    assert listed["total"] == TAGGED + NAMED
    got = {item["path"]: item["ref"] for item in listed["items"]}
    assert got == built["expected"]
    # Tags first: the tagged files' version is what their tags say.
    tagged = next(i for i in listed["items"] if i["ref"] == "crateq:1000")
    assert (tagged["song"], tagged["version"]) == ("artist0/song0", "extended clean")
    ambiguous = [i for i in preview["items"] if i["state"] == "ambiguous"]
    assert len(ambiguous) == AMBIGUOUS
    assert sorted(ambiguous[0]["candidates"]) == sorted(
        f"crateq:{9000 + 2 * int(ambiguous[0]['path'].split('twin')[1][:-4]) + n}" for n in (0, 1)
    )

    # docs/reliability.md L1: not one byte or mtime changed, dry run and adopt alike.
    assert fingerprint(music) == before

    # A second scan reads only what changed: one file given new tags.
    changed = music / "other" / "Nobody 0 - Unknown 0.mp3"
    tag(changed, "Artist 1", "Song 1 (Extended) (Clean)")
    since = time.time()
    again = await library.adopt([str(music)])
    rows = await store.fetchall("SELECT path FROM adopt_files WHERE scanned >= ?", (since,))
    assert [r[0] for r in rows] == [str(changed)]
    assert again["matched"] == TAGGED + NAMED + 1  # adopted ones count as matched, once


def test_a_file_still_being_written_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "Growing - Song.mp3"
    write_media(path, "mp3", "g", 6000)
    found, problems = walk([str(tmp_path)])
    assert not problems
    with path.open("ab") as fh:  # the download of another program goes on
        fh.write(b"\x00" * 417)
    (read,) = read_files([(f.path, f.size, f.mtime_ns, f.inode) for f in found])
    assert read.problem == "changed while being scanned (still being written?)"


def _scan(folder: str) -> list[tuple[str, str | None]]:
    """Walk and read `folder` as the adopt step does: each file's name and problem."""
    found, problems = walk([folder])
    assert not problems
    reads = read_files([(f.path, f.size, f.mtime_ns, f.inode) for f in found])
    return sorted((os.path.basename(r.path), r.problem) for r in reads)


def test_an_unreadable_file_is_reported(tmp_path: Path) -> None:
    # Root reads any file whatever its mode, so as root the scan runs as another user, in a
    # folder that user owns (pytest's own temp folders are root's, mode 0700).
    root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="pd", dir="/tmp")) if root else tmp_path
    try:
        write_media(folder / "Open - Song.mp3", "mp3", "o", 6000)
        locked = folder / "Locked - Song.mp3"
        write_media(locked, "mp3", "l", 6000)
        locked.chmod(0)
        if root:
            os.chown(folder, NOBODY, NOBODY)
            seen = as_nobody(_scan, str(folder))
        else:
            seen = _scan(str(folder))
    finally:
        if root:
            shutil.rmtree(folder)
    # The readable neighbour shows the folder itself was open to the scan.
    assert seen == [
        ("Locked - Song.mp3", "cannot read: permission denied"),
        ("Open - Song.mp3", None),
    ]
