"""Switchable faults: what a simulator's answers do wrong, switched on per test while it runs.

Faults cover docs/reliability.md's transport cases (H1-H11) and the pools' API quirks; the
simulators apply them through `sim/answer.py` (API answers) and `sim/download.py` (media bodies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["API_KINDS", "CONTENT_RANGE_VARIANTS", "DOWNLOAD_KINDS", "Fault", "Faults"]

# Kinds an API endpoint applies; a download endpoint applies DOWNLOAD_KINDS.
API_KINDS = frozenset(
    {
        "status",
        "stall",
        "drop",
        "trickle",
        "raw",
        "redirect",
        "timeout_empty",
        "malformed_json",
        "truncated_json",
        "empty_body",
    }
)
DOWNLOAD_KINDS = frozenset(
    {
        "status",
        "stall",
        "drop",
        "trickle",
        "raw",
        "redirect",
        "ignore_range",
        "bad_content_range",
        "gzip",
        "html_200",
        "empty_200",
        "overlong",
        "different_bytes",
    }
)
# docs/reliability.md H3: the ways a 206's Content-Range can be wrong.
CONTENT_RANGE_VARIANTS = (
    "shifted_start",
    "end_past_request",
    "wrong_total",
    "missing",
    "other_unit",
)


@dataclass
class Fault:
    """One switched-on fault: applies to matching requests, `count` times (None: until cleared)."""

    kind: str
    params: dict[str, Any]
    match: frozenset[str] | None = None
    count: int | None = None
    skip: int = 0
    hits: int = 0

    def matches(self, endpoint: str, key: str | None) -> bool:
        """Whether this fault targets the endpoint (or the media key)."""
        return (
            self.match is None or endpoint in self.match or (key is not None and key in self.match)
        )


class Faults:
    """The faults of one server, switched on and off by tests while it runs."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self.throttle_bps: int | None = None  # per-response pacing for benchmarks; None: full speed
        self._release = asyncio.Event()

    # -- generic ---------------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        **params: Any,
    ) -> Fault:
        """Switch a fault on; `match` limits it to endpoint names or media keys."""
        if kind not in API_KINDS | DOWNLOAD_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "bad_content_range" and params.get("variant") not in CONTENT_RANGE_VARIANTS:
            raise ValueError(f"bad_content_range variant must be one of {CONTENT_RANGE_VARIANTS}")
        matched = None if match is None else frozenset([match] if isinstance(match, str) else match)
        fault = Fault(kind, dict(params), matched, count, skip)
        self._faults.append(fault)
        return fault

    def clear(self, kind: str | None = None) -> None:
        """Switch off every fault (or every fault of one kind), release stalls, stop throttling."""
        if kind is None:
            self._faults.clear()
            self.throttle_bps = None
        else:
            self._faults = [fault for fault in self._faults if fault.kind != kind]
        self.release_stalls()

    @property
    def active(self) -> list[Fault]:
        """Faults still switched on, in the order they were added."""
        return list(self._faults)

    def select(
        self, endpoint: str, applicable: frozenset[str], key: str | None = None
    ) -> dict[str, Fault]:
        """Faults for one request, first per kind; uses up one of each matching fault's `count`."""
        chosen: dict[str, Fault] = {}
        for fault in list(self._faults):
            if fault.kind not in applicable or not fault.matches(endpoint, key):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.hits += 1
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
            chosen.setdefault(fault.kind, fault)
        return chosen

    def release_stalls(self) -> None:
        """Let every stalled response go on."""
        self._release.set()
        self._release = asyncio.Event()

    async def wait_released(self, seconds: float | None) -> None:
        """Wait until release_stalls() (or `seconds`, when given)."""
        event = self._release
        if seconds is None:
            await event.wait()
            return
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass

    # -- named switches (H = docs/reliability.md §2 case)
    # -----------------------------------------------

    def fail(
        self,
        status: int = 503,
        *,
        count: int | None = 1,
        retry_after: int | str | None = None,
        message: str | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """H7: answer `status` to the next `count` requests (Retry-After: seconds or HTTP date)."""
        return self.add(
            "status",
            count=count,
            match=match,
            skip=skip,
            status=status,
            retry_after=retry_after,
            message=message,
            after_apply=after_apply,
        )

    def rate_limit(
        self,
        retry_after: int | str | None = 1,
        *,
        count: int | None = 1,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H7: 429 Too Many Requests with Retry-After."""
        return self.fail(429, count=count, retry_after=retry_after, match=match, skip=skip)

    def unauthorized(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """401 to the next `count` requests, whatever token they carry (T2, T3)."""
        return self.fail(401, count=count, message="Unauthorized", match=match, skip=skip)

    def drop(
        self,
        after_bytes: int | None = 0,
        *,
        reset: bool = False,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """H1: close the connection after the headers and `after_bytes` body bytes (None: before
        any response). `reset=True` aborts (RST; bytes still buffered may never arrive)."""
        return self.add(
            "drop",
            count=count,
            match=match,
            skip=skip,
            after_bytes=after_bytes,
            reset=reset,
            after_apply=after_apply,
        )

    def stall(
        self,
        after_bytes: int | None = 0,
        *,
        seconds: float | None = None,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """H5: stop sending after the headers and `after_bytes` bytes (None: before the headers)
        until release_stalls() or `seconds`; the response then goes on."""
        return self.add(
            "stall",
            count=count,
            match=match,
            skip=skip,
            after_bytes=after_bytes,
            seconds=seconds,
            after_apply=after_apply,
        )

    def trickle(
        self,
        bps: int,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H6: send the body at `bps` bytes per second."""
        return self.add("trickle", count=count, match=match, skip=skip, bps=bps)

    def ignore_range(
        self,
        *,
        advertise: bool = True,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H2: answer 200 with the full body to ranged requests (still saying Accept-Ranges:
        bytes unless advertise=False)."""
        return self.add("ignore_range", count=count, match=match, skip=skip, advertise=advertise)

    def bad_content_range(
        self,
        variant: str,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H3: a 206 whose Content-Range is wrong: one of CONTENT_RANGE_VARIANTS."""
        return self.add("bad_content_range", count=count, match=match, skip=skip, variant=variant)

    def gzip_ranged(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H8: gzip the body (Content-Encoding: gzip), 206 too, whatever Accept-Encoding said."""
        return self.add("gzip", count=count, match=match, skip=skip)

    def html_200(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H9: 200 with an HTML error page instead of the media."""
        return self.add("html_200", count=count, match=match, skip=skip)

    def empty_200(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H9: 200 with Content-Length 0 (the media's Content-Type)."""
        return self.add("empty_200", count=count, match=match, skip=skip)

    def overlong_body(
        self,
        extra: int = 1024,
        *,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H10: a body `extra` bytes longer than the range (Content-Length says so too)."""
        return self.add("overlong", count=count, match=match, skip=skip, extra=extra)

    def different_bytes(
        self, *, count: int | None = None, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """H11: this server's copy differs (every 512th byte flipped, same size, other ETag)."""
        return self.add("different_bytes", count=count, match=match, skip=skip)

    def raw(
        self,
        data: bytes,
        *,
        count: int | None = 1,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H10 and friends: write `data` verbatim as the whole HTTP response, then close."""
        return self.add("raw", count=count, match=match, skip=skip, data=data)

    def redirect(
        self,
        location: str,
        *,
        status: int = 302,
        count: int | None = None,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
    ) -> Fault:
        """H12: redirect to `location` instead of answering."""
        return self.add(
            "redirect", count=count, match=match, skip=skip, location=location, status=status
        )

    def timeout_empty(
        self,
        *,
        count: int | None = 1,
        match: str | Iterable[str] | None = None,
        skip: int = 0,
        after_apply: bool = False,
    ) -> Fault:
        """docs/pools/crateq.md: a timed-out request answers HTTP 200 with `[]`."""
        return self.add(
            "timeout_empty", count=count, match=match, skip=skip, after_apply=after_apply
        )

    def malformed_json(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """docs/reliability.md §0: the body's last quote becomes `quot;`, as in the pool document's
        broken entity."""
        return self.add("malformed_json", count=count, match=match, skip=skip)

    def truncated_json(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """Only the first half of the JSON body (Content-Length matches what is sent)."""
        return self.add("truncated_json", count=count, match=match, skip=skip)

    def empty_body(
        self, *, count: int | None = 1, match: str | Iterable[str] | None = None, skip: int = 0
    ) -> Fault:
        """200 with an empty body where JSON was expected."""
        return self.add("empty_body", count=count, match=match, skip=skip)
