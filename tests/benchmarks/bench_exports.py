"""Export benchmark (issue 16): a 100,000-file library in all four formats.

Not part of the test run. Usage:

    python tests/benchmarks/bench_exports.py [--tracks 100000] [--reps 3]

Builds `--tracks` synthetic `ExportTrack`s (names with `&`, quotes, non-Latin letters, emoji),
three pool playlists covering every track, ten rule playlists of 5% each and a "New this week"
of 2%, then runs `export_all` with M3U8, rekordbox XML, Traktor NML and Serato crates switched
on, into a temp folder. Reported: wall (and CPU) seconds of each full export, then of a
re-export after 10 new tracks (given what the last export wrote: unchanged files are left alone
and the collections copy unchanged entries from the old files), the peak RSS of the
process (`ru_maxrss`, which includes the library held in memory) and the RSS before the first
export, and the size of each format on disk. Targets: < 10 s and < 200 MB peak.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pooldaemon.exports import ExportTargets, ExportTrack, Playlist, PlaylistKind, export_all

POOLS = ("crateq", "promoonly", "harvest")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def library(count: int, root: Path) -> tuple[list[ExportTrack], list[Playlist]]:
    """`count` tracks spread over three pools, and the playlists over them."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tracks = []
    for i in range(count):
        pool = POOLS[i % 3]
        artist = f"Artist {i % 5000} & Friends" if i % 7 else f"Артист {i % 900} 🔥"
        title = f'Song {i} "Extended" <Clean>' if i % 5 else f"曲 {i} (Remix)"
        plain = title.replace('"', "")
        tracks.append(
            ExportTrack(
                path=root / pool / f"{artist} - {plain} #{i}.mp3",
                artist=artist,
                title=title,
                album=f"Album {i % 20000}",
                genre=("House", "Hip-Hop & R&B", "Techno", "Reggaetón")[i % 4],
                bpm=80 + (i % 900) / 10,
                key=("8A", "Am", "F#m", "11B", None)[i % 5],
                year=1990 + i % 36,
                label=f"Label {i % 300}",
                mix=("Clean", "Dirty", "Intro", "")[i % 4],
                comment=f"{pool} ref {i}",
                duration_s=120 + i % 400,
                size_bytes=5_000_000 + i,
                added=start + timedelta(minutes=i),
                kind="MP3 File",
                pool=pool,
                ref=f"{pool}:{i}",
            )
        )
    playlists = [
        Playlist(pool, PlaylistKind.POOL, tuple(t.path for t in tracks if t.pool == pool))
        for pool in POOLS
    ]
    for rule in range(10):
        members = tuple(t.path for t in tracks[rule::20])
        playlists.append(Playlist(f"Rule {rule} <&>", PlaylistKind.RULE, members))
    recent = tuple(t.path for t in tracks[-count // 50 :])
    playlists.append(Playlist("New this week", PlaylistKind.RECENT, recent))
    return tracks, playlists


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
        base = Path(tmp)
        built = time.perf_counter()
        tracks, playlists = library(args.tracks, base / "library")
        built = time.perf_counter() - built
        rss_before = _rss_mb()
        targets = ExportTargets(
            m3u8_dir=base / "library" / "Playlists",
            m3u8_root=base / "library",
            rekordbox_xml=base / "rekordbox.xml",
            traktor_nml=base / "collection.nml",
            serato_dir=base / "_Serato_",
        )
        times = []
        cpu = []
        written = []
        for _ in range(args.reps):
            # Each full export starts from nothing: no digests, nothing to copy from.
            for w in written:
                w.path.unlink()
            started, cpu_started = time.perf_counter(), time.process_time()
            written = export_all(tracks, playlists, targets)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        extra = [
            replace(t, path=t.path.with_name(f"new {i}.mp3")) for i, t in enumerate(tracks[:10])
        ]
        tracks += extra
        playlists[-1] = replace(
            playlists[-1], tracks=playlists[-1].tracks + tuple(t.path for t in extra)
        )
        digests = {w.target: w.digest for w in written}
        fragments = {w.target: w.layout for w in written if getattr(w, "layout", None)}
        last = replace(targets, last_digests=digests)
        if fragments:
            last = replace(last, layouts=fragments)
        started = time.perf_counter()
        written = export_all(tracks, playlists, last)
        incremental = time.perf_counter() - started
        assert not any(w.beside for w in written)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sizes: dict[str, int] = {}
        for w in written:
            sizes[w.format] = sizes.get(w.format, 0) + w.path.stat().st_size
    print(f"tracks: {args.tracks:,}  playlists: {len(playlists)}  (built in {built:.1f} s)")
    print("full export, all four formats: " + ", ".join(f"{t:.2f} s" for t in times))
    print("  of which CPU: " + ", ".join(f"{t:.2f} s" for t in cpu))
    print(f"re-export after 10 new tracks: {incremental:.2f} s")
    print(f"RSS before exporting: {rss_before:.0f} MB; peak RSS: {peak_mb:.0f} MB")
    print("on disk: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
