"""How poolctl shows the socket API's answers: rich tables and progress bars."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

_STATE_STYLES = {
    "queued": "cyan",
    "resolving": "blue",
    "downloading": "bold blue",
    "verifying": "magenta",
    "done": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "paused": "yellow",
}
ACTIVE = ("resolving", "downloading", "verifying")
FINISHED = ("done", "failed", "cancelled")


def fmt_size(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def fmt_rate(bps: float | None) -> str:
    return "-" if not bps else f"{fmt_size(bps)}/s"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    now = time.time() if now is None else now
    return f"{fmt_duration(max(0.0, now - ts))} ago"


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLES.get(state, ""))


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def status_view(data: dict[str, Any]) -> RenderableType:
    """`poolctl status`."""
    head = Text()
    head.append(f"pooldaemon {data.get('version', '?')}", style="bold")
    head.append(f"  up {fmt_duration(data.get('uptime_s'))}")
    head.append(f"  {fmt_rate(data.get('rate_bps')) if data.get('rate_bps') else '0 B/s'}")
    if data.get("paused"):
        head.append("  downloads paused", style="yellow")
    pools = Table(title="pools", title_justify="left", expand=False)
    for column in ("pool", "type", "catalog sync", "queue sync", "last error"):
        pools.add_column(column)
    for pool in data.get("pools", []):
        error = pool.get("blocked_reason") or pool.get("last_error")
        name = Text(pool["name"]) if pool.get("enabled", True) else Text(pool["name"], "dim")
        pools.add_row(
            name,
            pool.get("type", "?"),
            fmt_ago(pool.get("last_catalog_sync")),
            fmt_ago(pool.get("last_queue_sync")),
            Text(error, style="red") if error else Text("-"),
        )
    if not data.get("pools"):
        pools.add_row("(none configured)", "", "", "", "")
    counts = data.get("jobs", {})
    jobs = Text("jobs: ")
    shown = [(state, n) for state, n in counts.items() if n]
    if not shown:
        jobs.append("none")
    for i, (state, n) in enumerate(shown):
        if i:
            jobs.append(", ")
        jobs.append(f"{n} ", style="bold")
        jobs.append(state, style=_STATE_STYLES.get(state, ""))
    return Group(head, pools, jobs)


def pools_table(items: list[dict[str, Any]]) -> RenderableType:
    """`poolctl pools`."""
    table = Table()
    for column in ("pool", "type", "enabled", "auto download", "catalog every", "queue every"):
        table.add_column(column)
    for pool in items:
        table.add_row(
            pool["name"],
            pool.get("type", "?"),
            "yes" if pool.get("enabled") else "no",
            "yes" if pool.get("auto_download") else "no",
            fmt_duration(pool.get("catalog_interval_s")),
            fmt_duration(pool.get("queue_interval_s")),
        )
    if not items:
        return Text("no pools configured")
    return table


def jobs_table(items: list[dict[str, Any]]) -> RenderableType:
    """`poolctl jobs`."""
    if not items:
        return Text("no jobs")
    table = Table()
    for column in ("job", "ref", "state", "artist - title", "progress", "rate", "error"):
        table.add_column(column, overflow="fold")
    for job in items:
        table.add_row(
            str(job["id"]),
            job.get("ref") or "-",
            _state(job.get("state", "?")),
            _title(job),
            _progress_text(job),
            fmt_rate(job.get("rate_bps")),
            Text(job["error"], style="red") if job.get("error") else Text(""),
        )
    return table


def job_line(job: dict[str, Any]) -> Text:
    """One job on one line (retry/cancel/pause/resume answers)."""
    line = Text(f"job {job['id']} ")
    line.append(_state(job.get("state", "?")))
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


def search_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl search`."""
    items = data.get("items", [])
    table = Table(caption=f"{len(items)} of {data.get('total', len(items))}")
    for column in ("ref", "artist", "title", "mix", "genre", "bpm", "year", "date"):
        table.add_column(column, overflow="fold")
    for track in items:
        table.add_row(
            track.get("ref") or "-",
            _text(track.get("artist")),
            _text(track.get("title")),
            _text(track.get("mix")),
            _text(track.get("genre")),
            _text(track.get("bpm")),
            _text(track.get("year")),
            _text(track.get("date")),
        )
    return table


