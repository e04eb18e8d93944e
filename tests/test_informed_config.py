"""[notify], [hooks], [[schedule]], [gig]: good values load, a bad one is named with its fix."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import time
from pathlib import Path

import pytest

from pooldaemon.config import (
    Config,
    ConfigError,
    config_warnings,
    effective_dict,
    load_config,
    render_effective,
    toml_keys,
)
from pooldaemon.informed_config import GigConfig, HooksConfig, NotifyConfig, ScheduleWindow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}


def load(tmp_path: Path, env: dict[str, str], text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text.replace("{tmp}", str(tmp_path)), encoding="utf-8")
    path.chmod(0o600)
    return load_config(path, env=env)


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    (tmp_path / "hook.sh").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "hook.sh").chmod(0o755)
    (tmp_path / "plain.txt").write_text("not a program\n")
    (tmp_path / "plain.txt").chmod(0o644)
    return tmp_path


def test_defaults_when_the_sections_are_absent(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = load(tmp_path, env, "")
    assert cfg.notify.urls == ()
    assert cfg.notify.on == ("done", "failed", "account", "disk")
    assert cfg.notify.desktop is True
    assert cfg.hooks.on_done is None and cfg.hooks.on_failed is None
    assert cfg.schedule == ()
    assert "rekordbox" in cfg.gig.apps and "Serato DJ Pro" in cfg.gig.apps
    assert cfg.gig.action == "pause"
    assert cfg.gig.bandwidth_limit_bps == 256 * 1024


def test_every_section_loads(tmp_path: Path, env: dict[str, str], scripts: Path) -> None:
    cfg = load(
        tmp_path,
        env,
        """
[notify]
urls = ["json://127.0.0.1:8080/hook", "ntfy://my-topic"]
on = ["done", "disk"]
desktop = false

[hooks]
on_done = "{tmp}/hook.sh"

[[schedule]]
days = ["Mon", "tue"]
from = "23:30"
to = "7:00"
bandwidth_limit = "2 MiB/s"

[[schedule]]
from = "18:00"
to = "20:00"
downloads = false

