"""How poolctl shows the socket API's answers: rich tables and progress bars."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
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
    "skipped": "dim",
    # library entries (docs/interface.md §8)
    "downloaded": "green",
    "adopted": "green",
    "deleted": "dim",
    "lost": "bold red",
}
ACTIVE = ("resolving", "downloading", "verifying")
FINISHED = ("done", "failed", "cancelled", "skipped")


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


@dataclass(frozen=True, slots=True)
class Col:
    """One column of a `FitTable`: its header and how it gives way when the width is short."""

    header: str
    #: 0: always shown. Otherwise the order in which columns are dropped as the width shrinks
    #: (1 goes first); an empty one goes as soon as any value would have to be cut.
    drop: int = 0
    #: 0: values are shown whole. Otherwise values are cut with "…" down to this many cells
    #: before any column is dropped (and below it only when nothing is left to drop).
    shrink_to: int = 0
    justify: JustifyMethod = "left"
    #: The width of a column of drawings (a progress bar), which have no text to measure.
    width: int = 0


#: What a rich Table with the default box and padding adds around its columns: each column has a
#: cell of padding either side and a rule after it, and the table one more rule at the left.
_PER_COLUMN, _EDGES = 3, 1
_BLANK = ("", "-")

Cell = str | Text | RenderableType


class FitTable:
    """A table that fits the width it is drawn at: one line per row, long values cut with "…",
    the least useful columns dropped first. Drawn wider than its values (`--wide`), it shows them
    whole."""

    def __init__(
        self,
        columns: Sequence[Col],
        rows: Iterable[Sequence[Cell]],
        *,
        title: str | None = None,
        caption: str | None = None,
    ) -> None:
        self.columns = list(columns)
        self.rows = [[_one_line(cell) for cell in row] for row in rows]
        self.title, self.caption = title, caption

    def natural_widths(self) -> list[int]:
        """Each column's width with every value whole (cells as rich counts them: CJK is 2)."""
        widths = []
        for i, col in enumerate(self.columns):
            cells = [_cell_width(row[i], col) for row in self.rows]
            widths.append(max([cell_len(col.header), *cells]))
        return widths

    def layout(self, max_width: int) -> list[tuple[int, int]]:
        """(column index, width) of the columns shown at `max_width`."""
        natural = self.natural_widths()
        cols = self.columns

        def need(i: int) -> int:
            return min(natural[i], cols[i].shrink_to) if cols[i].shrink_to else natural[i]

        def total(shown: Iterable[int], width: Callable[[int], int]) -> int:
            shown = list(shown)
            return sum(width(i) for i in shown) + _PER_COLUMN * len(shown) + _EDGES

        kept = list(range(len(cols)))
        if total(kept, natural.__getitem__) > max_width:
            # A column with nothing in it is never worth cutting a value for.
            kept = [i for i in kept if not (cols[i].drop and self._blank(i))]
        for i in sorted((i for i in kept if cols[i].drop), key=lambda i: cols[i].drop):
            if total(kept, need) <= max_width:
                break
            kept.remove(i)
        widths = {i: natural[i] for i in kept}
        excess = total(kept, widths.__getitem__) - max_width
        # Cut the column with the most to spare, one cell at a time: first down to each
        # column's minimum, then (nothing left to drop) further; rich squeezes the rest.
        for floor in (need, lambda i: 1):
            while excess > 0:
                spare = [i for i in kept if cols[i].shrink_to and widths[i] > floor(i)]
                if not spare:
                    break
                widest = max(spare, key=lambda i: widths[i] - floor(i))
                widths[widest] -= 1
                excess -= 1
        return [(i, widths[i]) for i in kept]

    def table(self, max_width: int) -> Table:
        """The rich Table for `max_width`."""
        table = Table(title=self.title, title_justify="left", caption=self.caption)
        shown = self.layout(max_width)
        for i, width in shown:
            col = self.columns[i]
            table.add_column(
                col.header, justify=col.justify, width=width, no_wrap=True, overflow="ellipsis"
            )
        for row in self.rows:
            table.add_row(*(row[i] for i, _ in shown))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        natural = self.natural_widths()
        whole = sum(natural) + _PER_COLUMN * len(natural) + _EDGES
        return Measurement(min(whole, options.max_width), whole)

    def _blank(self, i: int) -> bool:
        return all(_plain(row[i]) in _BLANK for row in self.rows)


def _one_line(cell: Cell) -> Cell:
    """A value with line breaks and tabs as spaces: a row is one line."""
    if isinstance(cell, str):
        return " ".join(cell.split()) if any(c in cell for c in "\n\r\t\v\f") else cell
    if isinstance(cell, Text) and any(c in cell.plain for c in "\n\r\t\v\f"):
        return Text(" ".join(cell.plain.split()), style=cell.style)
    return cell


def _plain(cell: Cell) -> str | None:
    if isinstance(cell, str):
        return cell
    return cell.plain if isinstance(cell, Text) else None


def _cell_width(cell: Cell, col: Col) -> int:
    plain = _plain(cell)
    return col.width if plain is None else cell_len(plain)


