"""Checksum candidates for the library's file hash: GiB/s per update size, GIL release (issue 13).

Not part of the test run. Usage:

    python tests/benchmarks/bench_checksum.py [--mib 256] [--reps 3]

Measures CPU time (`time.process_time`, all threads: less noisy than wall time on a shared
machine): SHA-256 and MD5 through hashlib (OpenSSL), BLAKE2b (hashlib), BLAKE3 (`blake3`
package, one thread: `max_threads` left at 1) and XXH3-128 (`xxhash` package), each fed the
same incompressible buffer in 64 KiB, 1 MiB and 4 MiB updates. The optional packages are
skipped with a note when missing (`pip install blake3 xxhash`; they are not dependencies).

GIL: a second thread counts in a loop while the main thread makes ONE `update` of 256 MiB.
A call that holds the GIL stops the counter for its whole length (~0); one that releases it
lets it run at about its rate just before (~1, lower on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

MIB = 1 << 20
SIZES = (64 * 1024, MIB, 4 * MIB)


def candidates() -> tuple[dict[str, Callable[[], Any]], list[str]]:
    """Name → constructor of a fresh hash object; notes on what is missing."""
    algos: dict[str, Callable[[], Any]] = {
        "sha256 (hashlib/OpenSSL)": hashlib.sha256,
        "md5 (hashlib/OpenSSL)": lambda: hashlib.md5(usedforsecurity=False),
        "blake2b (hashlib)": hashlib.blake2b,
    }
    notes = []
    try:
        import blake3  # type: ignore[import-not-found,unused-ignore]

        algos["blake3 (1 thread)"] = blake3.blake3
        algos["blake3 (max_threads=AUTO)"] = lambda: blake3.blake3(max_threads=blake3.blake3.AUTO)
    except ImportError:
        notes.append("blake3 not installed: skipped")
    try:
        import xxhash  # type: ignore[import-not-found,unused-ignore]

        algos["xxh3_128 (xxhash)"] = xxhash.xxh3_128
    except ImportError:
        notes.append("xxhash not installed: skipped")
    return algos, notes


def gib_s(make: Callable[[], Any], buf: memoryview, update: int, total: int) -> float:
    """GiB/s of process CPU time (all threads) to hash `total` bytes in `update`-sized pieces."""
    h = make()
    pieces = [buf[i : i + update] for i in range(0, len(buf), update)]
    done = 0
    start = time.process_time()
    while done < total:
        for piece in pieces:
            h.update(piece)
        done += len(buf)
    h.digest()
    cpu = time.process_time() - start
    return done / (1 << 30) / max(cpu, 1e-9)


class Spinner:
    """A thread counting as fast as the GIL lets it."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            for _ in range(1000):
                pass
            self.count += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def gil_released(make: Callable[[], Any], buf: memoryview, spinner: Spinner) -> float:
    """The spinner's progress during ONE `update` of the whole buffer, per second of it, over
    its progress per second right before (same load). A call that holds the GIL lets it make
    none: ~0. A call that releases it: ~1 with a free core (less on a loaded machine)."""
    c0, t0 = spinner.count, time.perf_counter()
    time.sleep(0.2)
    c1, t1 = spinner.count, time.perf_counter()
    h = make()
    h.update(buf)
    c2, t2 = spinner.count, time.perf_counter()
    solo = (c1 - c0) / (t1 - t0)
    return (c2 - c1) / (t2 - t1) / max(solo, 1e-9)


def probe() -> float:
    """The noise probe the benchmark README uses: µs per `sum(range(10000))`."""
    import timeit

    loops = 2000
    return min(timeit.repeat("sum(range(10000))", number=loops, repeat=5)) / loops * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=256, help="MiB hashed per measurement")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (the median is shown)")
    args = parser.parse_args(argv)
    algos, notes = candidates()
    buf = memoryview(os.urandom(16 * MIB))
    total = args.mib * MIB
    print(f"noise probe before: {probe():.0f} µs per sum(range(10000))", flush=True)
    results: dict[str, dict[int, list[float]]] = {name: {s: [] for s in SIZES} for name in algos}
    for _ in range(args.reps):  # alternate the algorithms within each repetition
        for name, make in algos.items():
            for size in SIZES:
                results[name][size].append(gib_s(make, buf, size, total))
    big = memoryview(os.urandom(256 * MIB))
    spinner = Spinner()
    shares: dict[str, list[float]] = {name: [] for name in algos}
    for _ in range(args.reps):
        for name, make in algos.items():
            shares[name].append(gil_released(make, big, spinner))
    spinner.stop()
    print(f"noise probe after: {probe():.0f} µs per sum(range(10000))", flush=True)
    print()
    print(
        "| algorithm | 64 KiB | 1 MiB | 4 MiB | CPU-s/GiB at 1 MiB "
        "| a Python thread's progress during one 256 MiB update (GIL) |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for name in algos:
        med = {s: statistics.median(results[name][s]) for s in SIZES}
        print(
            f"| {name} | {med[SIZES[0]]:.2f} | {med[SIZES[1]]:.2f} | {med[SIZES[2]]:.2f} "
            f"| {1 / med[MIB]:.2f} | {statistics.median(shares[name]):.2f} |"
        )
    print()
    print(f"GiB/s of process CPU time, medians of {args.reps} × {args.mib} MiB.")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
