"""`poolctl library` (list, adopt, audit, heal) and `poolctl dupes` (docs/interface.md §8)."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.text import Text

from pooldaemon.cli import render
from pooldaemon.cli.ctl import (
    Ctl,
    call,
    more_hint,
    page,
    paging,
    pass_ctl,
    wide_option,
)


@click.group(invoke_without_command=True)
@click.option("--state", type=click.Choice(["downloaded", "adopted", "deleted", "lost", "failed"]))
@click.option("--pool", help="Only this pool's entries.")
@click.option("--q", "text", help="Only entries whose path or song contains this text.")
@paging
@wide_option
@click.pass_context
def library(
    ctx: click.Context,
    state: str | None,
    pool: str | None,
    text: str | None,
    limit: int,
    offset: int,
    all_pages: bool,
) -> None:
    """List the library (files downloaded or adopted, and what became of them)."""
    if ctx.invoked_subcommand is not None:
        return
    ctl = ctx.find_object(Ctl)
    assert ctl is not None
    query = {k: v for k, v in (("state", state), ("pool", pool), ("q", text)) if v}
    data = page(ctl, "/v1/library", query, limit, offset, all_pages)
    ctl.show(data, render.library_table)
    more_hint(ctl, data, offset, "entries")
    if not ctl.as_json:
        summary = call(ctl, lambda c: c.get("/v1/library/audit"))
        Console(soft_wrap=False).print(render.library_summary(summary))


@library.command("adopt")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show the matches; record nothing.")
@pass_ctl
def library_adopt(ctl: Ctl, paths: tuple[str, ...], dry_run: bool) -> None:
    """Adopt files you already have: match them to mirrored tracks (read-only)."""
    body = {"paths": [os.path.abspath(p) for p in paths], "dry_run": dry_run}
    data = call(ctl, lambda c: c.post("/v1/library/adopt", body))
    ctl.show(data, render.adopt_view)


@library.command("audit")
@click.option("--full", is_flag=True, help="Verify every audio checksum, not only changed files.")
@pass_ctl
def library_audit(ctl: Ctl, full: bool) -> None:
    """Check the library's files now."""
    data = call(ctl, lambda c: c.post("/v1/library/audit", {"full": full}))
    ctl.show(
        data,
        lambda d: Text(
            f"{d['checked']} checked: {d['ok']} ok, {d['deleted']} deleted, {d['lost']} lost"
        ),
    )


@library.command("heal")
@pass_ctl
def library_heal(ctl: Ctl) -> None:
    """Fetch lost files again and put them back where they were."""
    data = call(ctl, lambda c: c.post("/v1/library/heal"))

    def view(d: dict[str, Any]) -> RenderableType:
        lines = [Text(f"healing {len(d['requested'])} file(s)")]
        lines += [Text(f"  job {r['job']}: {r['path']}") for r in d["requested"]]
        lines += [Text(f"  not healed: {s['path']} ({s['reason']})", "dim") for s in d["skipped"]]
        return Group(*lines)

    ctl.show(data, view)


@click.command()
@wide_option
@pass_ctl
def dupes(ctl: Ctl) -> None:
    """List library files that hold the same song and version."""
    data = call(ctl, lambda c: c.get("/v1/library/duplicates"))
    ctl.show(data, render.dupes_view)