def wide_width(renderable: RenderableType, console: Console) -> int:
    """The width at which `renderable` shows every value whole (`poolctl --wide`)."""
    options = console.options.update_width(1 << 16)
    return max(console.width, Measurement.get(console, options, renderable).maximum)


def status_view(data: dict[str, Any]) -> RenderableType:
    """`poolctl status`."""
    head = Text()
    head.append(f"pooldaemon {data.get('version', '?')}", style="bold")
    head.append(f"  up {fmt_duration(data.get('uptime_s'))}")
    head.append(f"  {fmt_rate(data.get('rate_bps')) if data.get('rate_bps') else '0 B/s'}")
    if data.get("paused"):
        head.append("  downloads paused", style="yellow")
    throttle = throttle_line(data)
    rows: list[list[Cell]] = []
    for pool in data.get("pools", []):
        error = pool.get("blocked_reason") or pool.get("last_error")
        name = Text(pool["name"]) if pool.get("enabled", True) else Text(pool["name"], "dim")
        notice = pool.get("notice")
        rows.append(
            [
                name,
                pool.get("type", "?"),
                fmt_ago(pool.get("last_catalog_sync")),
                fmt_ago(pool.get("last_queue_sync")),
                Text(error, style="red")
                if error
                else Text(notice, style="yellow")
                if notice
                else Text("-"),
            ]
        )
    if not rows:
        rows.append(["(none configured)", "", "", "", ""])
    # Narrow: the type goes first (`poolctl pools` has it), then the queue's and the catalog's
    # last sync; the pool and its last error stay.
    columns = (
        Col("pool"),
        Col("type", drop=1),
        Col("catalog sync", drop=3),
        Col("queue sync", drop=2),
        Col("last error", shrink_to=16),
    )
    pools = FitTable(columns, rows, title="pools")
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
    parts: list[RenderableType] = [head, *([throttle] if throttle else []), pools, jobs]
    if data.get("library"):
        parts.append(library_summary(data["library"]))
    return Group(*parts)


def library_summary(data: dict[str, Any]) -> Text:
    """The library's line in `poolctl status` and under `poolctl library`: entries by state,
    the last audit."""
    line = Text("library: ")
    states = [(state, n) for state, n in (data.get("states") or {}).items() if n]
    if not states:
        line.append("empty")
    for i, (state, n) in enumerate(states):
        if i:
            line.append(", ")
        line.append(f"{n} ", style="bold")
        line.append(state, style=_STATE_STYLES.get(state, ""))
    audit = data.get("last_audit")
    if audit:
        kind = "full audit" if audit.get("full") else "audit"
        line.append(
            f"; last {kind} {fmt_ago(audit.get('finished'))}: {audit['checked']} checked, "
            f"{audit['ok']} ok, {audit['deleted']} deleted, {audit['lost']} lost"
        )
    return line


#: `poolctl library`, narrow: the checked time goes first, then the size and the version; the
#: state and the path stay (the path is cut in the middle of nothing: from its end).
_LIBRARY_COLUMNS = (
    Col("state"),
    Col("ref", drop=4),
    Col("song", drop=5, shrink_to=16),
    Col("version", drop=3, shrink_to=8),
    Col("size", drop=2, justify="right"),
    Col("checked", drop=1),
    Col("path", shrink_to=24),
)


