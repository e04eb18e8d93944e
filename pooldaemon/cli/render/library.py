"""The files the daemon keeps as poolctl shows them: the library, adopt, duplicates, rules and
what an export wrote."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pooldaemon.cli.render.table import (
    Cell,
    Col,
    FitTable,
    fmt_ago,
    fmt_size,
    state_counts,
    state_text,
    text_or_dash,
)


def library_summary(data: dict[str, Any]) -> Text:
    """The library's line in `poolctl status` and under `poolctl library`: entries by state,
    the last audit."""
    line = state_counts("library: ", data.get("states"), "empty")
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
            state_text(item.get("state", "?")),
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


def rules_table(data: dict[str, Any]) -> RenderableType:
    """`poolctl rules`: each rule's counts since it appeared."""
    table = Table()
    for column in ("rule", "enabled", "matched", "queued", "skipped", "waiting", "last match"):
        table.add_column(column)
    for rule in data.get("items", []):
        table.add_row(
            rule["name"],
            "yes" if rule.get("enabled") else "no",
            *(text_or_dash(rule.get(k)) for k in ("matched", "queued", "skipped", "waiting")),
            text_or_dash(rule.get("last_match")),
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
            text_or_dash(track.get("artist")),
            text_or_dash(track.get("title")),
            text_or_dash(track.get("version")),
            text_or_dash(track.get("genre")),
            text_or_dash(track.get("bpm")),
            text_or_dash(track.get("date")),
        )
    return table


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
        table.add_row(text_or_dash(item.get("format")), path + note)
    return table
