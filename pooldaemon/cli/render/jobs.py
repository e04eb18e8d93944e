"""Jobs as poolctl shows them: the jobs table, one-line answers, and `poolctl watch`."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.text import Text

from pooldaemon.cli.render.table import (
    ACTIVE,
    FINISHED,
    Cell,
    Col,
    FitTable,
    fmt_rate,
    fmt_size,
    state_text,
)


def throttle_line(data: dict[str, Any]) -> Text | None:
    """Why downloads are held or slow now (a schedule window, gig mode, bandwidth_limit)."""
    schedule = data.get("schedule") or {}
    gig = data.get("gig")
    reason = schedule.get("reason")
    until = ""
    if schedule.get("window") and schedule.get("next_change") and not gig:
        until = f" until {str(schedule['next_change'])[11:16]}"
    if schedule.get("paused"):
        return Text(f"downloads held: {reason or 'schedule'}{until}", style="yellow")
    if schedule.get("limit_bps"):
        why = reason or "[daemon] bandwidth_limit"
        return Text(f"downloads limited to {fmt_rate(schedule['limit_bps'])}: {why}{until}")
    return None


#: `poolctl jobs`, narrow: the rate goes first (only a downloading job has one), then the ref
#: (the job number is what retry/cancel take), the progress, the error; the job, its state and
#: its title stay.
_JOB_COLUMNS = (
    Col("job", justify="right"),
    Col("ref", drop=2),
    Col("state"),
    Col("artist - title", shrink_to=24),
    Col("progress", drop=3),
    Col("rate", drop=1, justify="right"),
    Col("error", drop=4, shrink_to=12),
)


def jobs_table(items: list[dict[str, Any]]) -> RenderableType:
    """`poolctl jobs`."""
    if not items:
        return Text("no jobs")
    rows = [
        [
            str(job["id"]),
            job.get("ref") or "-",
            state_text(job.get("state", "?")),
            _title(job),
            _progress_text(job),
            fmt_rate(job.get("rate_bps")),
            _note(job),
        ]
        for job in items
    ]
    return FitTable(_JOB_COLUMNS, rows)


def _note(job: dict[str, Any]) -> Text:
    """The last column: the error, or why a queued job waits (a window, gig mode, a pause)."""
    if job.get("waiting"):
        return Text(f"waiting: {job['waiting']}", style="yellow")
    return Text(job["error"], style="red") if job.get("error") else Text("")


def job_line(job: dict[str, Any]) -> Text:
    """One job on one line (retry/cancel/pause/resume answers)."""
    line = Text(f"job {job['id']} ")
    line.append(state_text(job.get("state", "?")))
    line.append(f"  {job.get('ref') or ''}  {_title(job)}")
    if job.get("error"):
        line.append(f"  {job['error']}", style="red")
    return line


def submit_view(data: dict[str, Any]) -> RenderableType:
    """`poolctl get` / `redownload`."""
    lines = []
    for item in data.get("accepted", []):
        lines.append(Text(f"{item['ref']}: job {item['job']}", style="green"))
    return Group(*lines) if lines else Text("nothing accepted")


def _title(job: dict[str, Any]) -> str:
    """ "Artist - Title"; a job the pool told us nothing about shows its file's name."""
    artist, title = job.get("artist"), job.get("title")
    if artist and title:
        return f"{artist} - {title}"
    if title or artist:
        return str(title or artist)
    return PurePath(job["path"]).name if job.get("path") else ""


def _progress_text(job: dict[str, Any]) -> str:
    done, total = job.get("bytes_done") or 0, job.get("bytes_total")
    if total and done >= total:
        return fmt_size(total)
    if total:
        return f"{fmt_size(done)} / {fmt_size(total)} ({100 * done / total:.0f}%)"
    return fmt_size(done) if done else "-"


