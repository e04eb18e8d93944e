"""The log of requests a simulator received, so tests can assert on headers, query and path."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict, MultiDict

__all__ = ["RecordedRequest", "RequestLog"]


@dataclass(frozen=True)
class RecordedRequest:
    """What a simulator received: tests assert on headers, query and path."""

    endpoint: str
    method: str
    path: str
    path_qs: str
    query: MultiDict[str]
    headers: CIMultiDict[str]
    time: float


@dataclass
class RequestLog:
    """Every request a server received, and per-endpoint counts (`calls["Auth/Login"]`)."""

    entries: list[RecordedRequest] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def record(self, request: web.BaseRequest, endpoint: str) -> RecordedRequest:
        """Log one request under `endpoint`."""
        entry = RecordedRequest(
            endpoint=endpoint,
            method=request.method,
            path=request.path,
            path_qs=request.path_qs,
            query=MultiDict(request.query),
            headers=CIMultiDict(request.headers),
            time=time.time(),
        )
        self.entries.append(entry)
        self.calls[endpoint] += 1
        return entry

    def for_endpoint(self, endpoint: str) -> list[RecordedRequest]:
        """Requests logged under `endpoint`, oldest first."""
        return [entry for entry in self.entries if entry.endpoint == endpoint]

    def last(self, endpoint: str | None = None) -> RecordedRequest | None:
        """The newest request (for `endpoint`, when given)."""
        for entry in reversed(self.entries):
            if endpoint is None or entry.endpoint == endpoint:
                return entry
        return None

    def clear(self) -> None:
        """Forget logged requests and counts."""
        self.entries.clear()
        self.calls.clear()
