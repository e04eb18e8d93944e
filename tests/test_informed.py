"""Job events on the bus become hooks and notifications, each once."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pooldaemon.alerts import Alerts, Timing
from pooldaemon.events import EventBus
from pooldaemon.hooks import HookRunner
from pooldaemon.informed import Informer
from pooldaemon.informed_config import HooksConfig, NotifyConfig
from tests.conftest import eventually


def job(job_id: int, state: str, **fields: Any) -> dict[str, Any]:
    """A job as the socket API shows it."""
    return {
        "id": job_id,
        "ref": f"crateq:{570000 + job_id}",
        "pool": "crateq",
        "kind": "track",
        "title": f"Title {job_id}",
        "artist": f"Artist {job_id}",
        "state": state,
        "error": None,
        "error_code": None,
        "path": None,
        **fields,
    }


async def test_job_events_run_hooks_and_notify(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    hook = tmp_path / "hook"
    hook.write_text(
        "#!/bin/sh\n"
        f'printf "%s|%s|%s|%s" "$POOLDAEMON_EVENT" "$POOLDAEMON_PATH" "$POOLDAEMON_ERROR" '
        f'"$POOLDAEMON_TITLE" > "{seen}/$POOLDAEMON_JOB"\n'
    )
    hook.chmod(0o755)
    sent: list[tuple[str, str]] = []

    async def record(title: str, body: str) -> bool:
        sent.append((title, body))
        return True

    bus = EventBus()
    alerts = Alerts(
        NotifyConfig(),
        env={},
        timing=Timing(batch_s=0.2, give_up_s=5, retry_s=0.05, send_timeout_s=1),
        senders=[("test", record)],
    )
    hooks = HookRunner(HooksConfig(on_done=hook, on_failed=hook), base_env=dict(os.environ))
    informer = Informer(bus, hooks=hooks, alerts=alerts)
    informer.start()
    try:
        await informer.wait_subscribed()
        bus.publish("job.state", job=job(1, "downloading"))
        bus.publish("job.state", job=job(1, "done", path="/music/a.mp3"))
        bus.publish("job.state", job=job(1, "done", path="/music/a.mp3"))  # published again
        bus.publish("job.state", job=job(2, "done", path="/music/b.mp3"))
        bus.publish(
            "job.state",
            job=job(3, "failed", error="checksum mismatch after 5 tries", error_code="integrity"),
        )
        full = "512 MiB needed on /music, 100 MiB free"
        for n in (4, 5):
            bus.publish("job.state", job=job(n, "paused", error=full, error_code="disk_full"))
        bus.publish("job.progress", job=1, bytes_done=5)
        bus.publish("pool.failing", pool="harvest", code="auth", error="Login rejected (13)")
        bus.publish("job.state", job="not a job")  # ignored
        await eventually(lambda: len(list(seen.iterdir())) == 3)
        await eventually(lambda: len(sent) == 4)
        await eventually(alerts.idle)
    finally:
        await informer.stop()
    ran = {path.name: path.read_text() for path in seen.iterdir()}
    assert ran == {
        "1": "done|/music/a.mp3||Title 1",
        "2": "done|/music/b.mp3||Title 2",
        "3": "failed||checksum mismatch after 5 tries|Title 3",
    }
    assert sent == [
        (
            "pooldaemon: download failed",
            "Artist 3 – Title 3 (crateq:570003): checksum mismatch after 5 tries",
        ),
        ("pooldaemon: disk almost full", full),
        ("pooldaemon: harvest needs attention", "Login rejected (13)"),
        ("pooldaemon: 2 new tracks", "2 new tracks: Artist 1 – Title 1, Artist 2 – Title 2"),
    ]


@dataclass
class Told:
    """An informer whose notifications go to `sent` (title, body), and its alerts."""

    informer: Informer
    alerts: Alerts
    sent: list[tuple[str, str]]


@pytest.fixture
async def told() -> AsyncIterator[Told]:
    sent: list[tuple[str, str]] = []

    async def record(title: str, body: str) -> bool:
        sent.append((title, body))
        return True

    alerts = Alerts(NotifyConfig(), env={}, senders=[("test", record)])
    informer = Informer(EventBus(), hooks=HookRunner(HooksConfig(), base_env={}), alerts=alerts)
    informer.start()
    try:
        yield Told(informer, alerts, sent)
    finally:
        await informer.stop()


async def test_a_pool_failing_for_hours_is_an_account_problem(told: Told) -> None:
    now = time.time()
    failing = {"type": "pool.failing", "pool": "crateq", "code": "transient"}
    told.informer.handle({**failing, "error": "HTTP 503", "since": now - 600})
    told.informer.handle({**failing, "error": "HTTP 503", "since": now - 7 * 3600})
    await eventually(lambda: len(told.sent) == 1)
    await eventually(told.alerts.idle)
    assert told.sent == [("pooldaemon: crateq needs attention", "failing for 7 hours: HTTP 503")]


async def test_a_long_failure_is_told_once_a_spell_until_the_pool_recovers(told: Told) -> None:
    now = time.time()
    failing = {"type": "pool.failing", "pool": "crateq", "code": "transient"}
    # sync publishes one on every failed pass: hours go by, the DJ hears of it once.
    for hours in (7, 8, 9):
        told.informer.handle({**failing, "error": "HTTP 503", "since": now - hours * 3600})
    await eventually(lambda: len(told.sent) == 1)
    told.informer.handle({"type": "pool.recovered", "pool": "crateq"})
    told.informer.handle({**failing, "error": "HTTP 502", "since": now - 10 * 3600})
    await eventually(lambda: len(told.sent) == 2)
    await eventually(told.alerts.idle)
    assert told.sent == [
        ("pooldaemon: crateq needs attention", "failing for 7 hours: HTTP 503"),
        ("pooldaemon: crateq needs attention", "failing for 10 hours: HTTP 502"),
    ]
