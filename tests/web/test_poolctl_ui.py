"""`poolctl ui` against a real `pooldaemon run`: it opens a one-time link with $BROWSER, answers
`{"url"}` with --json, and says why when the dashboard is off or cannot listen."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from conftest import OFFLINE_CRATEQ, ConfigFactory, DaemonFactory, clean_env

POOL = OFFLINE_CRATEQ


def poolctl(socket_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pooldaemon.cli.poolctl", "--socket", str(socket_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(**env),
        check=False,
    )


def fake_browser(tmp_path: Path) -> tuple[Path, Path]:
    """A $BROWSER that records the URL it was asked to open."""
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
    script.chmod(0o755)
    return script, opened


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def follow(url: str) -> int:
    """The status of a login link (its redirect not followed)."""
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_ui_opens_a_one_time_link_with_browser(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    daemon = daemon_factory(config_factory(POOL + '\n[web]\nlisten = "127.0.0.1:0"\n'))
    script, opened = fake_browser(tmp_path)
    result = poolctl(daemon.socket_path, "ui", BROWSER=str(script))
    assert result.returncode == 0, result.stderr
    (url,) = opened.read_text().split()
    assert url.startswith("http://127.0.0.1:") and "/login?token=" in url
    assert url not in result.stdout  # a link that logs in is not left in the terminal
    assert follow(url) == 303
    assert follow(url) == 401  # used up

    answer = poolctl(daemon.socket_path, "--json", "ui", BROWSER=str(script))
    assert answer.returncode == 0, answer.stderr
    link = json.loads(answer.stdout)["url"]
    assert link.startswith(url.split("/login")[0] + "/login?token=") and link != url
    assert opened.read_text().split() == [url]  # --json opened nothing
    assert follow(link) == 303


def test_ui_says_why_when_the_dashboard_is_off(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(config_factory(POOL + "\n[web]\nenabled = false\n"))
    result = poolctl(daemon.socket_path, "ui")
    assert result.returncode == 1
    assert "the dashboard is off ([web] enabled = false)" in result.stderr


def test_a_taken_port_is_logged_naming_the_key_and_the_daemon_serves_on(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = config_factory(POOL + f'\n[web]\nlisten = "127.0.0.1:{port}"\n')
        daemon = daemon_factory(config)
        result = poolctl(daemon.socket_path, "ui")
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port} (web.listen)" in result.stderr
        assert poolctl(daemon.socket_path, "status").returncode == 0
    errors = [json.loads(line) for line in daemon.stderr().splitlines() if '"error"' in line]
    assert any(
        e["level"] == "error" and f"127.0.0.1:{port} (web.listen)" in e["event"] for e in errors
    ), daemon.stderr()


def test_the_example_config_documents_the_web_keys() -> None:
    from pooldaemon.config import WebConfig, toml_keys

    text = (Path(__file__).parents[2] / "config.example.toml").read_text()
    for key in toml_keys(WebConfig):
        assert f"\n{key} = " in text or f"\n# {key} = " in text, key
