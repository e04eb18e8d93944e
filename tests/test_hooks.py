"""Hooks: real scripts see the documented environment, are killed at their timeout, never block."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from pooldaemon.hooks import HookEvent, HookRunner
from pooldaemon.informed_config import HooksConfig
from tests.conftest import eventually

BASE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "POOLDAEMON_POOLS__CRATEQ__PASSWORD": "hunter2",
}
DONE = HookEvent(
    event="done",
    ref="crateq:570291",
    pool="crateq",
    job="17",
    path="/music/crateq/House/Artist - Title $(touch pwned).mp3",
    artist="Ärtist & Co",
    title='Title "$(touch pwned)"',
)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
async def logs() -> AsyncIterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_the_hook_sees_the_documented_environment(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    seen = tmp_path / "seen"
    hook = script(tmp_path / "on-done", f'env > "{seen}.tmp" && mv "{seen}.tmp" "{seen}"\n')
    runner = HookRunner(HooksConfig(on_done=hook), base_env=BASE_ENV)
    runner.start()
    try:
        assert runner.submit(DONE) is True
        await eventually(seen.exists)
        await eventually(lambda: bool(events(logs, "hook.finished")))
    finally:
        await runner.stop()
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    mine = {key: value for key, value in env.items() if key.startswith("POOLDAEMON_")}
    assert mine == {
        "POOLDAEMON_EVENT": "done",
        "POOLDAEMON_REF": "crateq:570291",
        "POOLDAEMON_POOL": "crateq",
        "POOLDAEMON_JOB": "17",
        "POOLDAEMON_PATH": "/music/crateq/House/Artist - Title $(touch pwned).mp3",
        "POOLDAEMON_ARTIST": "Ärtist & Co",
        "POOLDAEMON_TITLE": 'Title "$(touch pwned)"',
        "POOLDAEMON_ERROR": "",
    }
    assert env["HOME"] == "/nonexistent"  # the daemon's environment, minus its own settings
    assert not list(Path("/").glob("pwned")) and not (tmp_path / "pwned").exists()
    assert not runner.submit(HookEvent("failed", "crateq:1", "crateq", "1"))  # no on_failed


async def test_a_hook_that_sleeps_for_ever_is_killed_with_its_children(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    pids = tmp_path / "pids"
    hook = script(
        tmp_path / "stuck",
        f'sleep 1000 &\necho "$$ $!" > "{pids}.tmp" && mv "{pids}.tmp" "{pids}"\n'
        'echo "going to sleep"\nsleep 1000\n',
    )
    runner = HookRunner(HooksConfig(on_done=hook), base_env=BASE_ENV)
    runner.timeout_s = 0.5
    runner.start()
    try:
        runner.submit(DONE)
        await eventually(pids.exists)
        shell, child = (int(pid) for pid in pids.read_text().split())
        await eventually(lambda: bool(events(logs, "hook.killed")))
        await eventually(lambda: not alive(shell) and not alive(child))
    finally:
        await runner.stop()
    (killed,) = events(logs, "hook.killed")
    assert killed["timeout_s"] == 0.5
    assert killed["output"] == "going to sleep"
    assert killed["ref"] == "crateq:570291"


async def test_a_hook_that_fails_is_one_log_line(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    hook = script(tmp_path / "fails", 'echo "no such playlist: $POOLDAEMON_REF" >&2\nexit 1\n')
    runner = HookRunner(HooksConfig(on_failed=hook), base_env=BASE_ENV)
    runner.start()
    try:
        runner.submit(HookEvent("failed", "crateq:9", "crateq", "3", error="404"))
        await eventually(lambda: bool(events(logs, "hook.failed")))
    finally:
        await runner.stop()
    hook_lines = [entry for entry in logs if entry["event"].startswith("hook.")]
    assert hook_lines == [
        {
            "event": "hook.failed",
            "log_level": "warning",
            "hook": str(hook),
            "event_kind": "failed",
            "ref": "crateq:9",
            "exit_code": 1,
            "output": "no such playlist: crateq:9",
        }
    ]


async def test_output_is_bounded(tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    hook = script(tmp_path / "chatty", "head -c 5000000 /dev/zero | tr '\\0' x\n")
    runner = HookRunner(HooksConfig(on_done=hook), base_env=BASE_ENV)
    runner.output_limit_bytes = 100
    runner.start()
    try:
        runner.submit(DONE)
        await eventually(lambda: bool(events(logs, "hook.finished")))
    finally:
        await runner.stop()
    assert events(logs, "hook.finished")[0]["output"] == "x" * 100


async def test_submit_never_blocks_and_concurrency_is_bounded(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    started.mkdir()
    hook = script(
        tmp_path / "waits",
        f'touch "{started}/$$"\nwhile [ ! -e "{release}" ]; do sleep 0.02; done\n',
    )
    runner = HookRunner(HooksConfig(on_done=hook), base_env=BASE_ENV, concurrency=2, queue_size=2)
    runner.start()
    try:
        t0 = time.monotonic()
        accepted = [runner.submit(DONE) for _ in range(2)]
        await eventually(lambda: runner.running == 2)
        accepted += [runner.submit(DONE) for _ in range(4)]
        assert time.monotonic() - t0 < 5
        assert accepted == [True, True, True, True, False, False]  # 2 running, 2 queued
        assert len(events(logs, "hook.queue_full")) == 1  # one line for the streak
        await eventually(lambda: len(list(started.iterdir())) == 2)
        assert runner.running == 2 and runner.pending() == 2
        release.touch()
        await eventually(lambda: len(events(logs, "hook.finished")) == 4)
        assert len(list(started.iterdir())) == 4
    finally:
        await runner.stop()


async def test_a_missing_program_is_logged_not_raised(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    hook = script(tmp_path / "gone", "exit 0\n")
    runner = HookRunner(HooksConfig(on_done=hook), base_env=BASE_ENV)
    hook.unlink()  # removed after the config was checked
    runner.start()
    try:
        runner.submit(DONE)
        await eventually(lambda: bool(events(logs, "hook.cannot_start")))
    finally:
        await runner.stop()


async def test_stop_kills_a_running_hook(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hook = script(
        tmp_path / "slow",
        f'echo $$ > "{pid_file}.tmp" && mv "{pid_file}.tmp" "{pid_file}"\nsleep 1000\n',
    )
    runner = HookRunner(HooksConfig(on_done=hook), base_env=BASE_ENV)
    runner.start()
    runner.submit(DONE)
    await eventually(pid_file.exists)
    await runner.stop()
    pid = int(pid_file.read_text())
    await eventually(lambda: not alive(pid))