#: `poolctl watch` and the demo, narrow: the size goes first, then the rate, then the bar; the
#: job, its state and its title stay (the title is cut).
_WATCH_COLUMNS = (
    Col("job", justify="right"),
    Col("state"),
    Col("artist - title", shrink_to=24),
    Col("progress", drop=3, shrink_to=8, width=30),
    Col("size", drop=1),
    Col("rate", drop=2, justify="right"),
)


class WatchView:
    """`poolctl watch`: active jobs with progress bars, fed by `/v1/events`, and below them the
    jobs that finished most recently (what happened, once nothing is left to do)."""

    def __init__(self, jobs: list[dict[str, Any]], keep_finished: int = 5) -> None:
        self.jobs: dict[int, dict[str, Any]] = {}
        self.finished: list[dict[str, Any]] = []
        self.keep_finished = keep_finished
        self.note = ""
        self.reconcile(jobs)

    def reconcile(self, jobs: list[dict[str, Any]]) -> None:
        """Take the daemon's job list as the truth (an event missed between reading the list
        and following the stream must not leave a finished job showing as downloading)."""
        for job in jobs:
            if job.get("state") in FINISHED:
                self.jobs.pop(job["id"], None)
            else:
                self.jobs[job["id"]] = {**self.jobs.get(job["id"], {}), **job}
        done = [job for job in jobs if job.get("state") in FINISHED]
        seen = {job["id"] for job in done}
        done += [job for job in self.finished if job["id"] not in seen]
        done.sort(key=lambda j: (j.get("updated") or 0, j["id"]), reverse=True)
        self.finished = done[: self.keep_finished]

    def apply(self, event: dict[str, Any]) -> str | None:
        """Take one event; returns a line worth printing above the view, if any."""
        kind = event.get("type")
        if kind == "job.progress":
            job = self.jobs.get(event.get("job"))  # type: ignore[arg-type]
            if job is not None:
                for key in ("bytes_done", "bytes_total", "rate_bps"):
                    if key in event:
                        job[key] = event[key]
            return None
        if kind == "job.state" and isinstance(event.get("job"), dict):
            job = dict(event["job"])
            if job.get("state") in FINISHED:
                self.jobs.pop(job["id"], None)
                others = [j for j in self.finished if j["id"] != job["id"]]
                self.finished = [job, *others][: self.keep_finished]
                return str(job_line(job))
            self.jobs[job["id"]] = {**self.jobs.get(job["id"], {}), **job}
            return None
        if kind == "sync":
            pool = event.get("pool", "?")
            if event.get("error"):
                error = event["error"]
                message = error.get("message") if isinstance(error, dict) else error
                return f"sync {pool}: failed: {message}"
            result = event.get("result") or {}
            counts = ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, int))
            return f"sync {pool}: {counts or 'done'}"
        if kind == "dropped":
            return f"(missed {event.get('count')} events: the view may lag)"
        if kind == "downloader.throttle":
            line = throttle_line({"schedule": event})
            return str(line) if line is not None else "downloads at full speed"
        return None

    def __rich__(self) -> RenderableType:
        jobs = sorted(
            self.jobs.values(),
            key=lambda j: (j.get("state") not in ACTIVE, j.get("state") != "queued", j["id"]),
        )
        rows: list[list[Cell]] = []
        for job in [*jobs, *self.finished]:
            total = job.get("bytes_total") or None
            done = job.get("bytes_done") or 0
            if job.get("state") == "done" and total:
                done = total
            rows.append(
                [
                    str(job["id"]),
                    state_text(job.get("state", "?")),
                    _title(job) or (job.get("ref") or ""),
                    ProgressBar(total=total, completed=done),
                    _progress_text({**job, "bytes_done": done}),
                    fmt_rate(job.get("rate_bps")) if job.get("state") in ACTIVE else "",
                ]
            )
        if not rows:
            rows.append(["", "", Text("no active jobs", style="dim"), "", "", ""])
        return FitTable(_WATCH_COLUMNS, rows)
