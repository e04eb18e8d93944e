"""The dashboard: first paint on loopback, and what 100 open tabs cost a download (issue 18).

Not part of the test run. Usage: python tests/benchmarks/bench_web.py [--loads 15] [--reps 3]
Targets: the overview painted with its data in under 300 ms; 100 tabs following the event stream
add under 2 % CPU (of one core) to a 4-connection download, which keeps its speed.
Linux only (reads /proc); the paint part needs chromium and chromium-driver (skipped without).

The daemon is a real `pooldaemon run` subprocess; the simulated CrateQ runs in this process
(its CPU is not the daemon's), the 100 tabs in a child process of their own. Downloads are paced
by the simulator (4 MiB/s per connection), so with and without tabs move the same bytes in the
same time, and the daemon's CPU share is comparable; runs alternate to spread this VM's drift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

MIB = 1024 * 1024
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# -- the tabs (a child process) ------------------------------------------------------------------


async def tabs(url: str, cookie: str, count: int) -> None:
    """`count` event streams that read everything; prints "ready" once all are subscribed and a
    JSON count of messages when stdin closes."""
    received = [0] * count
    subscribed = asyncio.Event()
    ready = 0

    async def tab(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal ready
        headers = {"Cookie": f"pd_session={cookie}", "Accept": "text/event-stream"}
        async with session.get(url, headers=headers) as resp:
            resp.raise_for_status()
            async for line in resp.content:
                if line.startswith(b"data: "):
                    received[i] += 1
                    if received[i] == 1:
                        ready += 1
                        if ready == count:
                            subscribed.set()

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(tab(i, session)) for i in range(count)]
        await subscribed.wait()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"messages": sum(received), "tabs": count}), flush=True)


# -- the daemon ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.origin = ""
        self.cookie = ""

    async def start(self, crateq_toml: str) -> None:
        config = self.root / "config.toml"
        config.write_text(
            "\n".join(
                [
                    "[daemon]",
                    f'download_dir = "{self.root}/library"',
                    f'state_dir = "{self.root}/state"',
                    f'socket_path = "{self.root}/s/c.sock"',
                    'log_format = "json"',
                    "write_tags = false",
                    "connections_per_download = 4",
                    "",
                    "[web]",
                    'listen = "127.0.0.1:0"',
                    "",
                    crateq_toml,
                ]
            )
        )
        config.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POOLDAEMON_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pooldaemon.cli.daemon", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "daemon.log").open("wb"),
            env=env,
        )
        async with asyncio.timeout(30):
            while True:
                try:
                    link = await self.call("POST", "/v1/ui/login-link")
                    break
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.05)
        self.origin = link["url"].split("/login")[0]
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
            http.get(link["url"], allow_redirects=False) as resp,
        ):
            self.cookie = resp.cookies["pd_session"].value

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        connector = aiohttp.UnixConnector(path=str(self.root / "s" / "c.sock"))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.request(method, "http://pd" + path, json=body) as resp,
        ):
            return await resp.json()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    async def download(self, ref: str) -> tuple[float, float, int]:
        """Download one track: (wall s, daemon CPU s, bytes)."""
        assert self.proc is not None
        before_cpu, before = cpu_s(self.proc.pid), time.monotonic()
        answer = await self.call("POST", "/v1/jobs", {"refs": [ref]})
        job_id = answer["accepted"][0]["job"]
        while True:
            job = await self.call("GET", f"/v1/jobs/{job_id}")
            if job["state"] in ("done", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        wall, cpu = time.monotonic() - before, cpu_s(self.proc.pid) - before_cpu
        if job["state"] != "done":
            raise RuntimeError(f"job {job_id} ended {job['state']}: {job['error']}")
        return wall, cpu, int(job["bytes_total"])


# -- first paint ---------------------------------------------------------------------------------


def first_paint(origin_link: str, origin: str, loads: int) -> dict[str, list[float]] | None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        print("first paint: skipped (needs chromium and chromium-driver)")
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="pdbench-chrome-")
    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1440,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    script = """
        const nav = performance.getEntriesByType("navigation")[0];
        const fcp = performance.getEntriesByName("first-contentful-paint")[0];
        const view = performance.getEntriesByName("view:overview")[0];
        if (!view || !fcp || !nav || nav.loadEventEnd === 0) return null;
        return {fcp: fcp.startTime, dom: nav.domContentLoadedEventEnd,
                load: nav.loadEventEnd, view: view.startTime};
    """
    got: dict[str, list[float]] = {"fcp": [], "dom": [], "load": [], "view": []}
    try:
        driver.get(origin_link)
        for i in range(loads + 1):
            driver.get(origin + "/")
            sample = WebDriverWait(driver, 10, poll_frequency=0.02).until(
                lambda d: d.execute_script(script)
            )
            if i == 0:
                continue  # the first load fills the HTTP cache: not what a DJ sees every day
            for key, value in sample.items():
                if value is not None:
                    got[key].append(float(value))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return got


# -- main ----------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    from pooldaemon.sim.crateq import CrateQSim

    root = Path(tempfile.mkdtemp(prefix="pdbench-web-"))
    bench = Bench(root)
    size = args.size_mib * MIB
    async with CrateQSim(records=50, seed="bench-web") as sim:
        ids = sim.catalog.ids()
        for media_id in ids[: 2 * args.reps + 1]:
            sim.set_media_size(media_id, size)
        try:
            await bench.start(sim.config_toml("crateq"))
            assert bench.proc is not None
            await bench.call("POST", "/v1/pools/crateq/sync", {"full": True})
            link = (await bench.call("POST", "/v1/ui/login-link"))["url"]
            paint = await asyncio.to_thread(first_paint, link, bench.origin, args.loads)
            if paint:
                print(f"first paint, {args.loads} loads of / (median, max in ms):")
                for key, label in (
                    ("fcp", "first contentful paint"),
                    ("dom", "DOMContentLoaded"),
                    ("load", "load event"),
                    ("view", "overview shown with its data"),
                ):
                    values = paint[key]
                    if values:
                        print(f"  {label:30s} {statistics.median(values):6.1f}  {max(values):6.1f}")

            sim.faults.throttle_bps = args.pace_mib * MIB
            await bench.download(f"crateq:{ids[-1]}")  # warm-up: sign-in, first plan
            rows: dict[str, list[tuple[float, float, int]]] = {"0 tabs": [], "100 tabs": []}
            rss: dict[str, float] = {}
            for rep in range(args.reps):
                for label in ("0 tabs", "100 tabs"):
                    ref = f"crateq:{ids[2 * rep + (label != '0 tabs')]}"
                    child = None
                    if label != "0 tabs":
                        child = subprocess.Popen(
                            [
                                sys.executable,
                                __file__,
                                "--tabs",
                                str(args.tabs),
                                "--url",
                                bench.origin + "/api/v1/events",
                                "--cookie",
                                bench.cookie,
                            ],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            text=True,
                        )
                        assert child.stdout is not None
                        assert child.stdout.readline().strip() == "ready"
                    rows[label].append(await bench.download(ref))
                    rss[label] = rss_mib(bench.proc.pid)
                    if child is not None:
                        out, _ = child.communicate("", timeout=30)
                        print(f"  tabs: {out.strip()}")
            print(
                f"{args.size_mib} MiB download, 4 connections paced at {args.pace_mib} MiB/s each, "
                f"{args.reps} runs each:"
            )
            share = {}
            for label, runs in rows.items():
                shares = [100 * c / w for w, c, _ in runs]
                speeds = [b / w / MIB for w, _, b in runs]
                share[label] = statistics.mean(shares)
                print(
                    f"  {label:9s} daemon CPU {share[label]:5.2f} % of a core "
                    f"({', '.join(f'{s:.2f}' for s in shares)}), "
                    f"{statistics.mean(speeds):5.1f} MiB/s, RSS {rss[label]:.1f} MiB"
                )
            print(f"  added by {args.tabs} tabs: {share['100 tabs'] - share['0 tabs']:+.2f} % CPU")
        finally:
            bench.stop()
            shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=15, help="page loads to time")
    parser.add_argument("--reps", type=int, default=3, help="downloads with and without tabs")
    parser.add_argument("--size-mib", type=int, default=128, help="download size")
    parser.add_argument("--pace-mib", type=int, default=4, help="per-connection pace")
    parser.add_argument("--tabs", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.url:
        asyncio.run(tabs(args.url, args.cookie, args.tabs))
        return 0
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
