"""`pooldaemon`: run the daemon, check the config, install the service (docs/interface.md §1)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from pathlib import Path

import click

from pooldaemon import __version__
from pooldaemon.config import Config, ConfigError, config_warnings, effective_dict, load_config
from pooldaemon.config import render_effective as render_config

_CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default: $POOLDAEMON_CONFIG, then ~/.config/pooldaemon/config.toml).",
)


def _load(config_path: Path | None) -> Config:
    """The config, or exit 1 naming each offending key and its fix (issue 2)."""
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        click.echo("pooldaemon: the config is not valid:", err=True)
        for problem in err.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    for warning in config_warnings(cfg):
        click.echo(f"pooldaemon: warning: {warning}", err=True)
    return cfg


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pooldaemon")
def main() -> None:
    """Keeps DJ record-pool subscriptions mirrored and downloaded on disk."""


@main.command()
@_CONFIG_OPTION
def run(config_path: Path | None) -> None:
    """Run the daemon in the foreground (what systemd and launchd start)."""
    # structlog renders exceptions with rich when it can import it; the daemon's logs are plain
    # lines, and keeping rich out of the long-running process saves ~8 MB and ~0.15 s of start.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    # What the imports and the config create lives as long as the process: collecting it while
    # it is made is wasted work (~10 % of the start-up's CPU, issue 13). The daemon collects once
    # it is ready.
    gc.disable()
    try:
        _import_frozenlist_in_python()
        from pooldaemon import tls

        tls.import_aiohttp()  # before anything imports aiohttp: its CA store is read when used
        from pooldaemon import daemon  # the heavy imports only for the command that needs them

        cfg = _load(config_path)
    finally:
        gc.enable()
    sys.exit(asyncio.run(daemon.run(cfg)))


def _import_frozenlist_in_python() -> None:
    """frozenlist (aiohttp's signal lists) without its C++ extension, which alone loads
    libstdc++: ~0.9 MiB of idle RSS (issue 13) for lists only touched when a session or an app is
    set up. frozenlist reads the switch once, at import; the environment is left as it was."""
    if "frozenlist" in sys.modules or "FROZENLIST_NO_EXTENSIONS" in os.environ:
        return
    os.environ["FROZENLIST_NO_EXTENSIONS"] = "1"
    try:
        import frozenlist  # noqa: F401
    finally:
        del os.environ["FROZENLIST_NO_EXTENSIONS"]


@main.command("check-config")
@_CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
def check_config(config_path: Path | None, as_json: bool) -> None:
    """Validate the config and print the effective settings, secrets masked."""
    cfg = _load(config_path)
    if as_json:
        click.echo(json.dumps(effective_dict(cfg), indent=2, ensure_ascii=False))
    else:
        source = cfg.path or "defaults (no config file)"
        click.echo(f"# effective settings from {source}")
        click.echo(render_config(cfg).rstrip("\n"))


@main.command("install-service")
@_CONFIG_OPTION
@click.option("--dry-run", is_flag=True, help="Print what would be written, write nothing.")
def install_service(config_path: Path | None, dry_run: bool) -> None:
    """Write the systemd user unit (Linux) or LaunchAgent (macOS) for this pooldaemon."""
    from pooldaemon import service_install

    config = None
    if config_path is not None:
        _load(config_path)  # a unit pointing at a broken config would only crash-loop
        config = config_path.absolute()
    try:
        service = service_install.plan(
            sys.platform,
            service_install.executable(),
            home=Path.home(),
            config=config,
            xdg_config_home=os.environ.get("XDG_CONFIG_HOME"),
        )
    except ValueError as err:
        click.echo(f"pooldaemon: {err}", err=True)
        sys.exit(1)
    if dry_run:
        click.echo(f"# would write {service.path}")
        click.echo(service.content.decode().rstrip("\n"))
        click.echo(f"# then start it with: {service.start_command}")
        return
    try:
        service_install.install(service)
    except OSError as err:
        click.echo(f"pooldaemon: cannot write {service.path}: {err}", err=True)
        sys.exit(1)
    click.echo(f"wrote {service.path}")
    click.echo(f"start it with: {service.start_command}")


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the demo keeps its config, state and downloads (default: a temp dir).",
)
def demo(directory: Path | None) -> None:
    """First-run showcase with the bundled simulated pools (no account needed)."""
    # Imported here: the simulators and rich's live view are not needed by `pooldaemon run`.
    from pooldaemon.cli.demo import main as demo_main

    sys.exit(demo_main(directory))


if __name__ == "__main__":
    main()
