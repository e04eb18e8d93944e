"""Tables at 60, 80 and 100 columns: one line per row, values cut with "…", the least useful
columns dropped first; `--wide` and `--json` show every value whole. Rows come from the real
daemon's answers over the simulated pools, and from hand-made rows with CJK and emoji."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner, Result
from rich.cells import cell_len
from rich.console import Console, RenderableType

from pooldaemon.cli import render
from pooldaemon.cli.poolctl import main as poolctl
from pooldaemon.control.client import ControlClient
from pooldaemon.log import configure_logging
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.harvest import HarvestSim
from tests.conftest import started_daemon

WIDTHS = (60, 80, 100)
#: The box rule rich opens each table row with.
ROW = "│"
UNFINISHED = {"queued", "resolving", "downloading", "verifying"}

LONG_TITLE = "Crazy In Love * 2024 [Dirty Club Mix] (Extended Version With Intro And Outro)"
TRACKS: list[dict[str, Any]] = [
    {
        "ref": "crateq:114407",
        "artist": "Beyoncé ft JAY-Z",
        "title": LONG_TITLE,
        "mix": "Club",
        "genre": "Disco",
        "bpm": 125,
        "year": 1993,
        "date": "2026-12-03",
    },
    {
        "ref": "harvest:5916bd9f36847ae6",
        "artist": "坂本龍一 & 矢野顕子",
        "title": "戦場のメリークリスマス 🎄🎹 (Merry Christmas Mr. Lawrence)\nExtended",
        "mix": "Instrumental",
        "genre": "Soundtrack",
        "bpm": None,
        "year": 1983,
        "date": "2026-11-28",
    },
    {
        "ref": "promoonly:374210",
        "artist": "Rage Against The Machine",
        "title": "Sleep Now In The Fire (From The Battle Of Mexico City)",
        "mix": "Dirty",
        "genre": "Rock",
        "bpm": 98,
        "year": 2001,
        "date": "2026-12-01",
    },
]
JOBS: list[dict[str, Any]] = [
    {
        "id": 12,
        "ref": "harvest:9150ce3aefa23cfe",
        "state": "done",
        "title": None,
        "artist": None,
        "path": "/music/harvest/Nordic Echo - Wild Drift 4",
        "bytes_done": 24000,
        "bytes_total": 24000,
        "updated": 30.0,
    },
    {
        "id": 11,
        "ref": "crateq:100002",
        "state": "failed",
        "title": LONG_TITLE,
        "artist": "Lena Ellis ft Malik Cruz",
        "error": "crateq: 403 the pool's download limit for today is reached; try after midnight",
        "bytes_done": 1000,
        "bytes_total": 24000,
        "updated": 20.0,
    },
    {
        "id": 10,
        "ref": "harvest:5916bd9f36847ae6",
        "state": "downloading",
        "title": "戦場のメリークリスマス 🎄🎹",
        "artist": "坂本龍一",
        "bytes_done": 5000,
        "bytes_total": 20000,
        "rate_bps": 123456,
        "updated": 10.0,
    },
]


def draw(renderable: RenderableType, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def headers(lines: list[str]) -> list[str]:
    """The header row's titles ("┃ ref ┃ artist ┃…")."""
    row = next(line for line in lines if line.startswith("┃"))
    return [cell.strip() for cell in row.strip("┃").split("┃")]


def body(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(ROW)]


def assert_fits(lines: list[str], width: int, rows: int) -> None:
    too_wide = [line for line in lines if cell_len(line) > width]
    assert not too_wide, f"wider than {width}: {too_wide}"
    assert len(body(lines)) == rows, "\n".join(lines)  # one line per row, no wrapped cell


# -- fed realistic rows ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_every_table_fits_one_line_per_row(width: int) -> None:
    views: list[tuple[RenderableType, int]] = [
        (render.search_table({"items": TRACKS, "total": 90}), len(TRACKS)),
        (render.jobs_table(JOBS), len(JOBS)),
        (render.WatchView(JOBS), len(JOBS)),
        (
            render.queue_table(
                {"pool": "crateq", "items": [{"id": "114407", "kind": "track", **TRACKS[0]}]}
            ),
            1,
        ),
    ]
    views.append(
        (
            render.status_view(
                {
                    "version": "1",
                    "uptime_s": 60,
                    "pools": [
                        {"name": "crateq", "type": "crateq", "last_error": JOBS[1]["error"]},
                        {"name": "harvest", "type": "harvest", "last_catalog_sync": 1.0},
                    ],
                    "jobs": {"done": 1},
                }
            ),
            2,
        )
    )
    views.append(
        (
            render.sync_table(
                {
                    "crateq": {"error": {"message": JOBS[1]["error"]}},
                    "harvest": {"added": 32, "updated": 0, "removed": 0, "queue_new": 3},
                }
            ),
            2,
        )
    )
    for view, rows in views:
        lines = draw(view, width)
        assert_fits(lines, width, rows)
        assert any("…" in line for line in body(lines)), "\n".join(lines)


