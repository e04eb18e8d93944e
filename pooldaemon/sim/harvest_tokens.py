"""The simulated Harvest pool's token book: every token issued, by kind, against its own clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pooldaemon.sim.harvest_library import hex_id
from pooldaemon.sim.harvest_wire import HarvestError

__all__ = ["Token", "TokenBook"]


@dataclass
class Token:
    """One issued token: when it stops working, and whose it is."""

    expires_at: float
    owner: str = ""


class TokenBook:
    """OAuth access, service, member and persistent login tokens, and download tokens."""

    def __init__(self, seed: str, clock: Callable[[], float]) -> None:
        self._seed = seed
        self._clock = clock
        self._counter = 0
        self.access: dict[str, Token] = {}
        self.service: dict[str, Token] = {}
        self.member: dict[str, Token] = {}
        self.persistent: dict[str, Token] = {}
        #: download token → (media key, expiry)
        self.download: dict[str, tuple[str, float]] = {}

    def new(self, kind: str) -> str:
        """A fresh token value, never issued before."""
        self._counter += 1
        return hex_id(self._seed, kind, self._counter, time.time_ns(), length=32)

    def issue(
        self, store: dict[str, Token], kind: str, lifetime_s: float, owner: str = ""
    ) -> tuple[str, float]:
        """A new token of `kind` in `store`, valid for `lifetime_s`: (value, expiry)."""
        token = self.new(kind)
        expires_at = self._clock() + lifetime_s
        store[token] = Token(expires_at, owner)
        return token, expires_at

    def issue_download(self, key: str, lifetime_s: float) -> str:
        """A download token for media `key`, valid for `lifetime_s`."""
        token = self.new("download")
        self.download[token] = (key, self._clock() + lifetime_s)
        return token

    def check(self, store: dict[str, Token], token: str | None) -> Token:
        """The token's record; code 5 when unknown, 21 when expired."""
        record = store.get(token or "")
        if record is None:
            raise HarvestError(5)
        if self._clock() >= record.expires_at:
            raise HarvestError(21)
        return record

    def expire(self, store: dict[str, Token]) -> None:
        """Every token in `store` expires now."""
        for token in store.values():
            token.expires_at = min(token.expires_at, self._clock() - 1)

    def expire_downloads(self) -> None:
        """Every download token handed out so far stops working."""
        for token, (key, _) in list(self.download.items()):
            self.download[token] = (key, self._clock() - 1)

    def expiry(self, token: str) -> float:
        """The true expiry (unix time) of any token issued."""
        for store in (self.service, self.member, self.persistent, self.access):
            if token in store:
                return store[token].expires_at
        if token in self.download:
            return self.download[token][1]
        raise KeyError(token)
