"""`poolctl`: the control client (CONTRACT §1).

Exit codes: 0 done; 1 the daemon refused or the operation failed (reason on stderr); 2 usage
error (click); 3 the daemon is not reachable (the message says how to start it).

Shell completion comes with click: `eval "$(_POOLCTL_COMPLETE=bash_source poolctl)"` (or
`zsh_source`, `fish_source`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import click
import platformdirs
from rich.console import Console, Group, RenderableType
from rich.text import Text

from pooldaemon import __version__
from pooldaemon.cli import render
from pooldaemon.control.client import ControlClient, DaemonRefused, DaemonUnreachable
from pooldaemon.models import MAX_PAGE

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
T = TypeVar("T")

# CONTRACT §1: `--bpm`/`--year` take N, N,M,… or N-M as in the CrateQ API.
_NUMBERS = re.compile(r"^\d+(-\d+|(,\d+)*)$")


@dataclass
class Ctl:
    """What every command gets: where the socket is and how to print."""

    socket_option: Path | None
    config_option: Path | None
    as_json: bool
    wide: bool = False
    _socket: Path | None = None

    @property
    def socket_path(self) -> Path:
        if self._socket is None:
            self._socket = resolve_socket(self.socket_option, self.config_option)
        return self._socket

    def client(self) -> ControlClient:
        return ControlClient(self.socket_path)

    def show(self, data: Any, view: Callable[[Any], RenderableType]) -> None:
        """The socket's answer as one JSON document, or `view` of it as a table."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            shown, console = view(data), Console(soft_wrap=False)
            if self.wide:  # every value whole, one line per row, however long the line
                console = Console(soft_wrap=False, width=render.wide_width(shown, console))
            console.print(shown)


def resolve_socket(socket_option: Path | None, config_option: Path | None) -> Path:
    """--socket, else the config's socket_path (a broken config: the default, with a warning)."""
    if socket_option is not None:
        return socket_option
    from pooldaemon.config import ConfigError, load_config  # pydantic only when needed

    try:
        return load_config(config_option).daemon.socket_path
    except ConfigError as err:
        first = err.problems[0] if err.problems else str(err)
        fallback = default_socket_path()
        click.echo(
            f"poolctl: warning: cannot use the config ({first}); trying {fallback}", err=True
        )
        return fallback


def default_socket_path() -> Path:
    """CONTRACT §2 default: $XDG_RUNTIME_DIR/pooldaemon/control.sock, else <state_dir>/…."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime:
        return Path(runtime) / "pooldaemon" / "control.sock"
    return Path(platformdirs.user_data_dir("pooldaemon", appauthor=False)) / "control.sock"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"poolctl: {message}", err=True)
    sys.exit(code)


def call(ctl: Ctl, work: Callable[[ControlClient], Awaitable[T]], *, interrupted: int = 130) -> T:
    """Run `work` against the daemon, turning its failures into CONTRACT §1 exit codes."""

    async def go() -> T:
        async with ctl.client() as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except DaemonUnreachable as err:
        _fail(err.message, EXIT_UNREACHABLE)
    except DaemonRefused as err:
        _fail(err.message, EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(interrupted)


pass_ctl = click.make_pass_decorator(Ctl)


def _wide(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(Ctl).wide = True  # type: ignore[union-attr]  # the group made it


#: `poolctl search --wide` as well as `poolctl --wide search`.
wide_option = click.option(
    "--wide",
    is_flag=True,
    expose_value=False,
    callback=_wide,
    help="Show every value whole (tables fit the terminal otherwise).",
)


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


def _paging(command: Callable[..., None]) -> Callable[..., None]:
    """`--limit`, `--offset` and `--all`: the socket's paging, with one maximum for both."""
    for option in reversed(
        [
            click.option(
                "--limit",
                type=click.IntRange(1, MAX_PAGE),
                default=50,
                show_default=True,
                help=f"At most this many (1-{MAX_PAGE}; --all for every one).",
            ),
            click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many."),
            click.option("--all", "all_pages", is_flag=True, help="Every page, not just one."),
        ]
    ):
        command = option(command)
    return command