def test_search_drops_the_least_useful_columns_first() -> None:
    # Stated independently of the code: what a DJ misses least goes first.
    drop_order = ["date", "year", "mix", "genre", "bpm"]
    shown_at: dict[int, list[str]] = {}
    for width in range(140, 45, -1):
        lines = draw(render.search_table({"items": TRACKS, "total": 3}), width)
        assert_fits(lines, width, len(TRACKS))
        shown = headers(lines)
        shown_at[width] = shown
        assert shown[:3] == ["ref", "artist", "title"]  # never dropped
        gone = [name for name in drop_order if name not in shown]
        assert gone == drop_order[: len(gone)], f"at {width}: {shown}"
        # The ref is what `poolctl get` takes: it is never cut.
        assert all(t["ref"] in "\n".join(lines) for t in TRACKS)
    assert len(shown_at[140]) == 8 and shown_at[60] == ["ref", "artist", "title"]
    assert "date" not in shown_at[100] and "date" not in shown_at[80]
    # Short refs leave room: at 80 columns a CrateQ result keeps its tempo.
    crateq = draw(render.search_table({"items": TRACKS[:1], "total": 1}), 80)
    assert "bpm" in headers(crateq)


def test_an_empty_column_goes_before_a_value_is_cut() -> None:
    jobs = [job for job in JOBS if job["state"] == "done"]
    lines = draw(render.jobs_table(jobs), 40)
    assert "rate" not in headers(lines) and "error" not in headers(lines)
    assert headers(draw(render.jobs_table(JOBS), 200)) == [
        "job",
        "ref",
        "state",
        "artist - title",
        "progress",
        "rate",
        "error",
    ]


def test_wide_shows_every_value_whole_on_one_line() -> None:
    table = render.search_table({"items": TRACKS, "total": 3})
    console = Console(width=80, record=True, color_system=None)
    wide = render.wide_width(table, console)
    assert wide > 80
    lines = draw(table, wide)
    assert_fits(lines, wide, len(TRACKS))
    text = "\n".join(lines)
    assert "…" not in text
    assert LONG_TITLE in text and "坂本龍一 & 矢野顕子" in text
    # A line break inside a value is a space: still one line per row.
    assert "(Merry Christmas Mr. Lawrence) Extended" in text
    assert headers(lines) == ["ref", "artist", "title", "mix", "genre", "bpm", "year", "date"]


def test_a_job_without_title_shows_its_file_name() -> None:
    text = "\n".join(draw(render.jobs_table(JOBS[:1]), 100))
    assert "Nordic Echo - Wild Drift 4" in text


def test_watch_view_ends_showing_what_finished() -> None:
    started = [dict(JOBS[2]), {"id": 9, "ref": "crateq:1", "state": "queued", "updated": 1.0}]
    view = render.WatchView(started, keep_finished=10)
    assert [row[0] for row in view.__rich__().rows] == ["10", "9"]  # type: ignore[attr-defined]
    view.apply({"type": "job.state", "job": {**JOBS[2], "state": "done", "updated": 40.0}})
    # The "done" event for job 9 was missed; the job list tells the truth.
    view.reconcile([{**started[1], "state": "done", "title": "T", "artist": "A", "updated": 50}])
    assert view.jobs == {}
    lines = draw(view, 80)
    assert "no active jobs" not in "\n".join(lines)
    assert_fits(lines, 80, 2)
    assert [line.split(ROW)[2].strip() for line in body(lines)] == ["done", "done"]
    assert "A - T" in lines[3] and "坂本龍一" in lines[4]
    assert "no active jobs" in "\n".join(draw(render.WatchView([]), 80))


# -- the real daemon over the simulated pools -----------------------------------------------------


@dataclass
class Running:
    client: ControlClient
    socket: Path
    harvest: HarvestSim


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    # poolctl runs in this process: the daemon's log must not land in its output.
    saved = structlog.get_config()
    log_file = (tmp_path / "pooldaemon.log").open("w", encoding="utf-8")
    configure_logging("json", stream=log_file)
    try:
        async with (
            CrateQSim(records=400, seed="render") as crateq,
            HarvestSim(seed="render", favourites=2) as harvest,
        ):
            crateq.add_to_queue(crateq.catalog.ids()[:2])
            async with started_daemon(
                tmp_path,
                crateq.config_toml("crateq"),
                harvest.config_toml("harvest"),
                write_tags=False,
            ) as (config, _, client):
                for pool in ("crateq", "harvest"):
                    await client.post(f"/v1/pools/{pool}/sync", {"full": True})
                yield Running(client, config.daemon.socket_path, harvest)
    finally:
        structlog.configure(**saved)
        log_file.close()


