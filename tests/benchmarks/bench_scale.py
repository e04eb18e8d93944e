"""The daemon at scale (issue 13): a mirror of up to 1,000,000 tracks, through the socket.

    python tests/benchmarks/bench_scale.py [--sizes 174420,500000,1000000] [--dir DIR]

For each catalog size, a real `pooldaemon run` (its own process) mirrors the simulated CrateQ
(in another process, every record rendered beforehand) and is measured only through its control
socket and /proc: a full sync into an empty mirror (`POST /v1/pools/crateq/sync`, target
>= 25,000 records/s), `GET /v1/status` every 0.2 s during that sync and 50 times after it
(target < 100 ms), searches through `GET /v1/catalog` (target p95 < 50 ms), the daemon's RSS
(target < 300 MB), and 1,000 queued jobs listed through `GET /v1/jobs` (target < 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_catalog import BROAD, QUERIES, SimProcess, percentile

from pooldaemon.control.client import ControlClient
from pooldaemon.sim.catalog import Catalog

SIZES = "174420,500000,1000000"
#: Bytes of disk per mirrored record, with room for the WAL and the index builds' temp files.
DISK_PER_RECORD = 2_000
JOBS = 1000

CONFIG = """
[daemon]
download_dir = "{root}/library"
state_dir = "{root}/state"
socket_path = "{root}/s/control.sock"
log_format = "json"

