"""Rules benchmarks (issue 14), not part of the test run.

    python tests/benchmarks/bench_rules.py [--records 174420] [--new 100] [--rounds 3]

Two mirrors of the same simulated CrateQ catalog (the simulator in a child process, as in
bench_catalog.py), one synced without rules and one with 20. Measured: the first full sync (the
back catalog: the rules only note where it ends), a full re-sync that brings `--new` new tracks,
incremental syncs that bring `--new` new tracks each, and the time the rules took inside each
(their look after the pass). Targets: 20 rules add <= 10 % to a full sync and <= 50 ms to an
incremental one. Then `rules test` (the preview of each rule over the whole mirror, 5 rounds):
target < 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from pooldaemon.config import CrateQConfig
from pooldaemon.config_rules import RuleConfig
from pooldaemon.events import EventBus
from pooldaemon.models import Request
from pooldaemon.pools.crateq import CrateQ
from pooldaemon.pools.http import PoolHttp
from pooldaemon.rules import Rules
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store.db import Store
from pooldaemon.sync import PoolSync

FULL_RECORDS = 174_420
SEED = "bench"

#: Twenty rules a DJ might write: genres, tempos, mixes, words, exclusions, one version.
RULES: list[dict[str, Any]] = [
    {"genre": ["House", "Tech House"], "bpm": "120-128", "mix": ["Extended", "Club"]},
    {
        "genre": ["Hip-Hop", "Trap"],
        "advisory": "clean",
        "one_version": True,
        "prefer_mix": ["Intro", "Main"],
    },
    {"genre": ["R&B"], "exclude_mix": ["Acapella", "Loop"], "max_per_day": 20},
    {"words": "remix"},
    {"words": "love", "bpm": "90-110"},
    {"genre": ["Reggaeton"], "media": "video", "one_version": True, "prefer_mix": ["Extended"]},
    {"genre": ["Afrobeats", "Amapiano"], "year": "2023-2026"},
    {"mix": ["Transition"]},
    {"mix": ["Acapella", "Acapella In", "Acapella Out"], "advisory": "dirty"},
    {"genre": ["Pop", "Dance Pop"], "exclude_words": ["karaoke", "instrumental"]},
    {"bpm": "126,127,128", "media": "audio"},
    {"genre": ["Salsa", "Bachata", "Merengue"]},
    {"genre": ["Old School / Classics"], "year": "1985-1999"},
    {"words": "dj", "mix": ["Intro"]},
    {
        "genre": ["Drill"],
        "bpm": "140-150",
        "one_version": True,
        "prefer_mix": ["Extended", "Intro", "Main"],
    },
    {"genre": ["Country"], "media": "audio", "advisory": "clean"},
    {"mix": ["Xtendz"], "media": "video"},
    {"genre": ["Latin Pop", "Reggaeton"], "exclude_mix": ["Short Edit", "Quick Hit"]},
    {"words": "feat", "genre": ["Hip-Hop"], "max_per_day": 10},
    {"genre": ["Electro", "Électro"], "bpm": "124-132"},
]


def serve(conn: Connection, records: int) -> None:
    """Child process: run CrateQSim; `add` publishes new records dated today."""
    from pooldaemon.sim.crateq import CrateQSim

    async def main() -> None:
        sim = CrateQSim(records=records, seed=SEED, max_rows=1000)
        await sim.start()
        sim.warm()
        conn.send((sim.base_url, sim.api_key, sim.username, sim.password))
        loop = asyncio.get_running_loop()
        while True:
            command, arg = await loop.run_in_executor(None, conn.recv)
            if command == "add":
                sim.advance(60)
                conn.send(len(sim.catalog.add(arg)))
            elif command == "stop":
                break
        await sim.close()

    asyncio.run(main())


class SimProcess:
    def __init__(self, records: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, records), daemon=True)
        self.process.start()
        self.base_url, self.api_key, self.username, self.password = self.conn.recv()

    def add(self, n: int) -> int:
        self.conn.send(("add", n))
        return int(self.conn.recv())

    def stop(self) -> None:
        self.conn.send(("stop", None))
        self.process.join(10)


class TimedRules(Rules):
    """The rules, timing their look after each pass."""

    spent: float = 0.0

    async def pass_ended(self, pool: str, seen_at: float, back_catalog: bool) -> None:
        start = time.perf_counter()
        await super().pass_ended(pool, seen_at, back_catalog)
        self.spent = time.perf_counter() - start


class Mirror:
    """One state database, its pool sync and (maybe) the rules."""

    def __init__(self, store: Store, sync: PoolSync, rules: TimedRules | None) -> None:
        self.store, self.sync, self.rules = store, sync, rules

    @classmethod
    async def open(
        cls, path: Path, sim: SimProcess, session: aiohttp.ClientSession, with_rules: bool
    ) -> Mirror:
        store = await Store.open(path)
        if not with_rules:
            # The mirror as it was before rules: without the index they added.
            await store.execute("DROP INDEX tracks_first_seen")
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
        bus = EventBus()
        rules = None
        if with_rules:

            async def submit(request: Request, origin: str, **known: Any) -> dict[str, Any]:
                job, _ = await store_jobs.create_job(store, request, origin=origin, **known)
                return job

            rules = TimedRules(
                [RuleConfig.model_validate({"name": f"r{i}", **r}) for i, r in enumerate(RULES)],
                store,
                submit,
                bus,
                pools=["crateq"],
            )
            await rules.start()
        sync = PoolSync("crateq", adapter, store, bus, catalog_watch=rules)
        return cls(store, sync, rules)

    async def timed_sync(self, full: bool) -> tuple[float, float]:
        """(wall seconds of the pass and the rules' look, seconds of the look)."""
        start = time.perf_counter()
        await self.sync.sync_catalog(full=full)
        wall = time.perf_counter() - start
        return wall, (self.rules.spent if self.rules else 0.0)

    async def close(self) -> None:
        if self.rules is not None:
            await self.rules.stop()
        await self.store.close()


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def main(records: int, new: int, rounds: int) -> None:
    sim = SimProcess(records)
    try:
        with tempfile.TemporaryDirectory(prefix="pdrules") as tmp:
            async with aiohttp.ClientSession() as session:
                print(f"{records:,} records, {len(RULES)} rules, {new} new tracks per sync\n")
                results: dict[str, dict[str, list[float]]] = {
                    "first full sync (back catalog)": {"plain": [], "ruled": [], "look": []},
                    f"full re-sync with {new} new": {"plain": [], "ruled": [], "look": []},
                    f"incremental sync with {new} new": {"plain": [], "ruled": [], "look": []},
                }
                keys = list(results)
                # The first sync twice, in turns (this VM's speed drifts); the second pair stays.
                for turn in range(2):
                    plain = await Mirror.open(Path(tmp) / f"plain{turn}.db", sim, session, False)
                    ruled = await Mirror.open(Path(tmp) / f"ruled{turn}.db", sim, session, True)
                    order = [("plain", plain), ("ruled", ruled)]
                    for name, mirror in order[:: 1 if turn == 0 else -1]:
                        wall, look = await mirror.timed_sync(full=True)
                        results[keys[0]][name].append(wall)
                        if name == "ruled":
                            results[keys[0]]["look"].append(look)
                    jobs = await store_jobs.job_counts(ruled.store)
                    assert not any(jobs.values()), f"the back catalog started jobs: {jobs}"
                    if turn == 0:
                        await plain.close()
                        await ruled.close()
                steps = [(keys[1], True), *((keys[2], False),) * rounds] * rounds
                for step, full in steps:
                    sim.add(new)
                    order = [("plain", plain), ("ruled", ruled)]
                    if len(results[step]["plain"]) % 2:
                        order.reverse()  # in turns: this VM's speed drifts
                    for name, mirror in order:
                        wall, look = await mirror.timed_sync(full=full)
                        results[step][name].append(wall)
                        if name == "ruled":
                            results[step]["look"].append(look)
                for step, series in results.items():
                    p = statistics.median(series["plain"])
                    r = statistics.median(series["ruled"])
                    look = statistics.median(series["look"])
                    print(
                        f"{step:34} without {p:7.3f} s   with {r:7.3f} s   "
                        f"rules' look {look * 1000:7.1f} ms ({look / p * 100:4.1f} % of the sync;"
                        f" medians of {len(series['plain'])})"
                    )
                    if len(series["plain"]) > 1:
                        print(
                            " " * 35
                            + "runs without "
                            + " ".join(f"{v:.3f}" for v in series["plain"])
                            + " / with "
                            + " ".join(f"{v:.3f}" for v in series["ruled"])
                        )
                jobs = await store_jobs.job_counts(ruled.store)
                print(f"\njobs the rules started: {sum(jobs.values())}")
                assert ruled.rules is not None
                samples = []
                for _ in range(5):
                    for name in ruled.rules.rules:
                        start = time.perf_counter()
                        await ruled.rules.preview(name, limit=50)
                        samples.append((time.perf_counter() - start) * 1000)
                print(
                    f"rules test (preview, limit 50):     p50 {statistics.median(samples):6.1f} ms"
                    f"   p95 {percentile(samples, 0.95):6.1f} ms   max {max(samples):6.1f} ms"
                    f"   ({len(samples)} previews)"
                )
                await plain.close()
                await ruled.close()
    finally:
        sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=FULL_RECORDS)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.records, args.new, args.rounds))
