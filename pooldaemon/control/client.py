"""An async client for the control socket (what `poolctl` and the tests use)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

HOW_TO_START = "Start it with `systemctl --user start pooldaemon` or `pooldaemon run`."


class DaemonUnreachable(Exception):
    """Nothing answers on the socket (poolctl exit 3)."""

    def __init__(self, socket_path: Path, detail: str | None = None) -> None:
        self.socket_path = socket_path
        if detail is None:
            message = f"pooldaemon is not running (no socket at {socket_path}). {HOW_TO_START}"
        else:
            message = f"pooldaemon is not reachable at {socket_path}: {detail}. {HOW_TO_START}"
        super().__init__(message)
        self.message = message


class DaemonRefused(Exception):
    """The daemon answered with an error (poolctl exit 1)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.status = status


class ControlClient:
    """`async with ControlClient(path) as c: await c.get("/v1/status")`."""

    def __init__(self, socket_path: Path, *, connect_timeout_s: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No total timeout: `sync` waits until the pool is done, `events` never ends.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket_path)),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return await self.request("POST", path, body=body)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; the decoded JSON answer, or DaemonRefused / DaemonUnreachable."""
        session = self._open()
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with session.request(
                method, _url(path), params=params, data=data, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as err:
            raise self._unreachable(err) from err
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
            raise DaemonUnreachable(self.socket_path, f"connection lost ({err})") from err
        return _decode(raw, status)

    async def stream(
        self, path: str, *, idle_timeout_s: float = 45.0
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield each NDJSON line of a streaming answer; DaemonUnreachable when it breaks.

        The daemon sends a heartbeat every 15 s: silence for `idle_timeout_s` means it is gone
        (a frozen daemon keeps the socket open but says nothing).
        """
        session = self._open()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout_s, sock_read=idle_timeout_s
        )
        try:
            async with session.get(_url(path), timeout=timeout) as resp:
                if resp.status >= 400:
                    _decode(await resp.read(), resp.status)
                async for raw in resp.content:
                    line = raw.strip()
                    if line:
                        yield json.loads(line)
        except aiohttp.ClientConnectorError as err:
            raise self._unreachable(err) from err
        except aiohttp.ServerTimeoutError as err:
            raise DaemonUnreachable(
                self.socket_path, f"no word from the daemon for {idle_timeout_s:g} s"
            ) from err
        except (aiohttp.ClientPayloadError, aiohttp.ClientOSError) as err:
            raise DaemonUnreachable(self.socket_path, f"connection lost ({err})") from err
        raise DaemonUnreachable(self.socket_path, "the daemon closed the event stream")

    def _unreachable(self, err: aiohttp.ClientConnectorError) -> DaemonUnreachable:
        os_error = err.os_error
        if isinstance(os_error, FileNotFoundError | ConnectionRefusedError):
            return DaemonUnreachable(self.socket_path)
        if isinstance(os_error, PermissionError):
            return DaemonUnreachable(
                self.socket_path, "permission denied (is it another user's daemon?)"
            )
        return DaemonUnreachable(self.socket_path, str(os_error))


def _url(path: str) -> str:
    # The host is ignored on a Unix socket; a fixed name keeps logs and Host headers readable.
    return "http://pooldaemon" + (path if path.startswith("/") else "/" + path)


def _decode(raw: bytes, status: int) -> Any:
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        try:
            data = json.loads(raw)  # what orjson refuses and json reads (NaN)
        except ValueError:
            data = None
    if status >= 400:
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
            raise DaemonRefused(
                str(error.get("code", "error")), str(error.get("message", "")), status
            )
        text = raw.decode("utf-8", "replace").strip()[:200]
        raise DaemonRefused("http_error", f"HTTP {status}: {text}", status)
    if data is None and raw:
        raise DaemonRefused("bad_answer", "the daemon's answer is not JSON", status)
    return data
