"""What an HTTP answer to a download request means, decided before a byte of it is written.

A pure check of status, headers and Content-Range against what was asked: it either describes the
file (its size, whether ranges are honoured, its identity) or raises a `FetchError` whose `kind`
says what the next request should do. 200, 206 and 416 are three different answers.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pooldaemon.downloader.tags import sniff_media
from pooldaemon.retry import parse_retry_after

_TOKEN_STATUSES = frozenset({401, 403, 410})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


class Fail(enum.StrEnum):
    """What a failed answer means for the next request."""

    SERVER = "server"  # move the chunk to another server; this one cools down
    RATE = "rate"  # 429 / Retry-After: wait for the host (docs/reliability.md H7)
    TOKEN = "token"  # 401/403/410: renew the plan once (docs/reliability.md T1, T3)
    NO_RANGE = "no_range"  # Range ignored: never overlay a full body (docs/reliability.md H2)
    IDENTITY = "identity"  # size or ETag differ from what we are assembling (H3, H4, H11)


class FetchError(Exception):
    """One request failed; `what` names the error class for messages ("HTTP 503", "stall")."""

    def __init__(
        self,
        kind: Fail,
        server: str,
        what: str,
        *,
        retry_after: float | None = None,
        keep: bool = False,
        identity: Identity | None = None,
    ) -> None:
        super().__init__(f"{server}: {what}")
        self.kind = kind
        self.server = server
        self.what = what
        self.retry_after = retry_after
        self.keep = keep  # bytes already received were valid and may be kept
        self.identity = identity
        self.progressed = False  # set when the kept bytes count as progress


@dataclass(frozen=True)
class Identity:
    """What a server says the file is: its size, and ETag / Last-Modified when given."""

    size: int
    etag: str | None = None
    last_modified: str | None = None

    def differs(self, ref: Identity, *, same_server: bool) -> str | None:
        """Why this is not the file `ref` describes, or None."""
        if self.size != ref.size:
            return f"{self.size} bytes, not {ref.size}"
        if strong_etag(self.etag) and strong_etag(ref.etag) and self.etag != ref.etag:
            return f"ETag {self.etag}, not {ref.etag}"
        # Mirrors may stamp their copies differently; one server changing its date is a change.
        if (
            same_server
            and self.last_modified
            and ref.last_modified
            and self.last_modified != ref.last_modified
        ):
            return f"Last-Modified {self.last_modified}, not {ref.last_modified}"
        return None


def strong_etag(etag: str | None) -> bool:
    """Whether an ETag is strong (a weak one does not promise the same bytes)."""
    return bool(etag) and not str(etag).startswith("W/")


def parse_content_range(value: str | None) -> tuple[int, int, int] | None:
    """`bytes FIRST-LAST/TOTAL` → (first, last, total); None for anything else (H3)."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value)
    if not match:
        return None
    first, last, total = (int(g) for g in match.groups())
    if last < first or last >= total:
        return None
    return first, last, total


def parse_unsatisfied(value: str | None) -> int | None:
    """`bytes */TOTAL` of a 416 → TOTAL."""
    match = _UNSATISFIED.match(value or "")
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Head:
    """A usable answer: the file's total size, whether the Range was honoured, its identity."""

    total: int
    range_ok: bool
    identity: Identity


def check_head(
    status: int,
    headers: Mapping[str, str],
    content_length: int | None,
    *,
    server: str,
    ranged: bool,
    start: int,
    end: int,
    probe: bool,
    known_size: int | None,
    planned_size: int | None,
) -> Head:
    """Status and headers of an answer for bytes `start`-`end` → its `Head`; raises FetchError.

    `probe` is the first request of a part (its size is not known yet); `known_size` is the size
    the part is being assembled at (None before the probe), `planned_size` the pool's promise.
    `headers` must look names up case-insensitively (aiohttp's do).
    """
    h = headers
    etag, modified = h.get("ETag"), h.get("Last-Modified")
    if status in _TOKEN_STATUSES:
        raise FetchError(Fail.TOKEN, server, f"HTTP {status}")
    if status == 429 or (status == 503 and "Retry-After" in h):
        retry_after = parse_retry_after(h.get("Retry-After"))
        raise FetchError(Fail.RATE, server, f"HTTP {status}", retry_after=retry_after)
    if status == 416:
        total = parse_unsatisfied(h.get("Content-Range"))
        if total is None or probe:
            raise FetchError(Fail.SERVER, server, f"HTTP 416 for bytes {start}-{end}")
        ident = Identity(total, etag, modified)
        if total != known_size:
            # docs/reliability.md H4 b: the remote file changed size.
            raise FetchError(
                Fail.IDENTITY, server, f"HTTP 416, file is now {total} bytes", identity=ident
            )
        raise FetchError(Fail.SERVER, server, f"HTTP 416 for bytes {start}-{end} of {total}")
    if status not in (200, 206):
        raise FetchError(Fail.SERVER, server, f"HTTP {status}")
    encoding = h.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        # docs/reliability.md H8: offsets are never counted in decoded bytes.
        raise FetchError(Fail.SERVER, server, f"{encoding}-encoded body refused")
    ctype = h.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml"):
        raise FetchError(Fail.SERVER, server, f"an HTML page (HTTP {status}) instead of media")
    length = content_length
    if status == 206:
        if not ranged:
            raise FetchError(Fail.SERVER, server, "206 to a request without Range")
        value = h.get("Content-Range")
        parsed = parse_content_range(value)
        if parsed is None:
            raise FetchError(Fail.SERVER, server, f"206 with Content-Range {value!r}")
        first, last, total = parsed
        ident = Identity(total, etag, modified)
        want_last = min(end, total - 1) if probe else end
        if first != start or last != want_last:
            if not probe and known_size is not None and total != known_size:
                raise FetchError(
                    Fail.IDENTITY, server, f"file is now {total} bytes", identity=ident
                )
            raise FetchError(Fail.SERVER, server, f"Content-Range {value} for bytes {start}-{end}")
        if length is not None and length != last - first + 1:
            raise FetchError(
                Fail.SERVER, server, f"Content-Length {length} for Content-Range {value}"
            )
        return Head(total, True, ident)
    # 200: the whole file.
    if length == 0:
        raise FetchError(Fail.SERVER, server, "an empty 200 answer")
    total = length
    if total is None:
        total = planned_size
    if total is None:
        total = known_size
    if not total:
        raise FetchError(Fail.SERVER, server, "200 without Content-Length")
    return Head(total, False, Identity(total, etag, modified))


def check_media_head(head: bytes, server: str) -> None:
    """docs/reliability.md H9: an error page is never written into the file."""
    kind = sniff_media(head)
    if kind in ("html", "json"):
        raise FetchError(Fail.SERVER, server, f"an {kind.upper()} page instead of media")
