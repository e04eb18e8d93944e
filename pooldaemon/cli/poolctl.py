"""`poolctl`: the control client (docs/interface.md §1).

Exit codes: 0 done; 1 the daemon refused or the operation failed (reason on stderr); 2 usage
error (click); 3 the daemon is not reachable (the message says how to start it).

Shell completion comes with click: `eval "$(_POOLCTL_COMPLETE=bash_source poolctl)"` (or
`zsh_source`, `fish_source`).

Here: the `poolctl` group and the commands about pools, the catalog and jobs; `poolctl rules` is
in poolctl_rules.py, `poolctl library` and `dupes` in poolctl_library.py; what every command
shares (the socket, exit codes, paging) in ctl.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from pooldaemon import __version__
from pooldaemon.cli import render
from pooldaemon.cli.ctl import (
    EXIT_FAILED,
    EXIT_OK,
    Ctl,
    call,
    more_hint,
    page,
    paging,
    pass_ctl,
    wide_option,
)
from pooldaemon.cli.poolctl_library import dupes, library
from pooldaemon.cli.poolctl_rules import rules
from pooldaemon.control.client import ControlClient, DaemonRefused, DaemonUnreachable

# docs/interface.md §1: `--bpm`/`--year` take N, N,M,… or N-M as in the CrateQ API.
_NUMBERS = re.compile(r"^\d+(-\d+|(,\d+)*)$")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Control socket (default: the config's daemon.socket_path).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file, read only to find the socket.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@click.option(
    "--wide", is_flag=True, help="Tables show every value whole instead of fitting the terminal."
)
@click.version_option(__version__, prog_name="poolctl")
@click.pass_context
def main(
    ctx: click.Context,
    socket_path: Path | None,
    config_path: Path | None,
    as_json: bool,
    wide: bool,
) -> None:
    """Control a running pooldaemon."""
    ctx.obj = Ctl(socket_path, config_path, as_json, wide)


@main.command()
@wide_option
@pass_ctl
def status(ctl: Ctl) -> None:
    """Version, uptime, pools with their last syncs and errors, job counts, bytes/s."""
    ctl.show(call(ctl, lambda c: c.get("/v1/status")), render.status_view)


@main.command()
@wide_option
@pass_ctl
def pools(ctl: Ctl) -> None:
    """Configured pools: type, enabled, schedules."""
    ctl.show(call(ctl, lambda c: c.get("/v1/pools")), render.pools_table)


@main.command()
@click.argument("pool_names", metavar="[POOL]...", nargs=-1)
@click.option("--full", is_flag=True, help="Read the whole catalog, not only what changed.")
@wide_option
@pass_ctl
def sync(ctl: Ctl, pool_names: tuple[str, ...], full: bool) -> None:
    """Sync catalogs and queues now (all enabled pools when none named) and wait."""

    async def work(client: ControlClient) -> dict[str, dict[str, Any]]:
        names = list(pool_names)
        if not names:
            names = [p["name"] for p in await client.get("/v1/pools") if p.get("enabled")]
        results: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                results[name] = await client.post(f"/v1/pools/{name}/sync", {"full": full})
            except DaemonRefused as err:
                results[name] = {"error": {"code": err.code, "message": err.message}}
        return results

    results = call(ctl, work)
    if not results:
        if ctl.as_json:
            click.echo("{}")
        click.echo("poolctl: no enabled pools to sync", err=True)
        return
    ctl.show(results, render.sync_table)
    failed = {name: r["error"] for name, r in results.items() if "error" in r}
    for name, error in failed.items():
        click.echo(f"poolctl: sync {name}: {error['message']}", err=True)
    if failed:
        sys.exit(EXIT_FAILED)


def _numbers(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _NUMBERS.match(value.replace(" ", "")):
        raise click.BadParameter(f"{value!r}: use N, N,M,… or N-M (e.g. 120-128)")
    return None if value is None else value.replace(" ", "")


@main.command()
@click.argument("words", nargs=-1)
@click.option("--pool", help="Only this pool.")
@click.option("--genre", help="Whole genre name(s), comma-separated.")
@click.option("--bpm", callback=_numbers, help="N, N,M,… or N-M.")
@click.option("--year", callback=_numbers, help="N, N,M,… or N-M.")
@click.option("--mix", help="Whole mix name(s), comma-separated.")
@click.option("--advisory", type=click.Choice(["clean", "dirty"], case_sensitive=False))
@click.option("--video", "media", flag_value="video", help="Only tracks with video.")
@click.option("--audio", "media", flag_value="audio", help="Only tracks with audio.")
@click.option("--removed", is_flag=True, help="Include tracks the pool no longer lists.")
@paging
@wide_option
@pass_ctl
def search(
    ctl: Ctl,
    words: tuple[str, ...],
    pool: str | None,
    genre: str | None,
    bpm: str | None,
    year: str | None,
    mix: str | None,
    advisory: str | None,
    media: str | None,
    removed: bool,
    limit: int,
    offset: int,
    all_pages: bool,
) -> None:
    """Offline search of the local catalog mirror across pools."""
    params = {
        "q": " ".join(words) or None,
        "pool": pool,
        "genre": genre,
        "bpm": bpm,
        "year": year,
        "mix": mix,
        "advisory": advisory.lower() if advisory else None,
        "media": media,
        "removed": "1" if removed else None,
    }
    query = {k: v for k, v in params.items() if v is not None}
    data = page(ctl, "/v1/catalog", query, limit, offset, all_pages)
    ctl.show(data, render.search_table)
    more_hint(ctl, data, offset, "tracks")


def _submitted(ctl: Ctl, data: dict[str, Any]) -> None:
    ctl.show(data, render.submit_view)
    for item in data.get("rejected", []):
        click.echo(f"poolctl: {item['ref']}: {item['reason']}", err=True)
    if data.get("rejected"):
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@pass_ctl
def get(ctl: Ctl, refs: tuple[str, ...]) -> None:
    """Request downloads (REF as in a drop-folder line: crateq:570291, harvest:album:ID)."""
    _submitted(ctl, call(ctl, lambda c: c.post("/v1/jobs", {"refs": list(refs)})))


@main.command()
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the pool should allow it again.")
@pass_ctl
def redownload(ctl: Ctl, refs: tuple[str, ...], reason: str) -> None:
    """Ask the pool to allow downloading again, then download."""
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="--reason")
    body = {"refs": list(refs), "reason": reason}
    _submitted(ctl, call(ctl, lambda c: c.post("/v1/redownload", body)))


@main.command()
@click.option(
    "--state",
    type=click.Choice(
        [
            "queued",
            "resolving",
            "downloading",
            "verifying",
            "done",
            "failed",
            "cancelled",
            "paused",
            "skipped",
        ]
    ),
)
@click.option("--pool", help="Only this pool's jobs.")
@paging
@wide_option
@pass_ctl
def jobs(
    ctl: Ctl, state: str | None, pool: str | None, limit: int, offset: int, all_pages: bool
) -> None:
    """List download jobs, newest first."""
    query = {k: v for k, v in (("state", state), ("pool", pool)) if v}
    data = page(ctl, "/v1/jobs", query, limit, offset, all_pages)
    ctl.show(data, lambda d: render.jobs_table(d["items"]))
    more_hint(ctl, data, offset, "jobs")


def _job_actions(ctl: Ctl, action: str, job_ids: tuple[int, ...]) -> None:
    """POST each job's action; print each answer; exit 1 if any was refused."""

    async def work(client: ControlClient) -> list[tuple[int, Any]]:
        answers: list[tuple[int, Any]] = []
        for job_id in job_ids:
            try:
                answers.append((job_id, await client.post(f"/v1/jobs/{job_id}/{action}")))
            except DaemonRefused as err:
                answers.append((job_id, err))
        return answers

    answers = call(ctl, work)
    done = [answer for _, answer in answers if not isinstance(answer, DaemonRefused)]
    if ctl.as_json:
        click.echo(json.dumps(done[0] if len(job_ids) == 1 and done else done, indent=2))
    else:
        console = Console()
        for job in done:
            console.print(render.job_line(job))
    refused = [(job_id, a) for job_id, a in answers if isinstance(a, DaemonRefused)]
    for job_id, err in refused:
        click.echo(f"poolctl: {action} job {job_id}: {err.message}", err=True)
    if refused:
        sys.exit(EXIT_FAILED)