def rules_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl rules`: each rule's counts since it appeared."""
    table = Table()
    for column in ("rule", "enabled", "matched", "queued", "skipped", "waiting", "last match"):
        table.add_column(column)
    for rule in data.get("items", []):
        table.add_row(
            rule["name"],
            "yes" if rule.get("enabled") else "no",
            *(_text(rule.get(k)) for k in ("matched", "queued", "skipped", "waiting")),
            _text(rule.get("last_match")),
        )
    return table


def rule_test_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl rules test NAME`: what a backfill would take; * marks the library's."""
    items = data.get("items", [])
    table = Table(caption=f"{len(items)} of {data.get('total', len(items))}; * in the library")
    for column in ("", "ref", "artist", "title", "version", "genre", "bpm", "date"):
        table.add_column(column, overflow="fold")
    for track in items:
        table.add_row(
            "*" if track.get("in_library") else "",
            track.get("ref") or "-",
            _text(track.get("artist")),
            _text(track.get("title")),
            _text(track.get("version")),
            _text(track.get("genre")),
            _text(track.get("bpm")),
            _text(track.get("date")),
        )
    return table


def sync_table(results: dict[str, dict[str, Any]]) -> RenderableType:
    """`poolctl sync`: one row per pool, its counts or its error."""
    table = Table()
    for column in ("pool", "added", "updated", "removed", "queue new", "error"):
        table.add_column(column)
    for pool, result in results.items():
        if "error" in result:
            error = result["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            table.add_row(pool, "", "", "", "", Text(str(message), style="red"))
        else:
            table.add_row(
                pool,
                *(_text(result.get(k)) for k in ("added", "updated", "removed", "queue_new")),
                "",
            )
    return table


def queue_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl queue POOL`."""
    items = data.get("items", [])
    if not items:
        return Text(f"{data.get('pool', 'the pool')}'s queue is empty")
    table = Table(title=f"{data.get('pool', '')} queue", title_justify="left")
    for column in ("id", "kind", "artist", "title", "queued"):
        table.add_column(column, overflow="fold")
    for item in items:
        track = item.get("track") or {}
        table.add_row(
            str(item.get("item_id") or item.get("id") or "-"),
            _text(item.get("kind")),
            _text(track.get("artist") or item.get("artist")),
            _text(track.get("title") or item.get("title")),
            _text(item.get("queued_at")),
        )
    return table


def _title(job: dict[str, Any]) -> str:
    artist, title = job.get("artist"), job.get("title")
    if artist and title:
        return f"{artist} - {title}"
    return title or artist or ""


def _progress_text(job: dict[str, Any]) -> str:
    done, total = job.get("bytes_done") or 0, job.get("bytes_total")
    if total:
        return f"{fmt_size(done)} / {fmt_size(total)} ({100 * done / total:.0f}%)"
    return fmt_size(done) if done else "-"


class WatchView:
    """`poolctl watch`: active jobs with progress bars, fed by `/v1/events`."""

    def __init__(self, jobs: list[dict[str, Any]], keep_finished: int = 5) -> None:
        self.jobs: dict[int, dict[str, Any]] = {
            job["id"]: job for job in jobs if job.get("state") not in FINISHED
        }
        self.finished: list[dict[str, Any]] = []
        self.keep_finished = keep_finished
        self.note = ""

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
                self.finished = [job, *self.finished][: self.keep_finished]
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
        return None

    def __rich__(self) -> RenderableType:
        table = Table(expand=True)
        table.add_column("job", width=6)
        table.add_column("state", width=11)
        table.add_column("artist - title", ratio=3, overflow="ellipsis", no_wrap=True)
        table.add_column("progress", ratio=2)
        table.add_column("size", width=22)
        table.add_column("rate", width=12)
        jobs = sorted(
            self.jobs.values(),
            key=lambda j: (j.get("state") not in ACTIVE, j.get("state") != "queued", j["id"]),
        )
        for job in jobs:
            total = job.get("bytes_total") or None
            table.add_row(
                str(job["id"]),
                _state(job.get("state", "?")),
                _title(job) or (job.get("ref") or ""),
                ProgressBar(total=total, completed=job.get("bytes_done") or 0),
                _progress_text(job),
                fmt_rate(job.get("rate_bps")),
            )
        if not jobs:
            table.add_row("", "", Text("no active jobs", style="dim"), "", "", "")
        return table
