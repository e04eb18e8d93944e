"""One-time login links and the sessions they open (docs/interface.md §11).

Only digests of tokens are kept: a dict lookup by a secret is not a constant-time compare, a
lookup by its SHA-256 leaks nothing useful. Both stores are bounded, so a script that mints links
or sessions in a loop costs a fixed amount of memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

LINK_TTL_S = 60.0
SESSION_IDLE_S = 12 * 3600.0
MAX_LINKS = 16
MAX_SESSIONS = 64


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class LoginLinks:
    """Short-lived, single-use login tokens."""

    def __init__(self, *, ttl_s: float = LINK_TTL_S, clock: Clock = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._expires: OrderedDict[bytes, float] = OrderedDict()

    def mint(self) -> str:
        """A new token, valid for `ttl_s` and one use."""
        self._purge()
        while len(self._expires) >= MAX_LINKS:
            self._expires.popitem(last=False)  # the oldest unused link goes first
        token = secrets.token_urlsafe(32)
        self._expires[_digest(token)] = self._clock() + self.ttl_s
        return token

    def redeem(self, token: str) -> bool:
        """Whether `token` is a live link; it is used up either way."""
        expires = self._expires.pop(_digest(token), None)
        return expires is not None and self._clock() < expires

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, expires in self._expires.items() if expires <= now]:
            del self._expires[key]


@dataclass
class Session:
    """A signed-in browser: its cookie value is the key, `csrf` goes in every page."""

    csrf: str
    last_seen: float


class Sessions:
    """Sessions that end after `idle_s` without a request."""

    def __init__(self, *, idle_s: float = SESSION_IDLE_S, clock: Clock = time.monotonic) -> None:
        self.idle_s = idle_s
        self._clock = clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def create(self) -> tuple[str, Session]:
        """A new session: (cookie value, session)."""
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)  # least recently used
        sid = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), last_seen=self._clock())
        self._sessions[_digest(sid)] = session
        return sid, session

    def get(self, sid: str | None, *, touch: bool = True) -> Session | None:
        """The live session for a cookie value (`touch`: this request counts as activity)."""
        if not sid:
            return None
        key = _digest(sid)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen >= self.idle_s:
            del self._sessions[key]
            return None
        if touch:
            session.last_seen = now
            self._sessions.move_to_end(key)
        return session

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(_digest(sid), None)

    def __len__(self) -> int:
        return len(self._sessions)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a request's CSRF token with the session's."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
