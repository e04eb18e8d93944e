"""Daemon footprint: `pooldaemon run` → READY=1, idle RSS, idle CPU (issue 2 targets).

Not part of the test run. Usage: python tests/benchmarks/bench_daemon.py [--runs 5] [--idle 60]
Targets: READY within 0.5 s, RSS at most 55 MiB, CPU under 0.2 % — a daemon a DJ forgets is
running. Linux only (reads /proc).

The daemon runs as installed: with its modules' bytecode cached (pip compiles it at install).
PYTHONDONTWRITEBYTECODE is dropped for the child and the cache goes to a temporary directory,
filled by one start that is not timed; `--source` times compiling every module at each start.
"""

from __future__ import annotations

import argparse
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

CONFIG = """
[daemon]
download_dir = "{root}/library"
state_dir = "{root}/state"
socket_path = "{root}/s/control.sock"
log_format = "json"

[pools.crateq]
type = "crateq"
api_key = "bench-key-123"
username = "dj"
password = "bench-password"
"""


def _receiver(root: Path) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = root / "notify"
    sock.bind(str(path))
    return sock, str(path)


def _start(root: Path, notify: str, *, cached: bool = True) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLDAEMON_", "WATCHDOG_"))}
    env["NOTIFY_SOCKET"] = notify
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return subprocess.Popen(
        [sys.executable, "-m", "pooldaemon.cli.daemon", "run", "--config", str(root / "c.toml")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def _wait_ready(sock: socket.socket, timeout: float = 30.0) -> None:
    sock.settimeout(timeout)
    while True:
        if b"READY=1" in sock.recv(65536).split(b"\n"):
            return


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _cpu_ticks(pid: int) -> int:
    # Fields after the ")" of the command name: utime and stime are fields 14 and 15.
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="start-ups to time")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU to measure")
    parser.add_argument(
        "--source", action="store_true", help="no bytecode cache: compile at every start"
    )
    args = parser.parse_args()
    if not Path("/proc/self/stat").exists():
        print("needs Linux /proc", file=sys.stderr)
        return 1

    ready_s: list[float] = []
    ready_cpu_s: list[float] = []
    cached = not args.source
    root = Path(tempfile.mkdtemp(prefix="pdb", dir="/tmp"))
    try:
        (root / "c.toml").write_text(CONFIG.format(root=root))
        (root / "c.toml").chmod(0o600)
        sock, notify = _receiver(root)
        for run in range(args.runs + cached):
            started = time.perf_counter()
            proc = _start(root, notify, cached=cached)
            _wait_ready(sock)
            if run or not cached:  # the first start with a cache fills it
                ready_s.append(time.perf_counter() - started)
                ready_cpu_s.append(_cpu_ticks(proc.pid) / os.sysconf("SC_CLK_TCK"))
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        proc = _start(root, notify, cached=cached)
        _wait_ready(sock)
        time.sleep(2.0)  # let start-up allocations settle
        rss = _rss_bytes(proc.pid)
        ticks0, t0 = _cpu_ticks(proc.pid), time.monotonic()
        time.sleep(args.idle)
        ticks1, t1 = _cpu_ticks(proc.pid), time.monotonic()
        rss_after = _rss_bytes(proc.pid)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(15)
        sock.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    cpu_pct = 100.0 * (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
    rows = [
        ("run → READY=1 (median)", f"{statistics.median(ready_s):.3f} s", "≤ 0.5 s"),
        ("run → READY=1 (min/max)", f"{min(ready_s):.3f} / {max(ready_s):.3f} s", ""),
        ("CPU until READY=1 (median)", f"{statistics.median(ready_cpu_s):.3f} s", ""),
        ("idle RSS after start", f"{rss / 2**20:.1f} MiB", "≤ 55 MiB"),
        (f"idle RSS after {args.idle:g} s", f"{rss_after / 2**20:.1f} MiB", "≤ 55 MiB"),
        (f"idle CPU over {args.idle:g} s", f"{cpu_pct:.3f} %", "< 0.2 %"),
        ("exit code on SIGTERM", str(exit_code), "0"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>20}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>20}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
