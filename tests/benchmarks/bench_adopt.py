"""Adopting a folder: files per second, and what a second scan of the same folder costs.

Not part of the test run. Usage:

    python tests/benchmarks/bench_adopt.py [--files 20000] [--mirror 174420]

Builds a mirror of `--mirror` tracks (the simulated CrateQ catalog through the store's page
writer) and a folder of `--files` files in a temp dir: three in four are MP3s tagged by mutagen
with a mirrored track's artist and title (the version in brackets, as DJs tag), the rest WAVs
named `Artist - Title (Version).wav`; one in ten names a song the mirror does not have. Then
the real `Library.adopt` (walk, reading in its worker process, matching, recording) runs twice:

1. the first scan: every file opened and read;
2. the second scan of the unchanged folder: only stats (size, mtime, inode) are compared.

The mirror's song keys are stored before the first scan (the daemon's background pass does that
after each sync), and timed apart. Target: 20,000 files in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mutagen.id3 import ID3, TIT2, TPE1

from pooldaemon.events import EventBus
from pooldaemon.library.keeper import Library
from pooldaemon.library_config import LibraryConfig
from pooldaemon.models import Request, Track
from pooldaemon.offload import tune_gc
from pooldaemon.sim.catalog import Catalog
from pooldaemon.sim.media import mp3_bytes, wav_bytes
from pooldaemon.store import Store, catalog

TARGET_S = 60.0


async def _no_submit(request: Request, origin: str, **_: Any) -> dict[str, Any]:
    raise AssertionError("adopting never downloads")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _tracks(n: int) -> list[Track]:
    tracks = []
    for record in Catalog(n, seed="bench-adopt").records():
        tracks.append(
            Track(
                "crateq",
                str(record["mediaId"]),
                artist=record["artist"],
                title=record["title"],
                mix=record["tool"],
                advisory=record["advisory"],
                video=bool(record["video"]),
                quality=record["quality"] or None,
            )
        )
    return tracks


def _folder(root: Path, tracks: list[Track], files: int) -> None:
    mp3 = mp3_bytes("bench", 8000)
    wav = wav_bytes("bench", 4000)
    audio = [t for t in tracks if not t.video]
    for index in range(files):
        track = audio[index % len(audio)]
        artist, title = track.artist or "", track.title or ""
        if index % 10 == 9:
            artist, title = f"Unknown {index}", f"Nothing {index}"
        folder = root / f"crate{index % 40:02d}"
        folder.mkdir(exist_ok=True)
        if index % 4 == 3:
            version = " ".join(v for v in (track.mix, track.advisory) if v)
            name = f"{artist} - {title} ({version}).wav".replace("/", "-")
            (folder / name).write_bytes(wav)
            continue
        path = folder / f"{index:06d}.mp3"
        path.write_bytes(mp3)
        tags = ID3(path)
        tags.add(TPE1(text=artist))
        tags.add(TIT2(text=f"{title} [{track.mix or ''} {track.advisory or ''}]"))
        tags.save(path)


async def _run(args: argparse.Namespace) -> None:
    tune_gc()
    work = Path(tempfile.mkdtemp(prefix="bench-adopt-"))
    try:
        started = time.perf_counter()
        tracks = _tracks(args.mirror)
        music = work / "Music"
        music.mkdir()
        _folder(music, tracks, args.files)
        print(f"set-up: {args.mirror:,} tracks, {args.files:,} files in ", end="")
        print(f"{time.perf_counter() - started:.1f} s")
        store = await Store.open(work / "state.db")
        try:
            for start in range(0, len(tracks), 1000):
                await catalog.apply_page(
                    store, "crateq", tracks[start : start + 1000], seen_at=time.time()
                )
            library = Library(store, LibraryConfig(), EventBus(), _no_submit)
            started = time.perf_counter()
            own = resource.getrusage(resource.RUSAGE_SELF)
            keyed = await library.complete()
            after = resource.getrusage(resource.RUSAGE_SELF)
            spent = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
            print(
                f"song keys of the mirror: {keyed:,} in {time.perf_counter() - started:.2f} s, "
                f"CPU of this process {spent:.2f} s"
            )
            for label in ("first scan", "second scan"):
                cpu = _cpu()
                started = time.perf_counter()
                report = await library.adopt([str(music)])
                wall = time.perf_counter() - started
                used = _cpu() - cpu
                verdict = "ok" if wall < TARGET_S else "MISS"
                counts = {k: v for k, v in report.items() if k != "problems"}
                print(
                    f"{label:12} {wall:6.2f} s  CPU {used:6.2f} s  "
                    f"{args.files / wall:8,.0f} files/s  {verdict}  {counts} "
                    f"problems={len(report['problems'])}"
                )
        finally:
            await store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--mirror", type=int, default=174_420)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