_JOB_IDS = click.argument("job_ids", metavar="JOB...", nargs=-1, type=click.IntRange(1))


@main.command()
@click.argument("job_ids", metavar="JOB...", nargs=-1, type=click.IntRange(1), required=True)
@pass_ctl
def retry(ctl: Ctl, job_ids: tuple[int, ...]) -> None:
    """Retry failed or cancelled jobs."""
    _job_actions(ctl, "retry", job_ids)


@main.command()
@click.argument("job_ids", metavar="JOB...", nargs=-1, type=click.IntRange(1), required=True)
@pass_ctl
def cancel(ctl: Ctl, job_ids: tuple[int, ...]) -> None:
    """Cancel jobs."""
    _job_actions(ctl, "cancel", job_ids)


@main.command()
@_JOB_IDS
@pass_ctl
def pause(ctl: Ctl, job_ids: tuple[int, ...]) -> None:
    """Pause jobs, or the whole downloader when no JOB is given."""
    if job_ids:
        _job_actions(ctl, "pause", job_ids)
        return
    data = call(ctl, lambda c: c.post("/v1/pause"))
    ctl.show(data, lambda d: "downloads paused")


@main.command()
@_JOB_IDS
@pass_ctl
def resume(ctl: Ctl, job_ids: tuple[int, ...]) -> None:
    """Resume jobs, or the whole downloader when no JOB is given."""
    if job_ids:
        _job_actions(ctl, "resume", job_ids)
        return
    data = call(ctl, lambda c: c.post("/v1/resume"))
    ctl.show(data, lambda d: "downloads resumed")


