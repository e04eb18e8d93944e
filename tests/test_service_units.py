"""The systemd user unit and the launchd agent: checked by systemd itself and by plistlib."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pooldaemon import service_install
from pooldaemon.cli.daemon import main as pooldaemon_cli

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "pooldaemon.service"
PLIST = REPO / "launchd" / f"{service_install.LAUNCHD_LABEL}.plist"


def _directives(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file (comments dropped), every value of repeated keys."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_repository_files_are_the_default_renders() -> None:
    assert UNIT.read_text() == service_install.systemd_unit()
    assert PLIST.read_bytes() == service_install.launchd_plist()


def test_unit_is_a_notify_service_with_watchdog_restart_and_low_priority() -> None:
    unit = _directives(UNIT.read_text())
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "%h/.local/bin/pooldaemon run",
        "WatchdogSec": "30s",
        "Restart": "on-failure",
        "RestartSec": "5s",
        "TimeoutStopSec": "15s",
        "Nice": "10",
        "IOSchedulingClass": "idle",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "WantedBy": "default.target",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert "StartLimitBurst" in unit and "StartLimitIntervalSec" in unit
    # docs/reliability.md D2/S2: the library and state live under $HOME, which must stay writable.
    assert unit["ProtectSystem"] == ["full"]
    assert "ProtectHome" not in unit and "PrivateTmp" not in unit
    assert "AF_UNIX" in unit["RestrictAddressFamilies"][0]


def _verify(unit_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or unit_path.parent / "runtime")
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_analyze_verify_accepts_the_installed_unit(tmp_path: Path) -> None:
    # install-service substitutes a real executable; verify checks that it exists.
    exe = shutil.which("pooldaemon") or sys.executable
    unit = tmp_path / "pooldaemon.service"
    unit.write_text(service_install.systemd_unit([exe, "run", "--config", "/etc/x y/c.toml"]))
    result = _verify(unit)
    assert result.returncode == 0, result.stderr
    # systemd reports unknown or misspelled settings as warnings with exit 0: none allowed.
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    exe = shutil.which("pooldaemon") or sys.executable
    unit = tmp_path / "pooldaemon.service"
    text = service_install.systemd_unit([exe, "run"]).replace("Type=notify", "Type=notifyx")
    unit.write_text(text)
    assert "notifyx" in _verify(unit).stderr


def test_plist_parses_with_the_launchd_keys() -> None:
    plist = plistlib.loads(PLIST.read_bytes())
    assert plist["Label"] == service_install.LAUNCHD_LABEL == "io.pooldaemon.daemon"
    assert plist["ProgramArguments"][1:] == ["run"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ThrottleInterval"] == 10
    assert plist["ProcessType"] == "Background"
    assert plist["LowPriorityIO"] is True
    assert plist["Nice"] == 10
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert plist[key].startswith("/Users/you/Library/Logs/pooldaemon/")
    # launchd expands neither ~ nor variables: every path is absolute.
    assert all(arg.startswith("/") for arg in plist["ProgramArguments"][:1])


@pytest.mark.skipif(shutil.which("plutil") is None, reason="plutil exists on macOS only")
def test_plutil_lint(tmp_path: Path) -> None:  # pragma: no cover - macOS CI
    assert subprocess.run(["plutil", "-lint", str(PLIST)], check=False).returncode == 0


def test_plan_for_macos_writes_a_launch_agent(tmp_path: Path) -> None:
    service = service_install.plan(
        "darwin", ["/opt/pd/bin/pooldaemon"], home=tmp_path, config=Path("/cfg/c.toml")
    )
    assert service.path == tmp_path / "Library/LaunchAgents/io.pooldaemon.daemon.plist"
    plist = plistlib.loads(service.content)
    assert plist["ProgramArguments"] == ["/opt/pd/bin/pooldaemon", "run", "--config", "/cfg/c.toml"]
    assert plist["StandardErrorPath"] == str(tmp_path / "Library/Logs/pooldaemon/pooldaemon.log")
    assert service.start_command == f"launchctl bootstrap gui/$(id -u) {service.path}"
    assert service.make_dirs == (tmp_path / "Library/Logs/pooldaemon",)


def test_plan_for_linux_quotes_exec_start(tmp_path: Path) -> None:
    service = service_install.plan(
        "linux", ["/home/dj/my tools/pooldaemon"], home=tmp_path, config=Path("/c/100%.toml")
    )
    assert service.path == tmp_path / ".config/systemd/user/pooldaemon.service"
    exec_start = _directives(service.content.decode())["ExecStart"]
    # A space needs quotes; % is a specifier and must be doubled.
    assert exec_start == ['"/home/dj/my tools/pooldaemon" run --config /c/100%%.toml']
    assert service.start_command == (
        "systemctl --user daemon-reload && systemctl --user enable --now pooldaemon"
    )


def test_plan_refuses_other_platforms(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="systemd or launchd only"):
        service_install.plan("win32", ["x"], home=tmp_path)


def test_install_service_dry_run_and_real(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    dry = CliRunner().invoke(pooldaemon_cli, ["install-service", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    target = tmp_path / "cfg/systemd/user/pooldaemon.service"
    assert f"# would write {target}" in dry.stdout
    assert "Type=notify" in dry.stdout
    assert not target.exists()

    real = CliRunner().invoke(pooldaemon_cli, ["install-service"], env=env)
    assert real.exit_code == 0, real.output
    assert real.stdout.splitlines() == [
        f"wrote {target}",
        "start it with: systemctl --user daemon-reload && systemctl --user enable --now pooldaemon",
    ]
    exec_start = _directives(target.read_text())["ExecStart"][0]
    command = exec_start.split(" run")[0].strip('"')
    # The real executable, absolute (not %h/.local/bin guesswork).
    assert Path(command.split()[0]).is_absolute() and Path(command.split()[0]).exists()
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_install_service_refuses_a_broken_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[daemon]\nchunk_size = 'huge'\n")
    result = CliRunner().invoke(
        pooldaemon_cli, ["install-service", "--config", str(bad)], env={"HOME": str(tmp_path)}
    )
    assert result.exit_code == 1
    assert "daemon.chunk_size" in result.stderr
    assert not (tmp_path / ".config/systemd").exists()