def library_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl library`."""
    items = data.get("items", [])
    if not items:
        return Text("no library entries")
    rows: list[list[Cell]] = [
        [
            _state(item.get("state", "?")),
            item.get("ref") or "-",
            item.get("song") or "-",
            item.get("version") or "-",
            fmt_size(item.get("size_bytes")),
            fmt_ago(item.get("checked")),
            item.get("path") or "-",
        ]
        for item in items
    ]
    return FitTable(_LIBRARY_COLUMNS, rows)


def adopt_view(data: dict[str, Any]) -> RenderableType:
    """`poolctl library adopt`: the counts, then (dry run) each match, then each problem."""
    lines: list[RenderableType] = [
        Text(
            f"{data['scanned']} scanned: {data['matched']} matched, {data['unmatched']} "
            f"unmatched, {data['ambiguous']} ambiguous, {len(data['problems'])} problems"
        )
    ]
    for item in data.get("items", []):
        if item["state"] == "matched":
            lines.append(Text(f"match  {item['path']} → {item['ref']}", style="green"))
        else:
            candidates = ", ".join(item.get("candidates", []))
            lines.append(Text(f"ambiguous  {item['path']}: {candidates}", style="yellow"))
    for problem in data.get("problems", []):
        lines.append(Text(f"problem  {problem['path']}: {problem['reason']}", style="red"))
    return Group(*lines)


def dupes_view(data: dict[str, Any]) -> RenderableType:
    """`poolctl dupes`: each song+version held by more than one file."""
    groups = data.get("items", [])
    if not groups:
        return Text("no duplicates")
    lines: list[RenderableType] = []
    for group in groups:
        label = f"{group['song']}  {group['version']}".rstrip()
        lines.append(Text(label, style="bold"))
        for item in group["items"]:
            lines.append(Text(f"  {item['state']:<10} {item.get('ref') or '-':<20} {item['path']}"))
    return Group(*lines)


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


def pools_table(items: list[dict[str, Any]]) -> RenderableType:
    """`poolctl pools`."""
    if not items:
        return Text("no pools configured")
    # Narrow: auto download goes first, then the schedules, then enabled and the type.
    columns = (
        Col("pool"),
        Col("type", drop=5),
        Col("enabled", drop=4),
        Col("auto download", drop=1),
        Col("catalog every", drop=3),
        Col("queue every", drop=2),
    )
    rows = [
        [
            pool["name"],
            pool.get("type", "?"),
            "yes" if pool.get("enabled") else "no",
            "yes" if pool.get("auto_download") else "no",
            fmt_duration(pool.get("catalog_interval_s")),
            fmt_duration(pool.get("queue_interval_s")),
        ]
        for pool in items
    ]
    return FitTable(columns, rows)


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
            _state(job.get("state", "?")),
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


#: `poolctl search`, narrow: the date goes first, then the year, the mix (CrateQ's titles repeat
#: it in brackets), the genre, the bpm. The ref (what `poolctl get` takes) is never cut; artist
#: and title are cut, never dropped.
_SEARCH_COLUMNS = (
    Col("ref"),
    Col("artist", shrink_to=14),
    Col("title", shrink_to=28),
    Col("mix", drop=3, shrink_to=8),
    Col("genre", drop=4, shrink_to=8),
    Col("bpm", drop=5, justify="right"),
    Col("year", drop=2),
    Col("date", drop=1),
)


def search_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl search`."""
    items = data.get("items", [])
    rows = [
        [
            track.get("ref") or "-",
            _text(track.get("artist")),
            _text(track.get("title")),
            _text(track.get("mix")),
            _text(track.get("genre")),
            _text(track.get("bpm")),
            _text(track.get("year")),
            _text(track.get("date")),
        ]
        for track in items
    ]
    caption = f"{len(items)} of {data.get('total', len(items))}"
    return FitTable(_SEARCH_COLUMNS, rows, caption=caption)


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
    rows: list[list[Cell]] = []
    for pool, result in results.items():
        if "error" in result:
            error = result["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            rows.append([pool, "", "", "", "", Text(str(message), style="red")])
        else:
            counts = (_text(result.get(k)) for k in ("added", "updated", "removed", "queue_new"))
            rows.append([pool, *counts, ""])
    # Narrow: an empty error column goes first, then updated, removed, queue new, added.
    columns = (
        Col("pool"),
        Col("added", drop=4, justify="right"),
        Col("updated", drop=1, justify="right"),
        Col("removed", drop=2, justify="right"),
        Col("queue new", drop=3, justify="right"),
        Col("error", drop=5, shrink_to=16),
    )
    return FitTable(columns, rows)


def queue_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl queue POOL`."""
    items = data.get("items", [])
    if not items:
        return Text(f"{data.get('pool', 'the pool')}'s queue is empty")
    rows = []
    for item in items:
        track = item.get("track") or {}
        rows.append(
            [
                str(item.get("item_id") or item.get("id") or "-"),
                _text(item.get("kind")),
                _text(track.get("artist") or item.get("artist")),
                _text(track.get("title") or item.get("title")),
                _text(item.get("queued_at")),
            ]
        )
    # Narrow: when it was queued goes first, then the kind; the id (what `queue POOL remove`
    # takes) stays whole, artist and title are cut.
    columns = (
        Col("id"),
        Col("kind", drop=2),
        Col("artist", shrink_to=12),
        Col("title", shrink_to=20),
        Col("queued", drop=1),
    )
    return FitTable(columns, rows, title=f"{data.get('pool', '')} queue")


def export_view(data: dict[str, Any]) -> RenderableType:
    """`poolctl export`: one line per file written."""
    written = data.get("written", [])
    if not written:
        return Text(
            "no export is switched on: set m3u8_dir, rekordbox_xml, traktor_nml or serato_dir "
            "in [exports] of the config"
        )
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("format", style="bold")
    table.add_column("path", overflow="fold")
    for item in written:
        path = str(item.get("path", ""))
        # docs/interface.md §9: ours lands beside a file the user edited, as "NAME (pooldaemon)".
        note = " (yours was edited: ours is beside it)" if " (pooldaemon)." in path else ""
        table.add_row(_text(item.get("format")), path + note)
    return table


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
                    _state(job.get("state", "?")),
                    _title(job) or (job.get("ref") or ""),
                    ProgressBar(total=total, completed=done),
                    _progress_text({**job, "bytes_done": done}),
                    fmt_rate(job.get("rate_bps")) if job.get("state") in ACTIVE else "",
                ]
            )
        if not rows:
            rows.append(["", "", Text("no active jobs", style="dim"), "", "", ""])
        return FitTable(_WATCH_COLUMNS, rows)
