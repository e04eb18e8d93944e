"""Catalog mirror benchmarks (issue 3), not part of the test run.

    python tests/benchmarks/bench_catalog.py [--records 174420] [--scale 17442,87210,174420]

The simulated CrateQ runs in a child process, so the numbers are the daemon's own work: a full
sync into an empty mirror (target >= 20,000 records/s), an incremental sync with 100 changes
(target < 0.5 s), search latency through the store and through `GET /v1/catalog` on the control
socket (target p95 < 10 ms with filters), RSS after the full sync (target < 120 MB), and the
mirror's size at several catalog sizes (it must grow linearly).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from pooldaemon.config import CrateQConfig
from pooldaemon.events import EventBus
from pooldaemon.offload import Inline, Offload, tune_gc
from pooldaemon.pools.crateq import CrateQ
from pooldaemon.pools.http import PoolHttp
from pooldaemon.search import search
from pooldaemon.store.db import Store
from pooldaemon.sync import PoolSync

FULL_RECORDS = 174_420  # docs/pools/crateq.md's own count
SEED = "bench"

#: What DJs search for: words (artist/title prefixes), with and without the CrateQ filters.
QUERIES: list[dict[str, str]] = [
    {"q": "love"},
    {"q": "beyonce"},
    {"q": "jay"},
    {"q": "lil blaze"},
    {"q": "midnight"},
    {"q": "dance tonight"},
    {"q": "ros"},
    {"q": "love", "genre": "R&B"},
    {"q": "fire", "bpm": "120-128"},
    {"q": "jay", "advisory": "clean"},
    {"q": "party", "media": "video"},
    {"q": "summer", "year": "2020-2024"},
    {"q": "dj", "mix": "Intro"},
    {"genre": "House"},
    {"genre": "House", "bpm": "120-128"},
    {"genre": "Hip-Hop,Trap", "advisory": "clean"},
    {"genre": "Reggaeton", "media": "video"},
    {"genre": "Afrobeats", "year": "2023,2024"},
    {"genre": "Salsa", "mix": "Extended"},
    {"genre": "Old School / Classics", "year": "1985-1995"},
    {"bpm": "128"},
    {"bpm": "95-100", "mix": "Intro"},
    {"bpm": "120-124", "advisory": "dirty", "media": "video"},
    {"bpm": "140-150", "genre": "Trap,Drill"},
    {"year": "2021"},
    {"year": "2019-2021", "genre": "Pop"},
    {"mix": "Acapella"},
    {"mix": "Short Edit", "media": "video"},
    {"mix": "Extended", "bpm": "126,127,128"},
    {"genre": "Dance Pop", "offset": "50"},
]
#: Broad filters on their own (reported separately: every match must be counted).
BROAD: list[dict[str, str]] = [
    {},
    {"advisory": "dirty"},
    {"media": "video"},
    {"pool": "crateq"},
    {"q": "a"},
]


# -- the simulator in a child process -----------------------------------------------------------


def serve(conn: Connection, records: int) -> None:
    """Child process: run CrateQSim and obey commands from the benchmark."""
    from pooldaemon.sim import crateq_wire
    from pooldaemon.sim.crateq import CrateQSim

    # Every record's rendering kept (~1 kB each), however big the catalog.
    crateq_wire._RENDER_CACHE_MAX = max(crateq_wire._RENDER_CACHE_MAX, records + 1)

    async def main() -> None:
        sim = CrateQSim(records=records, seed=SEED, max_rows=1000)
        await sim.start()
        sim.warm()  # render every record once, so the client's time is what is measured
        conn.send((sim.base_url, sim.api_key, sim.username, sim.password))
        loop = asyncio.get_running_loop()
        while True:
            command, arg = await loop.run_in_executor(None, conn.recv)
            if command == "change":
                ids = sim.catalog.ids()
                step = max(1, len(ids) // arg)
                sim.catalog.update(ids[::step][:arg], title="Benchmark Remix")
                conn.send(len(ids[::step][:arg]))
            elif command == "stop":
                break
        await sim.close()

    asyncio.run(main())


class SimProcess:
    """The simulator child: `base_url`, credentials, and `change(n)`."""

    def __init__(self, records: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, records), daemon=True)
        self.process.start()
        self.base_url, self.api_key, self.username, self.password = self.conn.recv()

    def change(self, n: int) -> int:
        self.conn.send(("change", n))
        return int(self.conn.recv())

    def stop(self) -> None:
        self.conn.send(("stop", None))
        self.process.join(10)


# -- measurements -------------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size now (Linux /proc), else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _KIB_MB


#: ru_maxrss units per MB: bytes on macOS, KiB elsewhere.
_KIB_MB = 1024 * 1024 if sys.platform == "darwin" else 1024


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def make_sync(sim: SimProcess, session: aiohttp.ClientSession, store: Store) -> PoolSync:
    config = CrateQConfig.model_validate(
        {
            "type": "crateq",
            "base_url": sim.base_url,
            "api_key": sim.api_key,
            "username": sim.username,
            "password": sim.password,
        }
    )
    adapter = CrateQ("crateq", config, PoolHttp(session, "crateq", timeout_s=120), rows=1000)
    return PoolSync("crateq", adapter, store, EventBus())


def _cpu() -> float:
    """CPU seconds of this process (all its threads) and of its children that have ended: a
    pass's page decoder ends with the pass; the simulator only when the benchmark stops."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of the daemon's process and its page decoder)."""
    wall, cpu = time.perf_counter(), _cpu()
    result = await work()
    return result, time.perf_counter() - wall, _cpu() - cpu


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def latencies(
    run: Callable[[dict[str, str]], Awaitable[Any]], queries: list[dict[str, str]], rounds: int
) -> list[float]:
    for query in queries:
        await run(query)  # warm the page cache once
    samples = []
    for _ in range(rounds):
        for query in queries:
            start = time.perf_counter()
            await run(query)
            samples.append((time.perf_counter() - start) * 1000)
    return samples


async def searching_during(
    sync: PoolSync, store: Store, offload: Callable[[], Offload]
) -> tuple[float, list[float]]:
    """A full re-sync (`offload` decoding its pages) while a user searches every 10 ms: the
    re-sync's wall seconds and the searches' latencies."""
    sync.offload = offload
    task = asyncio.ensure_future(sync.sync_catalog(full=True))
    start = time.perf_counter()
    samples: list[float] = []
    while not task.done():
        for query in QUERIES:
            begun = time.perf_counter()
            await search(store, query)
            samples.append((time.perf_counter() - begun) * 1000)
            await asyncio.sleep(0.01)
            if task.done():
                break
    wall = time.perf_counter() - start
    await task
    sync.offload = Offload
    return wall, samples


def describe(samples: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples):6.2f} ms   p95 {percentile(samples, 0.95):6.2f} ms   "
        f"max {max(samples):6.2f} ms   ({len(samples)} queries)"
    )


async def socket_latencies(store: Store, rounds: int) -> list[float] | None:
    """`GET /v1/catalog` through the real control server on a Unix socket."""
    try:
        from pooldaemon.control.client import ControlClient
        from pooldaemon.control.server import ControlServer
    except ImportError:
        return None

    class Services:
        events = EventBus()

        async def search(self, params: dict[str, str]) -> dict[str, Any]:
            return await search(store, params)

    with tempfile.TemporaryDirectory(prefix="pdbench") as tmp:
        directory = Path(tmp) / "run"
        directory.mkdir(mode=0o700)
        server = ControlServer(Services(), directory / "control.sock")  # type: ignore[arg-type]
        await server.start()
        try:
            async with ControlClient(directory / "control.sock") as client:

                async def run(query: dict[str, str]) -> Any:
                    return await client.get("/v1/catalog", query)

                return await latencies(run, QUERIES, rounds)
        finally:
            await server.stop()


async def full_sync(records: int, state: Path, *, everything: bool) -> dict[str, Any]:
    """A first full sync of a `records`-track catalog into an empty mirror (and, with
    `everything`, the incremental sync, a re-sync and the search latencies on it)."""
    sim = SimProcess(records)
    try:
        store = await Store.open(state)
        async with aiohttp.ClientSession() as session:
            sync = make_sync(sim, session, store)
            result, wall, cpu = await timed(lambda: sync.sync_catalog(full=True))
            assert result.added == records, result
            await store.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
            out = {
                "records": records,
                "wall_s": wall,
                "cpu_s": cpu,
                "rate": records / wall,
                "db_bytes": db_bytes(state),
                "rss_mb": rss_mb(),
                # The simulator has not ended: the peak of ended children is the decoder's.
                "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / _KIB_MB,
            }
            if everything:
                changed = sim.change(100)
                inc, inc_wall, inc_cpu = await timed(lambda: sync.sync_catalog(full=False))
                assert inc.updated == changed, inc
                out.update(incremental_s=inc_wall, incremental_cpu_s=inc_cpu, incremental=inc)
                again, again_wall, _ = await timed(lambda: sync.sync_catalog(full=True))
                out.update(resync_s=again_wall, resync=again)
                out["search"] = await latencies(lambda q: search(store, q), QUERIES, 10)
                out["broad"] = await latencies(lambda q: search(store, q), BROAD, 5)
                out["socket"] = await socket_latencies(store, 5)
                out["during"] = [
                    (label, *await searching_during(sync, store, factory))
                    for label, factory in (
                        ("decoder process", Offload),
                        ("decoded in-process", Inline),
                    )
                ]
                out["rss_after_search_mb"] = rss_mb()
            await store.close()
            return out
    finally:
        sim.stop()


async def main() -> None:
    tune_gc()  # as `pooldaemon run` does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=FULL_RECORDS)
    parser.add_argument(
        "--scale",
        default="17442,87210,174420",
        help="catalog sizes for the mirror-cost table (comma-separated; '' to skip)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pooldaemon-bench") as tmp:
        print(f"full sync of {args.records:,} records (simulator in a child process)")
        base = rss_mb()
        run = await full_sync(args.records, Path(tmp) / "full" / "state.db", everything=True)
        print(
            f"  full sync        {run['wall_s']:6.2f} s wall, {run['cpu_s']:6.2f} s CPU   "
            f"{run['rate']:9,.0f} records/s   (target >= 20,000)"
        )
        print(
            f"  incremental      {run['incremental_s']:6.3f} s wall for 100 changes "
            f"({run['incremental'].updated} updated)   (target < 0.5 s)"
        )
        print(f"  unchanged full   {run['resync_s']:6.2f} s wall (re-read, nothing written)")
        print(f"  RSS after sync   {run['rss_mb']:6.1f} MB (before: {base:.1f} MB; target < 120)")
        print(f"  decoder's peak   {run['worker_rss_mb']:6.1f} MB (its process ends with the pass)")
        print(f"  RSS after search {run['rss_after_search_mb']:6.1f} MB (page cache warm)")
        print(f"  mirror on disk   {run['db_bytes'] / 1e6:6.1f} MB")
        print(f"  search (store)   {describe(run['search'])}   (target p95 < 10 ms)")
        if run["socket"] is not None:
            print(f"  /v1/catalog      {describe(run['socket'])}")
        print(f"  broad filters    {describe(run['broad'])}   (every match counted)")
        for label, wall, samples in run["during"]:
            print(f"  searching during a {wall:4.1f} s re-sync, {label}: {describe(samples)}")
        sizes = [int(s) for s in args.scale.split(",") if s.strip()]
        if sizes:
            print("\nmirror cost by catalog size")
            print("  records    sync s   records/s   mirror MB   bytes/record")
            for size in sizes:
                if size == args.records:
                    row = run
                else:
                    row = await full_sync(
                        size, Path(tmp) / f"s{size}" / "state.db", everything=False
                    )
                print(
                    f"  {size:7,}   {row['wall_s']:7.2f}   {row['rate']:9,.0f}   "
                    f"{row['db_bytes'] / 1e6:9.1f}   {row['db_bytes'] / size:12,.0f}"
                )


if __name__ == "__main__":
    asyncio.run(main())
