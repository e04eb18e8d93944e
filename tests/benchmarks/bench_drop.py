"""Drop-folder benchmarks (issue 5): a 1,000-line drop queued, and a flood of 1,000 files drained.

Not part of the test run. Usage:

    python tests/benchmarks/bench_drop.py [--reps 3] [--polling] [--stable 1.0]

The real `DropWatcher` (watchfiles events, or `--polling`), the contract's 1 s stability wait
(`--stable`), a real SQLite state database, and a submit() that creates real rows with
the same SQL as `store.jobs.create_job`, one transaction per call together with the call's
idempotency key and outcomes (what the engine must do). Measured:

1. one file of 1,000 request lines, renamed into place (so "complete" is the rename): seconds
   from the rename until the 1,000th job is queued, and until its result file is written;
2. 1,000 files written straight into the folder as fast as possible: seconds from the last file
   closed until the last one is moved to processed/; every file checked (none missed, none
   left, every result file present and naming its job).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pooldaemon.drop import DropWatcher, SubmitOutcome
from pooldaemon.events import EventBus
from pooldaemon.log import configure_logging
from pooldaemon.models import Request
from pooldaemon.store.db import Store

POOLS = {"crateq": ["track"], "promoonly": ["track"], "harvest": ["track", "playlist"]}


class Engine:
    """submit() as the engine must do it: the key's outcome stored with the job, atomically."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queued = 0
        self.last_queued = 0.0

    async def setup(self) -> None:
        await self.store.execute(
            "CREATE TABLE IF NOT EXISTS bench_keys (key TEXT PRIMARY KEY, outcome TEXT NOT NULL)"
        )

    async def submit(self, requests: list[Request], key: str) -> list[SubmitOutcome]:
        row = await self.store.fetchone("SELECT outcome FROM bench_keys WHERE key = ?", (key,))
        if row is not None:
            return [SubmitOutcome(**o) for o in json.loads(row[0])]
        now = time.time()
        outcomes: list[SubmitOutcome] = []
        # One transaction for the whole call: the jobs (a live job for the same item is reused,
        # as `store.jobs.create_job` does) and the key's outcomes, so a replay finds both or none.
        async with self.store.transaction() as db:
            for req in requests:
                job_id = None
                if not req.redownload:
                    async with db.execute(
                        "SELECT id FROM jobs WHERE pool = ? AND kind = ? AND item_id IS ? "
                        "AND format = '' AND state NOT IN ('failed', 'cancelled') "
                        "ORDER BY id DESC LIMIT 1",
                        (req.pool, req.kind, req.item_id),
                    ) as cur:
                        found = await cur.fetchone()
                    job_id = found[0] if found else None
                if job_id is None:
                    cur = await db.execute(
                        "INSERT INTO jobs (pool, kind, item_id, ref, origin, state, created, "
                        "updated) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                        (req.pool, req.kind, req.item_id, req.ref, "drop", now, now),
                    )
                    job_id = cur.lastrowid
                outcomes.append(SubmitOutcome(job=job_id))
            await db.execute(
                "INSERT INTO bench_keys (key, outcome) VALUES (?, ?)",
                (key, json.dumps([{"job": o.job} for o in outcomes])),
            )
        self.queued += len(requests)
        self.last_queued = time.monotonic()
        return outcomes


async def _wait_drops(stream: Any, count: int, timeout_s: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async for event in stream:
            if event["type"] == "drop":
                got.append(event)
                if len(got) >= count:
                    break
    return got


async def _watcher(
    root: Path, polling: bool, stable_s: float
) -> tuple[DropWatcher, Engine, Store, EventBus]:
    store = await Store.open(root / "state" / "state.db")
    engine = Engine(store)
    await engine.setup()
    events = EventBus(queue_size=5000)
    watcher = DropWatcher(
        root / "Requests",
        store,
        engine.submit,
        lambda: POOLS,
        events,
        force_polling=polling,
        rescan_interval_s=30.0,
        stable_s=stable_s,
    )
    return watcher, engine, store, events


async def bench_lines(polling: bool, stable_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        watcher, engine, store, events = await _watcher(root, polling, stable_s)
        drop = root / "Requests"
        lines = "".join(f"crateq:{570000 + n}\n" for n in range(1000))
        async with events.subscribe() as stream:
            await watcher.start()
            try:
                staging = drop / ".incoming.tmp"
                staging.write_text(lines)
                complete = time.monotonic()
                os.rename(staging, drop / "requests.txt")
                [event] = await _wait_drops(stream, 1, 60)
                written = time.monotonic()
            finally:
                await watcher.stop()
        result = json.loads((drop / "processed" / "requests.txt.result.json").read_text())
        assert event["accepted"] == 1000 and len(result["accepted"]) == 1000, event
        assert engine.queued == 1000
        await store.close()
        return {"queued_s": engine.last_queued - complete, "result_s": written - complete}


async def bench_flood(polling: bool, stable_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        watcher, engine, store, events = await _watcher(root, polling, stable_s)
        drop = root / "Requests"
        async with events.subscribe() as stream:
            await watcher.start()
            try:
                started = time.monotonic()

                def flood() -> None:
                    for n in range(1000):
                        (drop / f"req-{n:04d}.txt").write_text(f"crateq:{n}\nharvest:{n}\n")

                await asyncio.to_thread(flood)
                last_written = time.monotonic()
                got = await _wait_drops(stream, 1000, 120)
                drained = time.monotonic()
            finally:
                await watcher.stop()
        names = sorted(e["file"] for e in got)
        assert names == [f"req-{n:04d}.txt" for n in range(1000)], "a file was missed"
        assert not [p for p in drop.iterdir() if p.is_file()], "files left behind"
        for n in range(0, 1000):
            result = json.loads((drop / "processed" / f"req-{n:04d}.txt.result.json").read_text())
            assert len(result["accepted"]) == 2, result
        assert engine.queued == 2000
        await store.close()
        return {
            "write_s": last_written - started,
            "drain_after_last_s": drained - last_written,
            "total_s": drained - started,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--polling", action="store_true", help="force_polling (network shares)")
    parser.add_argument("--stable", type=float, default=1.0, help="stability wait, seconds")
    args = parser.parse_args(argv)
    configure_logging("json", stream=open(os.devnull, "w"))  # noqa: SIM115 (process lifetime)

    def run(bench: Any) -> dict[str, float]:
        runs = [asyncio.run(bench(args.polling, args.stable)) for _ in range(args.reps)]
        return {key: statistics.median(r[key] for r in runs) for key in runs[0]}

    mode = "polling" if args.polling else "events"
    print(f"drop folder, {mode}, stable_s={args.stable}, medians of {args.reps} runs")
    lines = run(bench_lines)
    print(
        f"  1,000-line file: queued {lines['queued_s']:.2f} s after it became complete, "
        f"result file at {lines['result_s']:.2f} s (budget 2 s)"
    )
    flood = run(bench_flood)
    print(
        f"  1,000-file flood: written in {flood['write_s']:.2f} s, all drained "
        f"{flood['drain_after_last_s']:.2f} s after the last was written "
        f"({flood['total_s']:.2f} s in all), none missed"
    )
    return 0 if lines["queued_s"] <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
