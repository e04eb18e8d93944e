"""Song key and version parsing speed: titles per second on one core.

Not part of the test run. Usage:

    python tests/benchmarks/bench_songkey.py [--records 174420] [--reps 3]

Three runs over the simulated CrateQ catalog's records (artist, title, tool, advisory, quality):

1. ``sync``: every record parsed with its pool fields, as a catalog sync does (the parser's
   caches warm, as they are after the first pass: titles and annotations repeat);
2. ``unique``: every title made unique (a number appended to the song) and the caches cleared
   first, so no title is seen twice: a catalog of only new songs, like an adopted folder;
3. ``keys``: ``song_key`` alone over the unique titles.

The target is 50,000 titles/s on one core for each.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from pooldaemon import songkey
from pooldaemon.sim.catalog import Catalog

TARGET_PER_S = 50_000


def _clear_caches() -> None:
    songkey._artist_cache.clear()
    songkey._reading_cache.clear()
    songkey._split_cache.clear()


def _records(n: int) -> list[tuple[str, str, str, str, str, str]]:
    catalog = Catalog(n, seed="bench-songkey")
    rows = []
    for record in catalog.records():
        media = "video" if record["video"] else "audio"
        rows.append(
            (
                record["artist"],
                record["title"],
                record["tool"],
                record["advisory"],
                record["quality"],
                media,
            )
        )
    return rows


def _unique(rows: list[tuple[str, str, str, str, str, str]]) -> list[tuple[str, ...]]:
    unique = []
    for index, (artist, title, *rest) in enumerate(rows):
        song, bracket, tail = title.partition(" [")
        unique.append((f"{artist} {index}", f"{song} {index}{bracket}{tail}", *rest))
    return unique


def _time(label: str, count: int, reps: int, run: Callable[[], None], cold: bool) -> float:
    best = float("inf")
    for _ in range(reps):
        if cold:
            _clear_caches()
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    rate = count / best
    verdict = "ok" if rate >= TARGET_PER_S else "MISS"
    print(f"{label:8} {count:>9,} titles  {best:6.2f} s  {rate:>10,.0f} titles/s  {verdict}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=174_420)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows = _records(args.records)
    unique = _unique(rows)
    parse = songkey.parse
    song_key = songkey.song_key

    def sync() -> None:
        for artist, title, mix, advisory, quality, media in rows:
            parse(artist, title, mix=mix, advisory=advisory, quality=quality, media=media)

    def fresh() -> None:
        for artist, title, mix, advisory, quality, media in unique:
            parse(artist, title, mix=mix, advisory=advisory, quality=quality, media=media)

    def keys() -> None:
        for artist, title, *_ in unique:
            song_key(artist, title)

    _clear_caches()
    sync()  # the first pass fills the caches, as a daemon's first sync does
    _time("sync", len(rows), args.reps, sync, cold=False)
    _time("unique", len(unique), args.reps, fresh, cold=True)
    _time("keys", len(unique), args.reps, keys, cold=True)


if __name__ == "__main__":
    main()
