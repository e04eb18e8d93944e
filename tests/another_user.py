"""Running a piece of a test as another user (uid/gid 65534, "nobody"), for the promises that are
about other users: a peer on the control socket, a drop file someone else owns, a file the
daemon's user cannot read. CI runs as root, so these run there through a forked child."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

#: The other user: "nobody" on Debian and most Linux systems.
NOBODY = 65534

T = TypeVar("T")

_CANNOT_BECOME = b"U"
_RETURNED = b"R"
_RAISED = b"X"


def as_nobody(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` run in a forked child that dropped to uid/gid 65534; its (pickled) result.

    Needs root. An exception in the child is raised here; a root that cannot become uid 65534
    (a user namespace without it mapped) skips the test with that reason.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to run part of the test as another user (uid 65534)")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            except OSError as err:
                outcome = _CANNOT_BECOME + str(err).encode()
            else:
                try:
                    outcome = _RETURNED + pickle.dumps(fn(*args))
                except BaseException as err:  # handed to the parent, which raises it
                    outcome = _RAISED + pickle.dumps(err)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(outcome)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, raw
    kind, body = raw[:1], raw[1:]
    if kind == _CANNOT_BECOME:
        pytest.skip(f"root here cannot become uid {NOBODY}: {body.decode()}")
    if kind == _RAISED:
        raise pickle.loads(body)
    assert kind == _RETURNED, raw
    result: T = pickle.loads(body)
    return result
