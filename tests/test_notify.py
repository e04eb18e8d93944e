"""The systemd notify protocol against a real datagram socket (docs/reliability.md §4 item 6)."""

from __future__ import annotations

import asyncio
import os

import structlog

from pooldaemon.notify import Notifier


def test_ready_status_stopping_watchdog_datagrams(notify_receiver: type) -> None:
    receiver = notify_receiver()
    notifier = Notifier({"NOTIFY_SOCKET": receiver.address})
    assert notifier.enabled
    assert notifier.ready("1 pool")
    assert receiver.receive() == f"READY=1\nMAINPID={os.getpid()}\nSTATUS=1 pool"
    assert notifier.status("2 pools,\n3 downloading")  # a newline would end the STATUS= value
    assert receiver.receive() == "STATUS=2 pools, 3 downloading"
    assert notifier.watchdog()
    assert receiver.receive() == "WATCHDOG=1"
    assert notifier.stopping()
    assert receiver.receive() == "STOPPING=1\nSTATUS=stopping"
    notifier.close()


def test_same_status_twice_sends_once(notify_receiver: type) -> None:
    receiver = notify_receiver()
    notifier = Notifier({"NOTIFY_SOCKET": receiver.address})
    assert notifier.status("idle")
    assert not notifier.status("idle")
    assert notifier.status("busy")
    assert receiver.drain() == ["STATUS=idle", "STATUS=busy"]
    notifier.close()


def test_abstract_namespace_address(notify_receiver: type) -> None:
    receiver = notify_receiver(abstract=True)
    assert receiver.address.startswith("@")
    notifier = Notifier({"NOTIFY_SOCKET": receiver.address})
    assert notifier.watchdog()
    assert receiver.receive() == "WATCHDOG=1"
    notifier.close()


def test_no_notify_socket_is_a_silent_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert notifier.watchdog_interval() is None


def test_send_failure_never_raises_and_is_logged_once(sock_dir: object) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": f"{sock_dir}/nobody-listens"})
    with structlog.testing.capture_logs() as logs:
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        assert not notifier.status("x")
    failures = [e for e in logs if e["event"] == "notify socket send failed"]
    assert len(failures) == 1
    assert "nobody-listens" in failures[0]["socket"]
    notifier.close()


def test_watchdog_interval_is_half_of_watchdog_usec(notify_receiver: type) -> None:
    receiver = notify_receiver()
    env = {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "30000000"}
    assert Notifier(env).watchdog_interval() == 15.0
    assert Notifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval() == 15.0
    # sd_watchdog_enabled(3): pings meant for another pid are not ours to send.
    assert Notifier({**env, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval() is None
    assert Notifier({**env, "WATCHDOG_USEC": "0"}).watchdog_interval() is None
    assert Notifier({**env, "WATCHDOG_USEC": "soon"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


def test_ignores_relative_notify_socket() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


async def test_watchdog_pings_stop_while_the_loop_is_blocked(notify_receiver: type) -> None:
    receiver = notify_receiver()
    notifier = Notifier({"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "20000"})
    interval = notifier.watchdog_interval()
    assert interval is not None
    task = asyncio.create_task(notifier.watchdog_loop())
    try:
        # Pings flow while the loop runs.
        async with asyncio.timeout(10):
            for _ in range(3):
                while not receiver.drain():
                    await asyncio.sleep(interval / 4)
        receiver.drain()
        # A blocked loop (a synchronous 2 GB hash, a long query) sends nothing at all:
        # systemd would restart us (docs/reliability.md S4). The loop is blocked by waiting,
        # synchronously, for a ping: one arriving within 20 intervals fails at once.
        assert receiver.receive(timeout=20 * interval) is None
        # And once the loop runs again, so do the pings.
        async with asyncio.timeout(10):
            while not receiver.drain():
                await asyncio.sleep(interval / 4)
    finally:
        task.cancel()
        notifier.close()
