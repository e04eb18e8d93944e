"""`poolctl rules`: list the rules, test one against the mirror, run one over the back catalog."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import click

from pooldaemon.cli import render
from pooldaemon.cli.ctl import (
    Ctl,
    call,
    pass_ctl,
)


@click.group(invoke_without_command=True)
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