async def poolctl_at(width: int, *args: str) -> Result:
    """`poolctl` as a user runs it in a terminal `width` columns wide (its own event loop)."""
    runner = CliRunner()
    env = {"COLUMNS": str(width), "LINES": "50"}
    return await asyncio.to_thread(runner.invoke, poolctl, list(args), env=env)


async def test_poolctl_search_fits_and_wide_and_json_show_everything(running: Running) -> None:
    sock = ["--socket", str(running.socket)]
    whole = await poolctl_at(80, *sock, "--json", "search", "--limit", "40")
    assert whole.exit_code == 0, whole.output
    items = json.loads(whole.stdout)["items"]
    assert len(items) == 40
    longest = max((t["title"] for t in items), key=cell_len)
    for width in WIDTHS:
        result = await poolctl_at(width, *sock, "search", "--limit", "40")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert_fits(lines, width, 40)
        assert all(t["ref"] in result.stdout for t in items)
    assert longest not in result.stdout and "…" in result.stdout
    for args in (["--wide", "search"], ["search", "--wide"]):
        wide = await poolctl_at(80, *sock, *args, "--limit", "40")
        assert wide.exit_code == 0, wide.output
        lines = wide.stdout.splitlines()
        assert len(body(lines)) == 40 and "…" not in wide.stdout
        assert all(t["title"] in wide.stdout and t["artist"] in wide.stdout for t in items)


async def test_harvest_jobs_show_the_title_and_artist_of_their_track(running: Running) -> None:
    async with asyncio.timeout(30):
        while True:
            jobs = (await running.client.get("/v1/jobs"))["items"]
            if len(jobs) == 4 and not any(j["state"] in UNFINISHED for j in jobs):
                break
            await asyncio.sleep(0.05)
    harvest_jobs = {j["ref"].split(":")[-1]: j for j in jobs if j["pool"] == "harvest"}
    assert set(harvest_jobs) == set(running.harvest.favourite_ids)
    for track_id, job in harvest_jobs.items():
        track = running.harvest.tracks[track_id]
        assert (job["title"], job["artist"]) == (track.title, track.artist)
    result = await poolctl_at(80, "--socket", str(running.socket), "jobs")
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout.splitlines(), 80, 4)
    for track_id in harvest_jobs:
        track = running.harvest.tracks[track_id]
        assert f"{track.artist} - {track.title}"[:20] in result.stdout


def test_status_and_watch_say_why_downloads_are_held_or_slow() -> None:
    base = {"version": "1", "uptime_s": 5, "pools": [], "jobs": {}, "rate_bps": 0}
    window = {
        "window": "every day 01:00-07:00",
        "downloads": True,
        "limit_bps": 1024 * 1024,
        "paused": False,
        "reason": "schedule every day 01:00-07:00",
        "next_change": "2026-06-04T07:00:00+02:00",
    }
    slow = "\n".join(draw(render.status_view({**base, "schedule": window, "gig": None}), 100))
    assert "downloads limited to 1.0 MiB/s: schedule every day 01:00-07:00 until 07:00" in slow
    gig = {**window, "paused": True, "limit_bps": None, "reason": "gig: rekordbox"}
    app = {"app": "rekordbox", "action": "pause", "limit_bps": None}
    held = "\n".join(draw(render.status_view({**base, "schedule": gig, "gig": app}), 100))
    assert "downloads held: gig: rekordbox" in held and "until" not in held
    free = {**window, "window": None, "limit_bps": None, "reason": None, "next_change": None}
    plain = "\n".join(draw(render.status_view({**base, "schedule": free, "gig": None}), 100))
    assert "downloads held" not in plain and "limited" not in plain
    view = render.WatchView([])
    event = {"type": "downloader.throttle", "paused": True, "limit_bps": None}
    assert view.apply({**event, "reason": "gig: rekordbox"}) == "downloads held: gig: rekordbox"
    assert view.apply({**event, "paused": False, "reason": None}) == "downloads at full speed"
    queued = {**JOBS[0], "state": "queued", "error": None, "waiting": "gig: rekordbox"}
    assert "waiting: gig: rekordbox" in "\n".join(draw(render.jobs_table([queued]), 200))
