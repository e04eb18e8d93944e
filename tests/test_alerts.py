"""Notifications through real Apprise to a real HTTP receiver on loopback (json:// URLs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import pytest
import structlog
from aiohttp import web

from pooldaemon.alerts import Alerts, Timing, channel_name, desktop_url
from pooldaemon.informed_config import NotifyConfig
from tests.conftest import eventually

FAST = Timing(batch_s=0.3, give_up_s=1.0, retry_s=0.05, send_timeout_s=0.5)


class Receiver:
    """A notification service: records what it is sent; answers ok, 500, or never."""

    def __init__(self) -> None:
        self.mode: Literal["ok", "fail", "hang"] = "ok"
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.release = asyncio.Event()
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.mode == "hang":
            await self.release.wait()
            return web.Response(status=503)
        if self.mode == "fail":
            return web.Response(status=500, text="boom")
        payload = await request.json()
        self.received.append({"path": request.path, **payload})
        return web.Response(text="ok")

    def url(self, path: str = "/hooks/s3cret-token") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def messages(self) -> list[tuple[str, str]]:
        return [(item["title"], item["message"]) for item in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recv.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield recv
    recv.release.set()
    await runner.cleanup()


@pytest.fixture
async def logs() -> AsyncIterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def alerts_for(*urls: str, on: tuple[str, ...] = ("done", "failed", "account", "disk")) -> Alerts:
    config = NotifyConfig.model_validate({"urls": list(urls), "on": list(on), "desktop": False})
    return Alerts(config, env={}, timing=Timing(**vars(FAST)))


async def test_finished_downloads_are_batched_into_one_message(receiver: Receiver) -> None:
    alerts = alerts_for(receiver.url())
    alerts.start()
    try:
        for n in range(12):
            alerts.done(f"Artist {n}", f"Title {n}")
        alerts.failed("DJ X", "Tune", "crateq:570291", "checksum mismatch after 5 tries")
        await eventually(alerts.idle)
    finally:
        await alerts.stop()
    names = ", ".join(f"Artist {n} – Title {n}" for n in range(10))
    assert receiver.messages() == [
        (
            "pooldaemon: download failed",
            "DJ X – Tune (crateq:570291): checksum mismatch after 5 tries",
        ),
        ("pooldaemon: 12 new tracks", f"12 new tracks: {names}, and 2 more"),
    ]
    assert {item["path"] for item in receiver.received} == {"/hooks/s3cret-token"}


async def test_at_most_one_done_message_per_batch_interval(receiver: Receiver) -> None:
    alerts = alerts_for(receiver.url())
    alerts.timing.batch_s = 0.4
    alerts.start()
    sent_at: list[float] = []
    try:
        alerts.done("A", "One")
        await eventually(lambda: len(receiver.received) == 1)
        sent_at.append(time.monotonic())
        alerts.done("B", "Two")
        alerts.done("", "Three")
        await eventually(lambda: len(receiver.received) == 2)
        sent_at.append(time.monotonic())
        await eventually(alerts.idle)
    finally:
        await alerts.stop()
    assert receiver.messages() == [
        ("pooldaemon: 1 new track", "1 new track: A – One"),
        ("pooldaemon: 2 new tracks", "2 new tracks: B – Two, Three"),
    ]
    assert sent_at[1] - sent_at[0] >= 0.4 * 0.9


async def test_only_the_chosen_events_are_sent(receiver: Receiver) -> None:
    alerts = alerts_for(receiver.url(), on=("account", "disk"))
    alerts.start()
    try:
        alerts.done("A", "One")
        alerts.failed("A", "One", "crateq:1", "404")
        alerts.account("harvest", "Login rejected (code 13): check username and password")
        alerts.disk("512 MiB needed on /music, 100 MiB free")
        await eventually(lambda: len(receiver.received) == 2)
        await eventually(alerts.idle)
    finally:
        await alerts.stop()
    assert receiver.messages() == [
        (
            "pooldaemon: harvest needs attention",
            "Login rejected (code 13): check username and password",
        ),
        (
            "pooldaemon: disk almost full",
            "512 MiB needed on /music, 100 MiB free",
        ),
    ]


async def loop_lag_while(check: Callable[[], bool]) -> float:
    """The worst event-loop delay seen until `check()` holds."""
    worst = 0.0
    end = time.monotonic() + 10
    while not check():
        assert time.monotonic() < end, "condition not reached before the deadline"
        start = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - start - 0.01)
    return worst


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_a_failing_service_never_blocks_and_its_message_is_dropped(
    receiver: Receiver, logs: list[dict[str, Any]], mode: Literal["fail", "hang"]
) -> None:
    receiver.mode = mode
    alerts = alerts_for(receiver.url())
    alerts.start()
    try:
        t0 = time.monotonic()
        for n in range(100):
            alerts.failed("A", f"T{n}", f"crateq:{n}", "404")
        assert time.monotonic() - t0 < 0.1  # the caller never waits
        lag = await loop_lag_while(lambda: any(entry["event"] == "alert.dropped" for entry in logs))
        assert lag < 0.2
    finally:
        await alerts.stop()
    dropped = [entry for entry in logs if entry["event"] == "alert.dropped"]
    # One line for the lot: the backlog kept the newest 50, all expired together.
    assert len(dropped) == 1
    assert dropped[0]["count"] == FAST.backlog
    assert dropped[0]["kinds"] == ["failed"]
    assert dropped[0]["channel"] == "urls[0] (json://…)"
    assert dropped[0]["tries"] >= (2 if mode == "fail" else 1)
    assert [e["event"] for e in logs].count("alert.backlog_full") == 1
    assert [e["event"] for e in logs].count("alert.channel_failing") == 1
    assert receiver.received == [] and receiver.attempts >= 1
    # The URL's secret path never reaches the log.
    assert "s3cret" not in repr(logs)


async def test_a_dead_destination_does_not_delay_a_live_one(
    receiver: Receiver, logs: list[dict[str, Any]]
) -> None:
    unreachable = "json://127.0.0.1:9/nothing-listens"  # the discard port: refused
    receiver_url = receiver.url("/live")
    alerts = alerts_for(unreachable, receiver_url)
    alerts.timing.give_up_s = 30.0  # the dead one keeps retrying throughout
    alerts.start()
    try:
        alerts.account("crateq", "Pool failing for 6 hours: HTTP 503")
        took = await eventually(lambda: len(receiver.received) == 1, deadline_s=5.0)
        # The dead one's first refusal is its own: on a loaded machine it may be logged after
        # the live one has delivered, so wait for it rather than stop the channels first.
        await eventually(lambda: any(e["event"] == "alert.channel_failing" for e in logs))
    finally:
        await alerts.stop()
    assert took < 2.0
    assert receiver.messages() == [
        ("pooldaemon: crateq needs attention", "Pool failing for 6 hours: HTTP 503")
    ]
    failing = [entry for entry in logs if entry["event"] == "alert.channel_failing"]
    assert [entry["channel"] for entry in failing] == ["urls[0] (json://…)"]


async def test_a_service_that_recovers_gets_the_message(
    receiver: Receiver, logs: list[dict[str, Any]]
) -> None:
    receiver.mode = "fail"
    alerts = alerts_for(receiver.url())
    alerts.timing.give_up_s = 30.0
    alerts.start()
    try:
        alerts.disk("no space on /music")
        await eventually(lambda: receiver.attempts >= 2)
        receiver.mode = "ok"
        await eventually(lambda: len(receiver.received) == 1)
        await eventually(alerts.idle)
    finally:
        await alerts.stop()
    events = [entry["event"] for entry in logs]
    assert events.count("alert.channel_failing") == 1
    assert events.count("alert.channel_recovered") == 1
    assert "alert.dropped" not in events


def test_names_and_desktop_detection() -> None:
    assert channel_name(2, "ntfy://user:pass@host/topic") == "urls[2] (ntfy://…)"
    assert desktop_url({}, "linux") is None
    assert desktop_url({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"}, "linux") == (
        "dbus://"
    )
    assert desktop_url({}, "darwin") == "macosx://"


def test_desktop_without_support_is_silently_off(logs: list[dict[str, Any]]) -> None:
    config = NotifyConfig(desktop=True)
    alerts = Alerts(config, env={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"})
    # This machine has no python-dbus: the desktop channel is left out, with no log line.
    import importlib.util

    if importlib.util.find_spec("dbus") is None:
        assert alerts.channels == []
        assert logs == []


async def test_the_same_problem_is_told_once_a_while(receiver: Receiver) -> None:
    now = [1000.0]
    config = NotifyConfig.model_validate({"urls": [receiver.url()], "desktop": False})
    alerts = Alerts(config, env={}, timing=Timing(**vars(FAST)), clock=lambda: now[0])
    alerts.timing.repeat_s = 3600
    alerts.start()
    try:
        for _ in range(3):
            alerts.account("crateq", "Login rejected: check api_key")
            alerts.disk("no space on /music")
        alerts.account("harvest", "Login rejected (code 13)")
        await eventually(lambda: len(receiver.received) == 3)
        now[0] += 3600
        alerts.account("crateq", "Login rejected: check api_key")
        await eventually(lambda: len(receiver.received) == 4)
        await eventually(alerts.idle)
    finally:
        await alerts.stop()
    assert [title for title, _ in receiver.messages()] == [
        "pooldaemon: crateq needs attention",
        "pooldaemon: disk almost full",
        "pooldaemon: harvest needs attention",
        "pooldaemon: crateq needs attention",
    ]