[pools.crateq]
type = "crateq"
base_url = "{base_url}"
api_key = "{api_key}"
username = "{username}"
password = "{password}"
auto_download = false
"""


# -- the daemon's process, seen from outside ----------------------------------------------------


def _proc_stat(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def cpu_s(pid: int) -> float:
    """CPU seconds of the daemon (all its threads) and its ended children (the page decoder)."""
    fields = _proc_stat(pid)
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of the daemon's process, MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def probe() -> str:
    """This shared machine's speed now: `python -m timeit "sum(range(10000))"`."""
    done = subprocess.run(
        [sys.executable, "-m", "timeit", "sum(range(10000))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().split(": ")[-1]


def start_daemon(root: Path, sim: SimProcess) -> tuple[subprocess.Popen[bytes], float]:
    """`pooldaemon run` on a fresh state; returns it at READY=1 and the seconds it took."""
    config = root / "c.toml"
    config.write_text(
        CONFIG.format(
            root=root,
            base_url=sim.base_url,
            api_key=sim.api_key,
            username=sim.username,
            password=sim.password,
        )
    )
    config.chmod(0o600)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(root / "notify"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLDAEMON_", "WATCHDOG_"))}
    env["NOTIFY_SOCKET"] = str(root / "notify")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldaemon.cli.daemon", "run", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(root / "daemon.err").open("wb"),
        env=env,
        cwd=root,  # `-m` puts the working directory first on sys.path: PYTHONPATH decides
    )
    notify.settimeout(60)
    try:
        while b"READY=1" not in notify.recv(65536).split(b"\n"):
            pass
    finally:
        notify.close()
    return proc, time.perf_counter() - started


# -- measurements through the socket ------------------------------------------------------------


async def timed_ms(client: ControlClient, path: str, params: dict[str, str] | None = None) -> float:
    begun = time.perf_counter()
    await client.get(path, params)
    return (time.perf_counter() - begun) * 1000


def describe(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    return (
        f"p50 {statistics.median(samples):7.2f} ms  p95 {percentile(samples, 0.95):7.2f} ms  "
        f"max {max(samples):7.2f} ms  ({len(samples)})"
    )


async def watch_during(
    client: ControlClient, pid: int, done: asyncio.Event, *, searching: bool
) -> tuple[list[float], list[float], float]:
    """`GET /v1/status` and one search every 0.2 s until `done`: their latencies, and the peak
    RSS seen. (During a first sync the word index is built only at the end: searches count
    through the tables until then.)"""
    status: list[float] = []
    searches: list[float] = []
    peak = 0.0
    while not done.is_set():
        status.append(await timed_ms(client, "/v1/status"))
        if searching:
            query = QUERIES[len(status) % len(QUERIES)]
            searches.append(await timed_ms(client, "/v1/catalog", query))
        peak = max(peak, memory_mb(pid)["VmRSS"])
        try:
            await asyncio.wait_for(done.wait(), 0.2)
        except TimeoutError:
            pass
    return status, searches, peak


async def wait_scheduled_pass(client: ControlClient, after: float, deadline_s: float) -> bool:
    """The scheduler's own first catalog pass runs 5-10 s after start; when our sync held the
    lock, it runs right after. Wait until it has, so it does not fall into the measurements."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status = await client.get("/v1/status")
        last = status["pools"][0]["last_catalog_sync"]
        if last is not None and last > after:
            return True
        await asyncio.sleep(0.25)
    return False


async def queue_jobs(client: ControlClient, records: int) -> int:
    """1,000 queued jobs: the engine paused, then `POST /v1/jobs` with mirrored tracks' refs."""
    await client.post("/v1/pause")
    ids = Catalog(JOBS, seed="bench").ids()
    answer = await client.post("/v1/jobs", {"refs": [f"crateq:{i}" for i in ids]})
    return len(answer["accepted"])


async def list_all_jobs(client: ControlClient) -> tuple[float, int]:
    """Every queued job, page after page as `poolctl jobs --all` reads them: ms, jobs seen."""
    begun = time.perf_counter()
    seen, offset = 0, 0
    while True:
        page = await client.get("/v1/jobs", {"state": "queued", "offset": str(offset)})
        seen += len(page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    return (time.perf_counter() - begun) * 1000, seen


async def run_size(records: int, base: Path, *, search_during: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"scale{records}-", dir=base))
    (root / "s").mkdir(mode=0o700)
    sim_begun = time.perf_counter()
    sim = SimProcess(records)
    out: dict[str, Any] = {"records": records, "sim_ready_s": time.perf_counter() - sim_begun}
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc, out["ready_s"] = start_daemon(root, sim)
        pid = proc.pid
        out["rss_idle_mb"] = memory_mb(pid)["VmRSS"]
        async with ControlClient(root / "s" / "control.sock") as client:
            done = asyncio.Event()
            watcher = asyncio.ensure_future(
                watch_during(client, pid, done, searching=search_during)
            )
            cpu0, wall0 = cpu_s(pid), time.perf_counter()
            result = await client.post("/v1/pools/crateq/sync", {"full": True})
            wall, cpu = time.perf_counter() - wall0, cpu_s(pid) - cpu0
            done.set()
            during, searching, peak_seen = await watcher
            assert result["added"] == records, result
            out.update(sync_s=wall, sync_cpu_s=cpu, rate=records / wall, cpu_rate=records / cpu)
            out.update(status_during=during, search_during=searching, rss_during_peak_mb=peak_seen)
            out["rss_after_sync_mb"] = memory_mb(pid)["VmRSS"]
            out["scheduled_pass_seen"] = await wait_scheduled_pass(client, time.time() - 1, 120)
            out["status_after"] = [await timed_ms(client, "/v1/status") for _ in range(50)]
            for query in QUERIES:  # one warm-up round
                await client.get("/v1/catalog", query)
            out["search"] = [
                await timed_ms(client, "/v1/catalog", query) for _ in range(5) for query in QUERIES
            ]
            out["broad"] = [
                await timed_ms(client, "/v1/catalog", query) for _ in range(3) for query in BROAD
            ]
            out["jobs_accepted"] = await queue_jobs(client, records)
            listings = [await list_all_jobs(client) for _ in range(20)]
            out["jobs_seen"] = listings[0][1]
            out["jobs_list"] = [ms for ms, _ in listings]
            out["status_with_jobs"] = [await timed_ms(client, "/v1/status") for _ in range(20)]
            mem = memory_mb(pid)
            out["rss_end_mb"], out["hwm_mb"] = mem["VmRSS"], mem["VmHWM"]
        state = root / "state" / "state.db"
        out["db_bytes"] = state.stat().st_size
        wal = state.with_name("state.db-wal")
        out["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)
    return out


def report(run: dict[str, Any]) -> None:
    n = run["records"]
    print(f"\n{n:,} records (simulator ready in {run['sim_ready_s']:.0f} s)")
    print(
        f"  full sync         {run['sync_s']:7.2f} s wall  {run['sync_cpu_s']:7.2f} CPU-s   "
        f"{run['rate']:9,.0f} records/s  ({run['cpu_rate']:,.0f} per CPU-s; target >= 25,000)"
    )
    print(f"  status in sync    {describe(run['status_during'])}   (target < 100 ms)")
    if run["search_during"]:
        print(f"  search in sync    {describe(run['search_during'])}")
    print(f"  status after      {describe(run['status_after'])}")
    print(f"  status, 1k jobs   {describe(run['status_with_jobs'])}")
    print(f"  /v1/catalog       {describe(run['search'])}   (target p95 < 50 ms)")
    print(f"  broad filters     {describe(run['broad'])}")
    print(
        f"  1,000 jobs listed {describe(run['jobs_list'])}   ({run['jobs_seen']} seen, "
        f"{run['jobs_accepted']} accepted; target < 100 ms)"
    )
    print(
        f"  RSS MB            idle {run['rss_idle_mb']:.0f}, peak seen in sync "
        f"{run['rss_during_peak_mb']:.0f}, after sync {run['rss_after_sync_mb']:.0f}, "
        f"end {run['rss_end_mb']:.0f}, VmHWM {run['hwm_mb']:.0f}   (target < 300)"
    )
    print(
        f"  mirror on disk    {run['db_bytes'] / 1e6:7.1f} MB ({run['db_bytes'] / n:,.0f} B/rec), "
        f"WAL {run['wal_bytes'] / 1e6:.1f} MB"
    )
    if not run["scheduled_pass_seen"]:
        print("  (the scheduler's first pass was not seen to end: it may overlap the searches)")


def table(runs: list[dict[str, Any]]) -> None:
    """The curve as a markdown table (tests/benchmarks/README.md)."""
    print(
        "\n| records | sync s wall (CPU-s) | records/s wall (per CPU-s) | status p95 in sync / "
        "after | search p95 in sync | search p50 / p95 after | broad p95 | 1,000 jobs listed "
        "p95 | RSS after sync / VmHWM | probe |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for run in runs:
        print(
            f"| {run['records']:,} | {run['sync_s']:.1f} ({run['sync_cpu_s']:.1f}) | "
            f"{run['rate']:,.0f} ({run['cpu_rate']:,.0f}) | "
            f"{percentile(run['status_during'], 0.95):.1f} / "
            f"{percentile(run['status_after'], 0.95):.1f} ms | "
            f"{percentile(run['search_during'], 0.95) if run['search_during'] else 0:.1f} ms | "
            f"{statistics.median(run['search']):.1f} / {percentile(run['search'], 0.95):.1f} ms | "
            f"{percentile(run['broad'], 0.95):.1f} ms | "
            f"{percentile(run['jobs_list'], 0.95):.1f} ms | "
            f"{run['rss_after_sync_mb']:.0f} / {run['hwm_mb']:.0f} MB | "
            f"{run['probe'][0].split()[0]}/{run['probe'][1].split()[0]} µs |"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=SIZES, help="catalog sizes, comma-separated")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the mirrors go")
    parser.add_argument(
        "--search-during",
        action="store_true",
        help="also search once every 0.2 s during the first sync (its CPU is then the daemon's "
        "too, so the sync's CPU-s no longer measure the sync alone)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    base = Path(args.dir)
    free = shutil.disk_usage(base).free
    if free < max(sizes) * DISK_PER_RECORD:
        sys.exit(
            f"{base} has {free / 1e9:.1f} GB free; {max(sizes):,} records need about "
            f"{max(sizes) * DISK_PER_RECORD / 1e9:.1f} GB (--dir puts them elsewhere)"
        )
    runs = []
    for size in sizes:
        before = probe()
        run = await run_size(size, base, search_during=args.search_during)
        run["probe"] = (before, probe())
        report(run)
        print(f"  timeit probe      {run['probe'][0]} before, {run['probe'][1]} after")
        runs.append(run)
    table(runs)


if __name__ == "__main__":
    asyncio.run(main())