@main.command()
@click.argument("pool")
@click.argument("action", required=False, type=click.Choice(["add", "remove"]))
@click.argument("item_id", metavar="[ID]", required=False)
@wide_option
@pass_ctl
def queue(ctl: Ctl, pool: str, action: str | None, item_id: str | None) -> None:
    """View the pool's remote download queue, or add/remove one item."""
    if action is None:
        if item_id is not None:  # pragma: no cover - click binds a lone word to ACTION
            raise click.UsageError("give add or remove before the ID")
        ctl.show(call(ctl, lambda c: c.get(f"/v1/pools/{pool}/queue")), render.queue_table)
        return
    if item_id is None:
        raise click.UsageError(f"queue {pool} {action} needs an ID")
    body = {action: item_id}
    ctl.show(call(ctl, lambda c: c.post(f"/v1/pools/{pool}/queue", body)), render.queue_table)


@main.command()
@pass_ctl
def export(ctl: Ctl) -> None:
    """Write the playlists and collections of [exports] now; lists the files once on disk."""
    ctl.show(call(ctl, lambda c: c.post("/v1/export")), render.export_view)


@main.command()
@pass_ctl
def ui(ctl: Ctl) -> None:
    """Open the dashboard in the browser ($BROWSER when set) through a one-time login link."""
    data = call(ctl, lambda c: c.post("/v1/ui/login-link"))
    if ctl.as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    import webbrowser  # reads $BROWSER itself

    url = str(data["url"])
    # The link opens a session once, within a minute: print it only when no browser took it.
    if not webbrowser.open(url):
        click.echo(f"Open this link in your browser within a minute (it works once):\n{url}")
        return
    click.echo("Opened the dashboard in your browser.")


@main.command()
@pass_ctl
def watch(ctl: Ctl) -> None:
    """Live progress of active jobs until Ctrl-C (with --json: the events, one per line)."""

    async def work(client: ControlClient) -> None:
        if ctl.as_json:
            async for event in client.stream("/v1/events"):
                click.echo(json.dumps(event, ensure_ascii=False))
                if event.get("type") == "shutdown":
                    raise DaemonUnreachable(ctl.socket_path, "pooldaemon is stopping")
            return
        from rich.live import Live

        console = Console()
        jobs = (await client.get("/v1/jobs"))["items"]
        view = render.WatchView(jobs)
        with Live(view, console=console, refresh_per_second=4, transient=False) as live:
            async for event in client.stream("/v1/events"):
                if event.get("type") == "shutdown":
                    raise DaemonUnreachable(ctl.socket_path, "pooldaemon is stopping")
                line = view.apply(event)
                if line:
                    live.console.print(line)

    call(ctl, work, interrupted=EXIT_OK)  # Ctrl-C is how watch is meant to end


main.add_command(rules)
main.add_command(library)
main.add_command(dupes)


if __name__ == "__main__":
    main()