[gig]
apps = ["djay Pro"]
action = "limit"
bandwidth_limit = "100 KB"
""",
    )
    assert cfg.notify.url_values() == ["json://127.0.0.1:8080/hook", "ntfy://my-topic"]
    assert cfg.notify.on == ("done", "disk")
    assert cfg.hooks.on_done == tmp_path / "hook.sh"
    first, second = cfg.schedule
    assert first.days == ("mon", "tue")
    assert (first.start, first.end) == (time(23, 30), time(7, 0))
    assert first.bandwidth_limit_bps == 2 * 1024 * 1024
    assert first.downloads is True
    assert second.days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert second.bandwidth_limit_bps == 0 and second.downloads is False
    assert first.label() == "mon,tue 23:30-07:00"
    assert second.label() == "every day 18:00-20:00"
    assert cfg.gig.apps == ("djay Pro",)
    assert cfg.gig.bandwidth_limit_bps == 100_000
    # The URLs are secrets: the log redactor learns them.
    assert "ntfy://my-topic" in cfg.secrets()


BAD = [
    pytest.param(
        '[notify]\nurls = ["my-topic"]',
        'notify.urls[0]: each entry must be an Apprise URL such as "ntfy://my-topic" or '
        '"json://host/path"',
        id="url-without-scheme",
    ),
    pytest.param(
        '[notify]\nurls = ["ntfy://secret token"]',
        "notify.urls[0]: an Apprise URL must not contain spaces",
        id="url-with-space",
    ),
    pytest.param(
        "[notify]\nurls = 5",
        "notify.urls: must be a list (got 5)",
        id="urls-not-a-list",
    ),
    pytest.param(
        '[notify]\non = ["done", "finished"]',
        'notify.on[1]: must be one of "done", "failed", "account" or "disk" (got "finished")',
        id="unknown-event",
    ),
    pytest.param(
        '[notify]\non = ["done", "done"]',
        'notify.on: "done" is listed twice',
        id="event-twice",
    ),
    pytest.param(
        '[notify]\ndesktop = "maybe"',
        'notify.desktop: must be true or false (got "maybe")',
        id="desktop-not-bool",
    ),
    pytest.param(
        "[notify]\nurl = []",
        'notify.url: unknown key (did you mean "urls"?)',
        id="notify-unknown-key",
    ),
    pytest.param(
        '[hooks]\non_done = "hook.sh"',
        'hooks.on_done: must be an absolute path (got "hook.sh"); hooks run without a shell',
        id="hook-relative",
    ),
    pytest.param(
        '[hooks]\non_failed = "{tmp}/missing.sh"',
        'hooks.on_failed: "{tmp}/missing.sh" does not exist or is not a file',
        id="hook-missing",
    ),
    pytest.param(
        '[hooks]\non_done = "{tmp}/plain.txt"',
        'hooks.on_done: "{tmp}/plain.txt" is not executable; run: chmod +x {tmp}/plain.txt',
        id="hook-not-executable",
    ),
    pytest.param(
        '[hooks]\non_done = "{tmp}"',
        'hooks.on_done: "{tmp}" does not exist or is not a file',
        id="hook-a-directory",
    ),
    pytest.param(
        "[hooks]\non_done = 1",
        "hooks.on_done: must be the absolute path of an executable (got 1)",
        id="hook-not-a-string",
    ),
    pytest.param(
        '[hooks]\non_finish = "/bin/true"',
        "hooks.on_finish: unknown key (known keys: on_done, on_failed)",
        id="hooks-unknown-key",
    ),
    pytest.param(
        '[[schedule]]\nfrom = "25:00"\nto = "07:00"',
        'schedule[0].from: must be a time of day as "HH:MM", 00:00 to 23:59 (got "25:00")',
        id="hour-out-of-range",
    ),
    pytest.param(
        '[[schedule]]\nfrom = "01:00"\nto = "7pm"',
        'schedule[0].to: must be a time of day as "HH:MM", 00:00 to 23:59 (got "7pm")',
        id="not-hh-mm",
    ),
    pytest.param(
        '[[schedule]]\nfrom = "01:00"',
        'schedule[0]: missing required key "to"',
        id="to-missing",
    ),
    pytest.param(
        '[[schedule]]\nfrom = "01:00"\nto = "01:00"',
        'schedule[0]: "from" and "to" are the same time; a window must have a length '
        "(for all day, leave out [[schedule]] and use [daemon] bandwidth_limit)",
        id="empty-window",
    ),
    pytest.param(
        '[[schedule]]\ndays = ["monday"]\nfrom = "01:00"\nto = "02:00"',
        'schedule[0].days[0]: "monday" is not a day (use mon, tue, wed, thu, fri, sat, sun)',
        id="bad-day",
    ),
    pytest.param(
        '[[schedule]]\ndays = ["mon", "Mon"]\nfrom = "01:00"\nto = "02:00"',
        'schedule[0].days: "mon" is listed twice',
        id="day-twice",
    ),
    pytest.param(
        '[[schedule]]\ndays = []\nfrom = "01:00"\nto = "02:00"',
        'schedule[0]: "days" is empty; leave it out for every day',
        id="no-days",
    ),
    pytest.param(
        '[[schedule]]\nfrom = "01:00"\nto = "02:00"\nbandwidth_limit = "fast"',
        'schedule[0].bandwidth_limit: "fast" is not a size (examples: 8 MiB, 512 KiB, 1 GiB)',
        id="bad-rate",
    ),
    pytest.param(
        '[[schedule]]\nfrom = "01:00"\nto = "02:00"\nbandwidth_limit = -5',
        "schedule[0].bandwidth_limit: -5 is not a size (examples: 8 MiB, 512 KiB, 1 GiB)",
        id="negative-rate",
    ),
    pytest.param(
        '[[schedule]]\nfrom = "01:00"\nto = "02:00"\ndownload = false',
        'schedule[0].download: unknown key (did you mean "downloads"?)',
        id="schedule-unknown-key",
    ),
    pytest.param(
        '[schedule]\nfrom = "01:00"\nto = "02:00"',
        "schedule: must be a list (got a table)",
        id="schedule-single-brackets",
    ),
    pytest.param(
        '[gig]\naction = "stop"',
        'gig.action: must be one of "pause" or "limit" (got "stop")',
        id="bad-action",
    ),
    pytest.param(
        '[gig]\naction = "limit"\nbandwidth_limit = "0"',
        'gig: action = "limit" needs a bandwidth_limit above 0 (such as "256 KiB"); '
        'for no downloads at all use action = "pause"',
        id="limit-without-limit",
    ),
    pytest.param(
        '[gig]\napps = ["rekordbox", "Rekordbox"]',
        'gig.apps: "Rekordbox" is listed twice',
        id="app-twice",
    ),
    pytest.param(
        '[gig]\napps = ["rekordbox", " "]',
        "gig.apps[1]: an app name must not be empty",
        id="app-empty",
    ),
    pytest.param(
        "[gig]\napp = []",
        'gig.app: unknown key (did you mean "apps"?)',
        id="gig-unknown-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_values_are_named_with_the_fix(
    tmp_path: Path, env: dict[str, str], scripts: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, text)
    assert str(caught.value) == expected.replace("{tmp}", str(tmp_path))


def test_a_bad_url_is_never_echoed(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, '[notify]\nurls = ["hunter2-secret-topic"]')
    assert "hunter2" not in str(caught.value)


def test_check_config_masks_the_urls(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = load(
        tmp_path,
        env,
        '[notify]\nurls = ["ntfy://hunter2@topic", "json://h/p?token=hunter3"]\n'
        '[[schedule]]\nfrom = "23:00"\nto = "06:30"\nbandwidth_limit = "1 MiB"\n',
    )
    shown = render_effective(cfg)
    data = json.dumps(effective_dict(cfg))
    for text in (shown, data):
        assert "hunter" not in text
    assert 'urls = ["********", "********"]' in shown
    # The rendering is TOML again, and the window reads back as written.
    parsed = tomllib.loads(shown)
    assert parsed["schedule"] == [
        {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "from": "23:00",
            "to": "06:30",
            "bandwidth_limit": "1 MiB/s",
            "downloads": True,
        }
    ]
    assert effective_dict(cfg)["schedule"][0]["start"] == "23:00"


def test_example_config_documents_every_key(env: dict[str, str]) -> None:
    text = (REPO / "config.example.toml").read_text()
    load_config(REPO / "config.example.toml", env=env)
    for model in (NotifyConfig, HooksConfig, ScheduleWindow, GigConfig):
        for key in toml_keys(model):
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), (model.__name__, key)


def test_environment_overrides(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = load_config(
        env={
            **env,
            "POOLDAEMON_NOTIFY__URLS": "json://h/a?to=x,y ntfy://topic",
            "POOLDAEMON_NOTIFY__ON": "failed, disk",
            "POOLDAEMON_GIG__APPS": '["Serato DJ Pro", "rekordbox"]',
            "POOLDAEMON_GIG__ACTION": "limit",
            "POOLDAEMON_SCHEDULE": '[{"from": "01:00", "to": "07:00", "downloads": false}]',
        }
    )
    assert cfg.notify.url_values() == ["json://h/a?to=x,y", "ntfy://topic"]
    assert cfg.notify.on == ("failed", "disk")
    assert cfg.gig.apps == ("Serato DJ Pro", "rekordbox")
    assert cfg.gig.action == "limit"
    assert cfg.schedule[0].downloads is False


def test_urls_from_a_file(tmp_path: Path, env: dict[str, str]) -> None:
    secrets = tmp_path / "urls"
    secrets.write_text("# mine\nntfy://topic-one\n\njson://h/p?token=t0k3n\n")
    cfg = load(tmp_path, env, f'[notify]\nurls_file = "{secrets}"\n')
    assert cfg.notify.url_values() == ["ntfy://topic-one", "json://h/p?token=t0k3n"]
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, f'[notify]\nurls = []\nurls_file = "{secrets}"\n')
    assert str(caught.value) == 'notify.urls_file: give either "urls" or "urls_file", not both'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env, f'[notify]\nurls_file = "{tmp_path}/none"\n')
    assert str(caught.value).startswith(f'notify.urls_file: cannot read "{tmp_path}/none"')


def test_a_config_with_urls_must_be_private(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = load(tmp_path, env, '[notify]\nurls = ["ntfy://topic"]\n')
    assert cfg.path is not None
    cfg.path.chmod(0o644)
    (warning,) = config_warnings(cfg)
    assert "readable by other users" in warning
