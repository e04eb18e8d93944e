"""Plain data passed between adapters, the store, the downloader and the socket API."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    """docs/interface.md §4 job states."""

    QUEUED = "queued"
    RESOLVING = "resolving"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    #: docs/interface.md §8: fetched automatically, but the library already holds the song.
    SKIPPED = "skipped"


#: Legal transitions; anything else is a bug and is refused by the store.
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.RESOLVING, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED, JobState.SKIPPED}
    ),
    JobState.RESOLVING: frozenset(
        {
            JobState.DOWNLOADING,
            JobState.QUEUED,
            JobState.PAUSED,
            JobState.CANCELLED,
            JobState.FAILED,
            JobState.VERIFYING,
        }
    ),
    JobState.DOWNLOADING: frozenset(
        {
            JobState.VERIFYING,
            JobState.QUEUED,
            JobState.PAUSED,
            JobState.CANCELLED,
            JobState.FAILED,
            JobState.RESOLVING,
        }
    ),
    JobState.VERIFYING: frozenset(
        {JobState.DONE, JobState.QUEUED, JobState.FAILED, JobState.PAUSED, JobState.DOWNLOADING}
    ),
    JobState.PAUSED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.FAILED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.CANCELLED: frozenset({JobState.QUEUED}),
    JobState.DONE: frozenset({JobState.QUEUED}),
    JobState.SKIPPED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
}

ACTIVE_STATES = frozenset({JobState.RESOLVING, JobState.DOWNLOADING, JobState.VERIFYING})

#: The one maximum `limit` of every paged socket answer (catalog, jobs), for the socket and for
#: poolctl alike; poolctl's `--all` pages past it (docs/interface.md §12).
MAX_PAGE = 500


@dataclass(frozen=True)
class Job:
    """One download job as the store holds it (table jobs, without its stored plan)."""

    id: int
    pool: str
    kind: str
    item_id: str | None
    format: str
    ref: str
    origin: str
    title: str | None
    artist: str | None
    state: JobState
    attempts: int
    error: str | None
    error_code: str | None
    bytes_done: int
    bytes_total: int | None
    path: str | None
    final_sha256: str | None
    not_before: float | None
    created: float
    updated: float

    def to_api(self) -> dict[str, Any]:
        """The job as the socket API shows it (docs/interface.md §4), plus a few extra keys."""
        return {
            "id": self.id,
            "ref": self.ref,
            "pool": self.pool,
            "kind": self.kind,
            "title": self.title,
            "artist": self.artist,
            "state": self.state.value,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "rate_bps": 0,
            "attempts": self.attempts,
            "error": self.error,
            "error_code": self.error_code,
            "path": self.path,
            "origin": self.origin,
            "created": self.created,
            "updated": self.updated,
        }


class LibraryState(enum.StrEnum):
    """A library entry's state (docs/interface.md §8)."""

    DOWNLOADED = "downloaded"
    ADOPTED = "adopted"  # a file the user had, matched to a mirrored track (never modified)
    DELETED = "deleted"  # by the user: never fetched again on its own
    LOST = "lost"  # missing or corrupt on disk: offer a redownload
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Track:
    """One catalog item, normalized across pools (docs/interface.md §4 "a track")."""

    pool: str
    id: str
    artist: str | None = None
    title: str | None = None
    genre: str | None = None
    bpm: int | None = None
    year: int | None = None
    mix: str | None = None
    editor: str | None = None
    advisory: str | None = None
    length_s: int | None = None
    size_bytes: int | None = None
    audio: bool | None = None
    video: bool | None = None
    quality: str | None = None
    date: str | None = None  # YYYY-MM-DD, the pool's publish date
    source: str | None = None
    downloaded: bool | None = None
    #: Every field the pool sent, as sent, so nothing documented is lost.
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.pool}:{self.id}"


@dataclass(frozen=True, slots=True)
class CatalogPage:
    """One page of a pool's catalog as the adapter read it."""

    tracks: Sequence[Track]  # a list, or `TrackRows` from a page decoder
    page: int
    pages: int
    total: int
    #: Ids of records skipped as unreadable (docs/reliability.md M3); "" when a record had no usable
    #: id. They are still in the pool, so a full pass must not mark them removed.
    quarantined: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One entry of a pool's remote download queue."""

    pool: str
    item_id: str
    kind: str = "track"
    queue_id: str | None = None
    queued_at: str | None = None
    track: Track | None = None
    #: Adapter-owned per-item data worth keeping (a per-track token and when it was seen).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request for a download (refs.py makes these from text)."""

    pool: str
    item_id: str | None
    kind: str = "track"
    redownload: bool = False
    reason: str | None = None

    @property
    def ref(self) -> str:
        if self.kind == "track":
            return f"{self.pool}:{self.item_id}"
        if self.item_id is None:
            return f"{self.pool}:{self.kind}"
        return f"{self.pool}:{self.kind}:{self.item_id}"


@dataclass(frozen=True, slots=True)
class Source:
    """One place a part can be fetched from. `server` names it in messages and health."""

    url: str
    server: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanPart:
    """One file of a download, with its candidate sources (a Harvest ZIP part, or the track)."""

    key: str  # stable across renewals: "1", "2", … or "main"
    sources: list[Source]
    expected_size: int | None = None
    extension: str | None = None
    #: Unix time the sources' token stops working, when the pool says.
    expires_at: float | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """What to fetch for one job. Resume state is keyed by (pool, item, format, part key)."""

    pool: str
    item_id: str
    kind: str
    format: str
    parts: list[PlanPart]
    #: Metadata for the file template and tags (artist, title, genre, mix, bpm, year, …).
    meta: dict[str, Any] = field(default_factory=dict)
    #: The parts are ZIPs to extract (Harvest) rather than one media file.
    archive: bool = False
    #: Name of the download folder for archives (`download_dir/<pool>/<name>/`).
    name: str | None = None
    #: Adapter-private data it needs back later (Promo Only's dl_token and server id).
    context: dict[str, Any] = field(default_factory=dict)
    #: The pool delivered by e-mail instead (Harvest `RequestSent = true`): nothing to fetch.
    sent_by_email: bool = False


@dataclass(frozen=True, slots=True)
class OutboxCall:
    """A call owed to a pool, kept until acknowledged (Promo Only's download/success)."""

    pool: str
    action: str
    payload: dict[str, Any]
