"""The systemd user unit and the launchd agent, rendered with the real executable path.

The text here is the source of truth; `systemd/pooldaemon.service` and
`launchd/io.pooldaemon.daemon.plist` in the repository are these renders with the default
placeholders (a test keeps them identical), so an installed wheel can write them without the
repository at hand.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

SYSTEMD_UNIT_NAME = "pooldaemon.service"
LAUNCHD_LABEL = "io.pooldaemon.daemon"
#: What the repository's copies of the unit and plist use where install-service puts real paths.
DEFAULT_EXEC = "%h/.local/bin/pooldaemon"
EXAMPLE_HOME = Path("/Users/you")

_SYSTEMD_UNIT = """\
# pooldaemon: keeps DJ record-pool subscriptions mirrored and downloaded (systemd user unit).
# `pooldaemon install-service` writes this file to ~/.config/systemd/user/ with the real path
# of the pooldaemon executable; then: systemctl --user daemon-reload
#                                    systemctl --user enable --now pooldaemon
[Unit]
Description=pooldaemon: record pool mirror and downloader
# A crash loop (a bad config exits 1 at once) stops after 5 starts in 5 minutes and shows as
# failed in `systemctl --user status pooldaemon` (docs/reliability.md S4).
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# READY=1 comes once the control socket answers; WATCHDOG=1 is sent from the event loop every
# WatchdogSec/2, so a blocked loop gets the service restarted.
WatchdogSec=30s
TimeoutStartSec=60s
# SIGTERM: stop taking work, checkpoint, close the database, exit 0 within 10 s.
TimeoutStopSec=15s
Restart=on-failure
RestartSec=5s
# Downloads never disturb DJ software running on the same machine.
Nice=10
IOSchedulingClass=idle
CPUSchedulingPolicy=batch
# Hardening that works in a user unit. The library, drop folder and state live under the home
# directory, which stays writable; ProtectSystem=full makes /usr, /boot and /etc read-only.
# In a user unit the Protect*/PrivateDevices lines need unprivileged user namespaces; if the
# service fails with status=218/CAPABILITIES, delete those lines.
UMask=0077
NoNewPrivileges=yes
ProtectSystem=full
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Secrets from files systemd hands over instead of the config file (docs/reliability.md S3):
# LoadCredential=crateq-password:%h/.config/pooldaemon/secrets/crateq-password
# and in config.toml:  password_file = "${{CREDENTIALS_DIRECTORY}}/crateq-password"

[Install]
WantedBy=default.target
"""


@dataclass(frozen=True, slots=True)
class ServiceFile:
    """A rendered unit or plist, where it goes, and the command that starts it."""

    path: Path
    content: bytes
    start_command: str
    #: Directories the service needs that nothing else creates (launchd log dir).
    make_dirs: tuple[Path, ...] = ()


def executable() -> list[str]:
    """The command that runs pooldaemon: the console script we were started as, if any."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name.startswith("pooldaemon") and argv0.is_file():
        return [str(argv0.absolute())]
    found = shutil.which("pooldaemon")
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "pooldaemon.cli.daemon"]


def systemd_unit(command: list[str] | None = None) -> str:
    """The user unit; `command` is the argv that runs pooldaemon (then `run` and options)."""
    exec_start = (
        f"{DEFAULT_EXEC} run" if command is None else " ".join(_systemd_quote(a) for a in command)
    )
    return _SYSTEMD_UNIT.format(exec_start=exec_start)


def launchd_plist(command: list[str] | None = None, home: Path = EXAMPLE_HOME) -> bytes:
    """The LaunchAgent; paths must be absolute (launchd expands neither ~ nor variables)."""
    if command is None:
        command = [str(home / ".local/bin/pooldaemon"), "run"]
    logs = home / "Library/Logs/pooldaemon"
    plist = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": command,
        "RunAtLoad": True,
        # Restart after a crash, not after a clean exit (SIGTERM → exit 0).
        "KeepAlive": {"SuccessfulExit": False},
        # launchd's minimum time between starts: throttles a crash loop (docs/reliability.md S4).
        "ThrottleInterval": 10,
        # SIGTERM, then this long before SIGKILL.
        "ExitTimeOut": 15,
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "LowPriorityBackgroundIO": True,
        "Nice": 10,
        "Umask": 0o077,
        "StandardOutPath": str(logs / "pooldaemon.out.log"),
        "StandardErrorPath": str(logs / "pooldaemon.log"),
    }
    return plistlib.dumps(plist, sort_keys=False)


def plan(
    platform: str,
    command: list[str],
    *,
    home: Path,
    config: Path | None = None,
    xdg_config_home: str | None = None,
) -> ServiceFile:
    """What `pooldaemon install-service` writes on `platform` (sys.platform)."""
    argv = [*command, "run"]
    if config is not None:
        argv += ["--config", str(config)]
    if platform == "darwin":
        path = home / "Library/LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        return ServiceFile(
            path=path,
            content=launchd_plist(argv, home),
            start_command=f"launchctl bootstrap gui/$(id -u) {shlex.quote(str(path))}",
            make_dirs=(home / "Library/Logs/pooldaemon",),
        )
    if platform.startswith("linux"):
        config_home = Path(xdg_config_home) if xdg_config_home else home / ".config"
        return ServiceFile(
            path=config_home / "systemd/user" / SYSTEMD_UNIT_NAME,
            content=systemd_unit(argv).encode(),
            start_command=(
                "systemctl --user daemon-reload && systemctl --user enable --now pooldaemon"
            ),
        )
    raise ValueError(f"no service manager support for {platform} (systemd or launchd only)")


def install(service: ServiceFile) -> None:
    """Write the file (replacing an older one atomically) and create the directories it needs."""
    for directory in service.make_dirs:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    service.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = service.path.with_name(f".{service.path.name}.tmp")
    tmp.write_bytes(service.content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, service.path)


def _systemd_quote(arg: str) -> str:
    """One ExecStart= word: `%` doubled (specifier), quoted when it holds spaces or quotes."""
    arg = arg.replace("%", "%%")
    if any(c.isspace() for c in arg) or '"' in arg or "\\" in arg:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg
