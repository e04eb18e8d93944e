"""The systemd notify protocol, by hand: one datagram of `KEY=value` lines to `$NOTIFY_SOCKET`.

Issue 2: the protocol is a few bytes, so it is written here rather than pulled in from an
unmaintained package. An `@name` address is Linux's abstract namespace (leading NUL byte),
which several libraries got wrong (docs/reliability.md §3 item 16).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

from pooldaemon.log import get_logger

log = get_logger(__name__)


class Notifier:
    """Talks to the service manager when one is listening; a no-op otherwise."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._failed = False
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), or None when not asked for."""
        return None if self._watchdog_s is None or not self.enabled else self._watchdog_s / 2

    def send(self, *lines: str) -> bool:
        """Send one datagram; never raises (a service manager going away must not stop us)."""
        if self._address is None:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
        except OSError as err:
            if not self._failed:  # log the first failure only: the watchdog would repeat it
                self._failed = True
                log.warning("notify socket send failed", socket=str(self._address), error=str(err))
            return False
        if self._failed:
            self._failed = False
            log.info("notify socket reachable again", socket=str(self._address))
        return True

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1", f"MAINPID={os.getpid()}"]
        if status is not None:
            self._last_status = status
            lines.append(f"STATUS={_one_line(status)}")
        return self.send(*lines)

    def status(self, text: str) -> bool:
        """Send `STATUS=`; repeating the same text sends nothing."""
        text = _one_line(text)
        if text == self._last_status:
            return False
        self._last_status = text
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping from the event loop itself, so a blocked loop stops pinging (docs/reliability.md
        S4)."""
        interval = self.watchdog_interval()
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None  # systemd only hands out absolute paths or abstract names; ignore anything else


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    # sd_watchdog_enabled(3): the pings are meant for this pid only, not for our children.
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def _one_line(text: str) -> str:
    """A STATUS= value is one line; server text may hold newlines (docs/reliability.md N2)."""
    return " ".join(text.split())[:400]
