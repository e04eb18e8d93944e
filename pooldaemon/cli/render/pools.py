"""Pools and the catalog as poolctl shows them: status, pools, sync, remote queues, search."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from pooldaemon.cli.render.jobs import throttle_line
from pooldaemon.cli.render.library import library_summary
from pooldaemon.cli.render.table import (
    Cell,
    Col,
    FitTable,
    fmt_ago,
    fmt_duration,
    fmt_rate,
    state_counts,
    text_or_dash,
)


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
    jobs = state_counts("jobs: ", data.get("jobs"), "none")
    parts: list[RenderableType] = [head, *([throttle] if throttle else []), pools, jobs]
    if data.get("library"):
        parts.append(library_summary(data["library"]))
    return Group(*parts)


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
            text_or_dash(track.get("artist")),
            text_or_dash(track.get("title")),
            text_or_dash(track.get("mix")),
            text_or_dash(track.get("genre")),
            text_or_dash(track.get("bpm")),
            text_or_dash(track.get("year")),
            text_or_dash(track.get("date")),
        ]
        for track in items
    ]
    caption = f"{len(items)} of {data.get('total', len(items))}"
    return FitTable(_SEARCH_COLUMNS, rows, caption=caption)


def sync_table(results: dict[str, dict[str, Any]]) -> RenderableType:
    """`poolctl sync`: one row per pool, its counts or its error."""
    rows: list[list[Cell]] = []
    for pool, result in results.items():
        if "error" in result:
            error = result["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            rows.append([pool, "", "", "", "", Text(str(message), style="red")])
        else:
            counts = (
                text_or_dash(result.get(k)) for k in ("added", "updated", "removed", "queue_new")
            )
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
                text_or_dash(item.get("kind")),
                text_or_dash(track.get("artist") or item.get("artist")),
                text_or_dash(track.get("title") or item.get("title")),
                text_or_dash(item.get("queued_at")),
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