def _page(
    ctl: Ctl, path: str, query: dict[str, str], limit: int, offset: int, all_pages: bool
) -> dict[str, Any]:
    """One page of a paged answer, or (`--all`) every page from `offset` on, as one answer."""
    if not all_pages:
        page = {"limit": str(limit), **({"offset": str(offset)} if offset else {})}
        return dict(call(ctl, lambda c: c.get(path, {**query, **page})))

    async def every_page(client: ControlClient) -> dict[str, Any]:
        items: list[Any] = []
        seen: set[str] = set()
        at, total = offset, 0
        while True:
            answer = await client.get(path, {**query, "limit": str(MAX_PAGE), "offset": str(at)})
            total = int(answer["total"])
            for item in answer["items"]:
                # Newest-first lists shift while they are read: one copy of each item.
                key = json.dumps(
                    [item.get("id"), item.get("ref"), item.get("pool"), item.get("path")]
                )
                if key not in seen:
                    seen.add(key)
                    items.append(item)
            at += len(answer["items"])
            if not answer["items"] or at >= total:
                return {"total": total, "items": items}

    return call(ctl, every_page)


def _more_hint(ctl: Ctl, data: dict[str, Any], offset: int, what: str) -> None:
    """Say on stderr when a table shows only part of the answer (never in --json output)."""
    total, shown = data.get("total"), len(data.get("items", []))
    if ctl.as_json or not isinstance(total, int) or offset + shown >= total:
        return
    click.echo(
        f"poolctl: {shown} of {total} {what} shown (from {offset + 1}); "
        "--all for every one, --offset for the next page",
        err=True,
    )


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
@_paging
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
    data = _page(ctl, "/v1/catalog", query, limit, offset, all_pages)
    ctl.show(data, render.search_table)
    _more_hint(ctl, data, offset, "tracks")


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
@_paging
@wide_option
@pass_ctl
def jobs(
    ctl: Ctl, state: str | None, pool: str | None, limit: int, offset: int, all_pages: bool
) -> None:
    """List download jobs, newest first."""
    query = {k: v for k, v in (("state", state), ("pool", pool)) if v}
    data = _page(ctl, "/v1/jobs", query, limit, offset, all_pages)
    ctl.show(data, lambda d: render.jobs_table(d["items"]))
    _more_hint(ctl, data, offset, "jobs")


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


@main.group(invoke_without_command=True)
@click.pass_context
def rules(click_ctx: click.Context) -> None:
    """List the rules with what they matched, queued, skipped and hold for tomorrow."""
    if click_ctx.invoked_subcommand is None:
        ctl = click_ctx.find_object(Ctl)
        assert ctl is not None
        ctl.show(call(ctl, lambda c: c.get("/v1/rules")), render.rules_table)


@rules.command("test")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@pass_ctl
def rules_test(ctl: Ctl, name: str, limit: int, offset: int) -> None:
    """The mirror's tracks the rule matches (what --backfill would take); downloads nothing."""
    query = {"limit": str(limit), "offset": str(offset)}
    path = f"/v1/rules/{quote(name, safe='')}/preview"
    ctl.show(call(ctl, lambda c: c.get(path, query)), render.rule_test_table)


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise click.BadParameter(f"{value!r}: use YYYY-MM-DD (e.g. 2026-01-01)")
    return None if value is None else value.strip()


@rules.command("run")
@click.argument("name")
@click.option("--backfill", is_flag=True, help="Take matching tracks already in the mirror.")
@click.option("--since", callback=_date, help="Only tracks dated DATE (YYYY-MM-DD) or later.")
@pass_ctl
def rules_run(ctl: Ctl, name: str, backfill: bool, since: str | None) -> None:
    """Run a rule over the back catalog now (new tracks are matched after every sync)."""
    if not backfill:
        raise click.UsageError("rules run needs --backfill (new tracks are matched by every sync)")
    body: dict[str, Any] = {"backfill": True}
    if since is not None:
        body["since"] = since
    path = f"/v1/rules/{quote(name, safe='')}/run"
    ctl.show(
        call(ctl, lambda c: c.post(path, body)),
        lambda d: (
            f"{d['queued']} queued, {d['skipped']} skipped "
            "(over max_per_day: waiting, see poolctl rules)"
        ),
    )


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


if __name__ == "__main__":
    main()


# -- the library (docs/interface.md §8) -----------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--state", type=click.Choice(["downloaded", "adopted", "deleted", "lost", "failed"]))
@click.option("--pool", help="Only this pool's entries.")
@click.option("--q", "text", help="Only entries whose path or song contains this text.")
@_paging
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
    data = _page(ctl, "/v1/library", query, limit, offset, all_pages)
    ctl.show(data, render.library_table)
    _more_hint(ctl, data, offset, "entries")
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


@main.command()
@wide_option
@pass_ctl
def dupes(ctl: Ctl) -> None:
    """List library files that hold the same song and version."""
    data = call(ctl, lambda c: c.get("/v1/library/duplicates"))
    ctl.show(data, render.dupes_view)
