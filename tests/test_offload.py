"""The page decoder's worker process (offload.py) and the rows it hands back (trackrows.py)."""

from __future__ import annotations

import multiprocessing.spawn
import os
import signal
from collections.abc import AsyncIterator

import pytest
import structlog

from pooldaemon.models import Track
from pooldaemon.offload import INLINE, Offload
from pooldaemon.trackrows import WIDTH, TrackRows, raw_text


@pytest.fixture
async def offload() -> AsyncIterator[Offload]:
    worker = Offload()
    yield worker
    await worker.close()


def _track(n: int, **fields: object) -> Track:
    return Track(
        "crateq",
        str(n),
        artist=f"Artist {n}",
        title="Ça va",
        bpm=120 + n,
        audio=True,
        video=False,
        downloaded=None,
        raw={"mediaId": n, "title": "Ça va", "big": 2**70, "nested": {"a": [1, 2.5]}},
        **fields,  # type: ignore[arg-type]
    )


def test_rows_give_back_the_tracks_they_were_made_of() -> None:
    tracks = [_track(1), _track(2, date="2026-11-01", genre="House")]
    rows = TrackRows.of("crateq", tracks)
    assert len(rows) == 2 and len(rows.values) == 2 * WIDTH
    assert list(rows) == tracks and rows == tracks
    assert [t.raw for t in rows] == [t.raw for t in tracks]  # raw is not part of Track's ==
    assert rows[-1] == tracks[1] and rows[0:1] == tracks[:1]
    assert rows.ids() == ["1", "2"]
    assert rows.raws() == [raw_text(t.raw) for t in tracks]
    assert TrackRows.of("crateq", rows) is rows
    with pytest.raises(IndexError):
        rows[2]


def test_raw_text_is_compact_and_the_same_for_the_same_record() -> None:
    raw = {"b": 1, "a": "é", "n": None, "big": 2**70}  # past 64 bits: written by `json`
    assert raw_text(raw) == '{"b":1,"a":"é","n":null,"big":1180591620717411303424}'
    assert raw_text(dict(raw)) == raw_text(raw)


async def test_work_runs_in_a_worker_process_once_it_is_up(offload: Offload) -> None:
    assert await offload.start("os")
    worker = await offload.run(os.getpid)
    assert worker != os.getpid()
    assert await offload.run(sorted, [3, 1, 2]) == [1, 2, 3]
    await offload.close()
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)  # stopped, and reaped


async def test_work_before_the_worker_is_up_runs_here(offload: Offload) -> None:
    assert await offload.run(os.getpid) == os.getpid()  # starts the worker, does not wait
    assert await offload.start("os")


async def test_an_error_in_the_work_reaches_the_caller_as_it_was(offload: Offload) -> None:
    assert await offload.start("os")
    with pytest.raises(ValueError, match="invalid literal"):
        await offload.run(int, "twelve")
    assert await offload.run(int, "12") == 12  # the worker is still there


async def test_a_worker_that_dies_is_replaced_by_this_process(offload: Offload) -> None:
    assert await offload.start("os")
    os.kill(await offload.run(os.getpid), signal.SIGKILL)
    logs = structlog.testing.LogCapture()
    structlog.configure(processors=[logs])
    try:
        assert await offload.run(os.getpid) == os.getpid()  # the same work, done here
        assert await offload.run(os.getpid) == os.getpid()
    finally:
        structlog.reset_defaults()
    warnings = [e for e in logs.entries if e["log_level"] == "warning"]
    assert len(warnings) == 1 and "no worker process" in warnings[0]["event"]
    assert not await offload.start("os")  # not started again for this pass


async def test_a_worker_that_cannot_start_leaves_the_work_here() -> None:
    offload = Offload()
    try:
        assert not await offload.start("pooldaemon.no_such_module")
        assert await offload.run(os.getpid) == os.getpid()
    finally:
        await offload.close()


async def test_inline_never_starts_a_process() -> None:
    assert not await INLINE.start("os")
    assert await INLINE.run(os.getpid) == os.getpid()


async def test_a_worker_whose_program_cannot_run_leaves_the_work_here() -> None:
    """Spawning fails at once (no such interpreter: a sandbox, a broken install)."""
    python = multiprocessing.spawn.get_executable()
    multiprocessing.spawn.set_executable("/nonexistent/python3")
    offload = Offload()
    logs = structlog.testing.LogCapture()
    structlog.configure(processors=[logs])
    try:
        assert await offload.run(os.getpid) == os.getpid()
        assert not await offload.start("os")
    finally:
        multiprocessing.spawn.set_executable(python)
        structlog.reset_defaults()
        await offload.close()
    assert [e["event"] for e in logs.entries] == [
        "decoding in the daemon's process: no worker process"
    ]
