"""What a SIGKILL costs: bytes sent again after a kill at 512 KiB/s per connection (issue 12).

Not part of the test run. Usage (from the repository root):

    PYTHONPATH=$PWD python tests/benchmarks/bench_crash.py [--kills 20] [--before DIR]

Three downloads of four connections each, the default 8 MiB chunks, every answer paced at
512 KiB/s by the simulated download server. The engine runs in the crash tests' driver process
(tests/downloader/crash_driver.py), is SIGKILLed 1.5-5 s after it started, and is restarted;
new work is queued as old work finishes, so every kill cuts transfers short. The server records
the bytes it sent; bytes sent twice are charged to the kill that lost them (the crash tests'
`RefetchMeter`). `--before DIR` runs an older tree (`git archive COMMIT | tar -x -C DIR`, with its
own driver) the same way, its runs alternating with this tree's. Every file is checked against
its source at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.media import MediaStore
from tests.downloader.test_crash import RefetchMeter, World, _item

KIB = 1024
MIB = 1024 * KIB
RATE = 512 * KIB
CONNECTIONS = 4
ACTIVE = 3
FILE_SIZE = 48 * MIB
ROOT = Path(__file__).resolve().parents[2]


class Loop:
    """One tree's engine, killed again and again over its own library and state."""

    def __init__(self, name: str, tree: Path, base: Path, media: MediaStore, rng: random.Random):
        self.name = name
        self.tree = tree
        self.base = base
        self.media = media
        self.rng = rng
        self.server = DownloadServer(media)
        self.world = World(media, [self.server])
        self.items: dict[str, str] = {}  # item → media key
        self.meter: RefetchMeter | None = None
        self.effective: list[int] = []  # run numbers whose kill cut a transfer short
        self.runs = 0
        base.mkdir(parents=True)

    async def start(self) -> None:
        await self.server.start()
        self.server.faults.throttle_bps = RATE
        self.meter = RefetchMeter(self.world)

    def _feed(self) -> None:
        library = self.base / "library"
        unfinished = [
            item
            for item in self.items
            if not (library / "testpool" / f"Artist - Track {item}.mp3").exists()
        ]
        while len(unfinished) < ACTIVE + 1:
            item = f"{self.name}{len(self.items) + 1}"
            key = f"{item}-media"
            self.media.add_generated(key, "mp3", key, FILE_SIZE + len(self.items))
            self.items[item] = key
            unfinished.append(item)
        spec = {
            "state": str(self.base / "state" / "state.db"),
            "library": str(library),
            "config": {
                "chunk_size_bytes": 8 * MIB,
                "connections_per_download": CONNECTIONS,
                "max_active_downloads": ACTIVE,
                "stall_timeout_s": 30.0,
                "speed_floor_bps": 0,
                "write_tags": False,
                "file_template": "{pool}/{artist} - {title}",
            },
            "items": {
                item: _item(self.world, key, "mp3", {"artist": "Artist", "title": f"Track {item}"})
                for item, key in self.items.items()
            },
        }
        library.mkdir(parents=True, exist_ok=True)
        (self.base / "spec.json").write_text(json.dumps(spec))

    async def run(self, kill_after: float | None) -> int:
        """One run of the driver; killed `kill_after` s after it started (None: to its end)."""
        self._feed()
        env = {k: v for k, v in os.environ.items() if k != "DAEMON_FAILPOINT"}
        env["PYTHONPATH"] = str(self.tree)
        with (self.base / "driver.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(self.tree / "tests" / "downloader" / "crash_driver.py"),
                str(self.base / "spec.json"),
                cwd=self.tree,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert proc.stdout is not None and self.meter is not None
        try:
            await asyncio.wait_for(proc.stdout.readline(), 120)  # "STARTED"
            try:
                code = await asyncio.wait_for(proc.wait(), kill_after)
            except TimeoutError:
                if self.server.sending:
                    self.effective.append(self.runs)
                proc.send_signal(signal.SIGKILL)
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        self.runs += 1
        self.meter.end_run()
        return code

    async def finish(self) -> None:
        """The last run, unthrottled, to the end; then every file against its source."""
        self.server.faults.throttle_bps = None
        code = await self.run(None)
        if code != 0:
            raise SystemExit(f"{self.name}: the last run exited {code}; see {self.base}/driver.log")
        for item, key in self.items.items():
            path = self.base / "library" / "testpool" / f"Artist - Track {item}.mp3"
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != self.media.sha256(key):
                raise SystemExit(f"{self.name}: {path} is not its source's bytes")
        await self.server.close()

    def costs(self) -> list[int]:
        assert self.meter is not None
        return [self.meter.charged[run] for run in self.effective]


async def main(kills: int, before: Path | None, seed: int) -> int:
    rng = random.Random(seed)
    media = MediaStore(last_modified=1_700_000_000.0)
    base = Path(tempfile.mkdtemp(prefix="pdcrash-"))
    loops = [Loop("after", ROOT, base / "after", media, rng)]
    if before is not None:
        loops.append(Loop("before", before.resolve(), base / "before", media, rng))
    for loop in loops:
        await loop.start()
    began = time.monotonic()
    while any(len(loop.effective) < kills for loop in loops):
        for loop in loops:  # alternating, so both see the same load
            if len(loop.effective) < kills:
                await loop.run(rng.uniform(1.5, 5.0))
    for loop in loops:
        await loop.finish()
    shutil.rmtree(base)
    print(
        f"{kills} effective kills each; {ACTIVE} jobs x {CONNECTIONS} connections, "
        f"{RATE // KIB} KiB/s per connection, 8 MiB chunks; {time.monotonic() - began:.0f} s"
    )
    print("| engine | runs | kills that cut a transfer | refetched per kill: mean | worst |")
    print("|---|--:|--:|--:|--:|")
    for loop in loops:
        costs = loop.costs()
        print(
            f"| {loop.name} | {loop.runs} | {len(costs)} | "
            f"{statistics.mean(costs) / MIB:.2f} MiB | {max(costs) / MIB:.2f} MiB |"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--before", type=Path, help="an older tree to compare (with its driver)")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.kills, args.before, args.seed)))
