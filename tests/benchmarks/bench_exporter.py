"""The daemon's export path (issue 16): a 100,000-file library from state.db to four formats.

Not part of the test run. Usage:

    python tests/benchmarks/bench_exporter.py [--files 100000]

Fills a fresh state database with `--files` library entries (jobs with download plans, mirrored
tracks, a tenth of them from rules, three pools), then times `Exporter.export_now` with M3U8,
rekordbox XML, Traktor NML and Serato crates on: the whole path the daemon takes (the library
query, building tracks and playlists, writing, recording digests). Then 10 more entries and an
export again: files were only added, so the exporter reads just those and splices each file
from the one it wrote last (files whose bytes do not change are left alone). Reports wall
seconds, CPU seconds, the peak RSS (`ru_maxrss`, which includes the library held in memory)
and the RSS before. The media files are not created: the exports only name them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from pooldaemon.config import ExportsConfig
from pooldaemon.events import EventBus
from pooldaemon.exporter import Exporter
from pooldaemon.store import Store

POOLS = ("crateq", "promoonly", "harvest")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _fill(store: Store, root: Path, first: int, count: int) -> None:
    now = time.time()
    jobs, library, tracks = [], [], []
    for i in range(first, first + count):
        pool = POOLS[i % 3]
        item = str(i)
        path = root / pool / f"Artist {i % 5000} - Song {i} & Co.mp3"
        meta = {"album": f"Album {i % 20000}", "key": ("8A", "Am", "F#m")[i % 3], "label": "L"}
        plan = {"pool": pool, "item_id": item, "archive": False, "token": "x" * 200, "meta": meta}
        origin = f"rule:rule-{i % 10}" if i % 10 == 0 else "auto"
        created = now - (i % 30) * 86400
        jobs.append(
            (
                i + 1,
                pool,
                item,
                f"{pool}:{item}",
                origin,
                str(path),
                json.dumps(plan),
                created,
                created,
            )
        )
        library.append((pool, item, str(path), 5_000_000, i + 1, created, created))
        tracks.append(
            (
                pool,
                item,
                f"Artist {i % 5000}",
                f"Song {i}",
                "House",
                124,
                2024,
                "Extended",
                240,
                now,
                now,
            )
        )
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO jobs (id, pool, kind, item_id, ref, origin, state, path, plan, created, "
            "updated) VALUES (?, ?, 'track', ?, ?, ?, 'done', ?, ?, ?, ?)",
            jobs,
        )
        await db.executemany(
            "INSERT INTO library (pool, kind, item_id, path, size, sha256, state, job_id, "
            "created, updated) VALUES (?, 'track', ?, ?, ?, '', 'downloaded', ?, ?, ?)",
            library,
        )
        await db.executemany(
            "INSERT INTO tracks (pool, id, artist, title, genre, bpm, year, mix, length_s, "
            "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tracks,
        )


async def main(files: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp:
        root = Path(tmp)
        store = await Store.open(root / "state" / "state.db")
        # In batches: the fixture's own rows must not set the peak the export is measured by.
        for first in range(0, files, 10_000):
            await _fill(store, root / "library", first, min(10_000, files - first))
        serato = root / "_Serato_"
        cfg = ExportsConfig.model_validate(
            {
                "m3u8_dir": str(root / "Playlists"),
                "rekordbox_xml": str(root / "rekordbox.xml"),
                "traktor_nml": str(root / "collection.nml"),
                "serato_dir": str(serato),
            }
        )
        exporter = Exporter(store, cfg, root / "library", EventBus())
        await exporter.start()
        before = _rss_mb()
        started, cpu = time.perf_counter(), time.process_time()
        written = await exporter.export_now()
        full = time.perf_counter() - started
        full_cpu = time.process_time() - cpu
        peak_full = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        await _fill(store, root / "library", files, 10)
        started, cpu = time.perf_counter(), time.process_time()
        second = await exporter.export_now()
        again = time.perf_counter() - started
        again_cpu = time.process_time() - cpu
        await exporter.stop()
        await store.close()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rewritten = sum(getattr(w, "replaced", True) for w in second)
        print(f"files={files} written={len(written)}, after 10 new: {rewritten} rewritten")
        print(f"full export: {full:.2f} s; after 10 new files: {again:.2f} s")
        print(f"  CPU (all threads): {full_cpu:.2f} s; {again_cpu:.2f} s")
        print(f"RSS before: {before:.0f} MB; peak: {peak_full:.0f} MB after the full export,")
        print(f"  {peak:.0f} MB after the second")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.files))
    sys.exit(0)
