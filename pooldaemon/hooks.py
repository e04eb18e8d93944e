"""[hooks]: the user's programs run after a download finished or failed, off the download path.

docs/interface.md §10: no shell; the job's facts in POOLDAEMON_* variables; 60 s, then the hook
is killed with its whole process group; its output goes to the log; a failing hook never fails a
job. docs/reliability.md N1: a hook that sleeps for ever or exits 1 costs one log line, nothing
more. `submit` only puts the event on a bounded queue; a few owned workers run the hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pooldaemon.informed_config import HooksConfig
from pooldaemon.log import get_logger
from pooldaemon.tasks import cancel_and_wait

log = get_logger(__name__)

HookKind = Literal["done", "failed"]
_ENV_PREFIX = "POOLDAEMON_"
_REAP_S = 5.0


@dataclass(frozen=True)
class HookEvent:
    """One finished or failed job, as the hook's environment describes it."""

    event: HookKind
    ref: str  # "crateq:570291"
    pool: str
    job: str
    path: str = ""  # the file, for done
    artist: str = ""
    title: str = ""
    error: str = ""  # the reason, for failed

    def environment(self) -> dict[str, str]:
        values = {
            "EVENT": self.event,
            "REF": self.ref,
            "POOL": self.pool,
            "JOB": self.job,
            "PATH": self.path,
            "ARTIST": self.artist,
            "TITLE": self.title,
            "ERROR": self.error,
        }
        # A NUL cannot be passed in the environment; titles come from servers.
        return {_ENV_PREFIX + key: value.replace("\0", "") for key, value in values.items()}


class HookRunner:
    """Runs on_done / on_failed from a bounded queue with bounded concurrency, never raising."""

    timeout_s: float = 60.0
    output_limit_bytes: int = 8 * 1024

    def __init__(
        self,
        hooks: HooksConfig,
        *,
        base_env: Mapping[str, str],
        concurrency: int = 2,
        queue_size: int = 256,
    ) -> None:
        self._hooks = hooks
        # The hook inherits PATH, HOME, LANG…, but never our own settings: a
        # POOLDAEMON_POOLS__X__PASSWORD variable would hand a pool password to the script.
        self._base_env = {
            key: value for key, value in base_env.items() if not key.upper().startswith(_ENV_PREFIX)
        }
        self._concurrency = concurrency
        self._queue: asyncio.Queue[tuple[Path, HookEvent]] = asyncio.Queue(queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._dropping = 0
        self.running = 0

    def submit(self, event: HookEvent) -> bool:
        """Queue `event`'s hook (never waits); False when none is set or the queue is full."""
        program = self._hooks.on_done if event.event == "done" else self._hooks.on_failed
        if program is None:
            return False
        try:
            self._queue.put_nowait((program, event))
        except asyncio.QueueFull:
            if not self._dropping:
                log.warning("hook.queue_full", hook=str(program), ref=event.ref)
            self._dropping += 1
            return False
        if self._dropping:
            log.info("hook.queue_recovered", dropped=self._dropping)
            self._dropping = 0
        return True

    def pending(self) -> int:
        """Hooks waiting to run."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the owned workers."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._worker(), name=f"hooks-{n}")
                for n in range(self._concurrency)
            ]

    async def stop(self) -> None:
        """Cancel the workers; running hooks are killed with their process groups."""
        workers, self._workers = self._workers, []
        await cancel_and_wait(workers)

    async def _worker(self) -> None:
        while True:
            program, event = await self._queue.get()
            self.running += 1
            try:
                await self._run(program, event)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # never let one hook stop the worker
                log.warning("hook.error", hook=str(program), ref=event.ref, error=str(err))
            finally:
                self.running -= 1
                self._queue.task_done()

    async def _run(self, program: Path, event: HookEvent) -> None:
        fields = {"hook": str(program), "event_kind": event.event, "ref": event.ref}
        try:
            process = await asyncio.create_subprocess_exec(
                program,
                env={**self._base_env, **event.environment()},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
                cwd="/",
            )
        except OSError as err:
            log.warning("hook.cannot_start", **fields, error=err.strerror or str(err))
            return
        assert process.stdout is not None
        output = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):
                while chunk := await process.stdout.read(65536):
                    # Keep the head; go on draining so a chatty hook never blocks on its pipe.
                    output += chunk[: max(0, self.output_limit_bytes - len(output))]
                code = await process.wait()
        except TimeoutError:
            await _reap(process)
            log.warning("hook.killed", **fields, timeout_s=self.timeout_s, output=_text(output))
            return
        except asyncio.CancelledError:  # shutdown: do not leave it behind
            await _reap(process)
            raise
        if code == 0:
            log.info("hook.finished", **fields, output=_text(output))
        else:
            log.warning("hook.failed", **fields, exit_code=code, output=_text(output))


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill the hook's process group, then collect it and the rest of its output."""
    _kill_group(process.pid)
    # With the group gone the pipe reaches EOF at once; a child that left the group (setsid)
    # and keeps it open is not waited for.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.communicate(), _REAP_S)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _text(output: bytes | bytearray) -> str:
    return output.decode("utf-8", "replace").strip()
