"""Named crash points for the crash tests: `DAEMON_FAILPOINT=name[:N]` SIGKILLs on the Nth hit.

docs/reliability.md (failpoints): the process kills itself at a named point, like SQLite's
crash tests.
Read once per process from the environment (the crash driver sets it before starting the daemon);
without the variable every call is a dictionary-free no-op.
"""

from __future__ import annotations

import os
import signal

#: The points the downloader reaches, in the order a download passes them.
NAMES = (
    "mid_chunk_write",
    "after_chunk_fsync",
    "before_chunk_commit",
    "after_verify_before_rename",
    "after_rename_before_dirsync",
    "after_rename_before_done",
    "mid_extract",
)
#: Reached only when tags are written (`write_tags`), between "after_chunk_fsync" and
#: "after_verify_before_rename": the tagged copy exists but is not yet fsynced or hashed.
TAGGING_NAMES = ("after_tag_before_sync",)


def _parse(spec: str | None) -> tuple[str, int] | None:
    """`name` or `name:N` → (name, N); None when unset or empty."""
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return name.strip(), int(count) if count.strip() else 1


_TARGET = _parse(os.environ.get("DAEMON_FAILPOINT"))
_hits = 0


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if `name` is the armed failpoint and this is its Nth hit."""
    global _hits
    if _TARGET is None or _TARGET[0] != name:
        return
    _hits += 1
    if _hits >= _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> tuple[str, int] | None:
    """The armed failpoint and its hit count, for log lines at start."""
    return _TARGET
