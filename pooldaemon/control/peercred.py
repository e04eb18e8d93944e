"""Who is on the other end of a Unix socket: SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS."""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

# <sys/un.h> on Darwin: SOL_LOCAL level, LOCAL_PEERCRED (struct xucred), LOCAL_PEERPID.
_SOL_LOCAL = 0
_LOCAL_PEERCRED = 0x001
_LOCAL_PEERPID = 0x002
# struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; }
_XUCRED = struct.Struct("=IIh2x16I")


@dataclass(frozen=True, slots=True)
class PeerCred:
    """The peer's process id (when the platform says) and user and group ids."""

    pid: int | None
    uid: int
    gid: int | None


class PeerCredUnavailable(OSError):
    """The platform or socket cannot say who the peer is; treat the peer as a stranger."""


def peer_credentials(sock: Any) -> PeerCred:
    """Credentials of the peer of a connected AF_UNIX stream socket.

    `sock` may be a `socket.socket` or asyncio's `TransportSocket` wrapper (both have
    `getsockopt`). Raises PeerCredUnavailable when they cannot be read.
    """
    try:
        if sys.platform.startswith("linux"):
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, gid = struct.unpack("3i", raw)
            return PeerCred(pid=pid or None, uid=uid, gid=gid)
        if sys.platform == "darwin":
            raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED.size)
            fields = _XUCRED.unpack(raw[: _XUCRED.size].ljust(_XUCRED.size, b"\0"))
            uid, ngroups = fields[1], fields[2]
            gid = fields[3] if ngroups > 0 else None
            pid: int | None
            try:
                pid = struct.unpack("i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))[0]
            except OSError:
                pid = None
            return PeerCred(pid=pid, uid=uid, gid=gid)
    except (OSError, struct.error) as err:
        raise PeerCredUnavailable(f"cannot read peer credentials: {err}") from err
    raise PeerCredUnavailable(f"peer credentials are not supported on {sys.platform}")
