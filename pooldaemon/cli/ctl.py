"""What every poolctl command shares: finding the socket, calling the daemon with docs/interface.md
§1's exit codes, printing as JSON or a table, and the paging options."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import platformdirs
from rich.console import Console, RenderableType

from pooldaemon.cli import render
from pooldaemon.control.client import ControlClient, DaemonRefused, DaemonUnreachable
from pooldaemon.models import MAX_PAGE

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
T = TypeVar("T")


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
    """docs/interface.md §2 default: $XDG_RUNTIME_DIR/pooldaemon/control.sock, else
    <state_dir>/…."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime:
        return Path(runtime) / "pooldaemon" / "control.sock"
    return Path(platformdirs.user_data_dir("pooldaemon", appauthor=False)) / "control.sock"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"poolctl: {message}", err=True)
    sys.exit(code)


def call(ctl: Ctl, work: Callable[[ControlClient], Awaitable[T]], *, interrupted: int = 130) -> T:
    """Run `work` against the daemon, turning its failures into docs/interface.md §1 exit codes."""

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


def paging(command: Callable[..., None]) -> Callable[..., None]:
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


def page(
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


def more_hint(ctl: Ctl, data: dict[str, Any], offset: int, what: str) -> None:
    """Say on stderr when a table shows only part of the answer (never in --json output)."""
    total, shown = data.get("total"), len(data.get("items", []))
    if ctl.as_json or not isinstance(total, int) or offset + shown >= total:
        return
    click.echo(
        f"poolctl: {shown} of {total} {what} shown (from {offset + 1}); "
        "--all for every one, --offset for the next page",
        err=True,
    )
