"""A deterministic, lazily generated CrateQ-style music catalog: the simulator's truth.

Records are computed from (seed, index) on demand, so 174,420 of them cost a list of ids; only
what a page or a filter touches is built. Tests read the truth as plain dicts and mutate it
(update / remove / add) to drive incremental syncs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pooldaemon.sim.catalog_names import EDITORS, SPECIAL, artist_name, title_name
from pooldaemon.sim.catalog_query import (
    FILTER_PARAMS,
    SORT_FIELDS,
    Record,
    record_filter,
    sorted_ids,
)
from pooldaemon.sim.media import min_size

__all__ = [
    "FIELDS",
    "GENRES",
    "GENRE_CATEGORIES",
    "MIXES",
    "SOURCES",
    "VIDEO_QUALITIES",
    "Catalog",
    "format_size",
]

_M64 = (1 << 64) - 1

# The keys of a truth record, in order.
FIELDS: tuple[str, ...] = (
    "mediaId",
    "artist",
    "title",
    "genre",
    "genreId",
    "category",
    "categoryId",
    "bpm",
    "length",
    "size",
    "sizeBytes",
    "tool",
    "editor",
    "advisory",
    "releaseYear",
    "quality",
    "qualityId",
    "preview",
    "date",
    "audio",
    "video",
    "source",
    "img",
    "groupId",
    "originatorId",
    "kind",
    "updated",
)

GENRE_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "Country"),
    (2, "EDM"),
    (3, "Hip Hop / Urban"),
    (4, "Holiday"),
    (5, "Latin"),
    (6, "Pop"),
    (7, "Rock"),
    (8, "R&B / Soul"),
    (9, "Reggae / Caribbean"),
    (10, "Old School"),
    (11, "Transitions"),
    (12, "Other"),
)
_CATEGORY_TITLE = dict(GENRE_CATEGORIES)

# (genreId, title, categoryId, weight, bpm low, bpm high); ids are sparse as in
# docs/pools/crateq.md.
_GENRE_TABLE: tuple[tuple[int, str, int, int, int, int], ...] = (
    (174, "4th of July", 4, 1, 100, 128),
    (167, "Alt Rock", 12, 2, 90, 160),
    (161, "Classic Dance", 2, 3, 118, 132),
    (101, "Hip-Hop", 3, 12, 80, 100),
    (102, "Hip-Hop > East", 3, 6, 84, 98),
    (103, "Hip-Hop > West", 3, 5, 88, 104),
    (104, "Hip-Hop > South", 3, 5, 70, 150),
    (105, "Trap", 3, 6, 130, 150),
    (106, "Drill", 3, 3, 138, 146),
    (110, "R&B", 8, 10, 60, 110),
    (111, "Soul", 8, 2, 70, 110),
    (120, "Old School / Classics", 10, 6, 85, 125),
    (121, "Freestyle", 10, 2, 115, 125),
    (122, "Disco", 10, 2, 110, 126),
    (130, "House", 2, 8, 118, 128),
    (131, "Tech House", 2, 3, 122, 128),
    (133, "EDM", 2, 4, 124, 130),
    (134, "Dubstep", 2, 1, 138, 150),
    (135, "Moombahton", 2, 2, 100, 112),
    (140, "Latin", 5, 5, 90, 130),
    (141, "Reggaeton", 5, 8, 88, 100),
    (142, "Bachata", 5, 2, 120, 140),
    (143, "Salsa", 5, 2, 150, 180),
    (145, "Dembow", 5, 2, 110, 125),
    (150, "Pop", 6, 10, 95, 130),
    (151, "Dance Pop", 6, 3, 115, 128),
    (160, "Rock", 7, 3, 100, 160),
    (163, "Country", 1, 3, 70, 140),
    (170, "Reggae", 9, 2, 60, 90),
    (171, "Dancehall", 9, 3, 90, 110),
    (172, "Soca", 9, 1, 150, 165),
    (173, "Afrobeats", 9, 4, 100, 115),
    (175, "Christmas", 4, 1, 70, 130),
    (180, "Transition", 11, 3, 60, 180),
    (190, "Amapiano", 12, 2, 110, 115),
)
GENRES: tuple[tuple[int, str, int], ...] = tuple(
    (genre_id, title, category_id) for genre_id, title, category_id, *_ in _GENRE_TABLE
)

# (qualityId, title, pixel_width, pixel_height), docs/pools/crateq.md "Video Resolutions".
VIDEO_QUALITIES: tuple[tuple[int, str, int, int], ...] = (
    (0, "SD", 640, 360),
    (1, "qHD 540", 960, 540),
    (2, "HD 720", 1280, 720),
    (3, "Full HD 1080", 1920, 1080),
)
_QUALITY_SHORT = {"SD": "SD", "qHD 540": "qHD", "HD 720": "HD", "Full HD 1080": "FHD", "": "HD"}

# docs/pools/crateq.md's Tools / Mixes list, plus the two tools its example records use.
MIXES: tuple[str, ...] = (
    "Acapella",
    "Acapella In",
    "Acapella Out",
    "Club",
    "Extended",
    "Instrumental",
    "Intro",
    "Loop",
    "Remix",
    "Short Edit",
    "Single",
    "Transition",
    "Xtendz",
    "DMS",
)
_MIX_WEIGHTS = (2, 1, 1, 3, 4, 3, 6, 1, 3, 2, 3, 2, 2, 2)
_MIX_TAG = {
    "Acapella": "Acc",
    "Acapella In": "Acc In",
    "Acapella Out": "Acc Out",
    "Club": "Club Mix",
    "Extended": "Extended",
    "Instrumental": "Inst",
    "Intro": "Intro",
    "Loop": "Loop",
    "Remix": "Remix",
    "Short Edit": "Short Edit",
    "Single": "",
    "Transition": "",
    "Xtendz": "Xtendz",
    "DMS": "DMS Edit",
}
SOURCES: tuple[str, ...] = ("smashvidz", "lnrp", "dms")
_SOURCE_ABBREV = {"smashvidz": "SZ", "lnrp": "LN", "dms": "DMS"}


def _mix64(value: int) -> int:
    # splitmix64: cheap, well-spread bits per index (no Random object per record).
    value = (value + 0x9E3779B97F4A7C15) & _M64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _M64
    return value ^ (value >> 31)


_GENRE_PICK = tuple(row for row in _GENRE_TABLE for _ in range(row[3]))
_MIX_PICK = tuple(
    mix for mix, weight in zip(MIXES, _MIX_WEIGHTS, strict=True) for _ in range(weight)
)


def format_size(size_bytes: int) -> str:
    """docs/pools/crateq.md's size text: MiB with two decimals, e.g. "75.26 MB"."""
    return f"{size_bytes / 1048576:.2f} MB"


class Catalog:
    """The truth: every record as a plain dict, generated from (seed, index) on demand."""

    ID_BASE = 100_000

    def __init__(
        self,
        n: int,
        seed: str = "demo",
        *,
        clock: Callable[[], float] = time.time,
        anchor: date | None = None,
        size_range: tuple[int, int] = (64 * 1024, 512 * 1024),
        per_day: int = 48,
        base_url: str = "https://api.crateq.com/api",
    ) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        low, high = size_range
        if low > high or low < min_size("mp4") or low < min_size("mp3"):
            raise ValueError(f"size_range must be ordered and at least {min_size('mp3')} bytes")
        self.seed = seed
        self.clock = clock
        self.size_range = size_range
        self.per_day = per_day
        self.base_url = base_url  # preview URLs start with it; the simulator sets its own
        self.anchor = anchor or datetime.fromtimestamp(clock(), UTC).date()
        self.version = 0  # bumped by every mutation
        self._n0 = n
        self._count = n  # indices generated so far; added records continue the sequence
        digest = hashlib.sha256(f"crateq-catalog:{seed}".encode()).digest()
        self._song_seed = int.from_bytes(digest[:8], "big")
        self._rec_seed = int.from_bytes(digest[8:16], "big")
        self._jitter = digest[16] % 3
        self._live: list[int] = [self._id_of(i) for i in range(n)]
        self._removed: set[int] = set()
        self._overrides: dict[int, dict[str, Any]] = {}
        self._updated: dict[int, float] = {}
        self._dates_by_id = True  # "date" order equals id order until a date is overridden
        self._day_text: dict[int, str] = {}
        self._cache: dict[tuple[Any, ...], list[int]] = {}
        self._songs: dict[int, tuple[int, str, str]] = {}
        self._revisions: dict[int, int] = {}

    # -- ids -------------------------------------------------------------------------------------

    def _id_of(self, index: int) -> int:
        # Sparse but increasing ids, like docs/pools/crateq.md's 570291, 570722.
        return self.ID_BASE + 3 * index + (index * 7 + self._jitter) % 3

    def _index_of(self, media_id: int) -> int | None:
        index = (media_id - self.ID_BASE) // 3
        if 0 <= index < self._count and self._id_of(index) == media_id:
            return index
        return None

    def by_originator(self, originator_id: int) -> int | None:
        """The mediaId of a live record with this originatorId (the source pool's own id)."""
        index = originator_id - 30_000
        if 0 <= index < self._count:
            media_id = self._id_of(index)
            if media_id in self:
                return media_id
        return None

    def ids(self) -> list[int]:
        """Live media ids, ascending (= oldest first)."""
        return list(self._live)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, media_id: object) -> bool:
        return (
            isinstance(media_id, int)
            and media_id not in self._removed
            and self._index_of(media_id) is not None
        )

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    # -- records ---------------------------------------------------------------------------------

    def today(self) -> date:
        """The clock's current UTC date."""
        return datetime.fromtimestamp(self.clock(), UTC).date()

    def _day_string(self, offset: int) -> str:
        text = self._day_text.get(offset)
        if text is None:
            text = (self.anchor - timedelta(days=offset)).isoformat()
            self._day_text[offset] = text
        return text

    def _song(self, song: int) -> tuple[int, str, str]:
        # Versions of a song sit next to each other, so a small cache saves most of this work.
        cached = self._songs.get(song)
        if cached is None:
            h1 = _mix64(self._song_seed ^ song)
            if song % 17 == 2:
                artist, base_title = SPECIAL[(song // 17) % len(SPECIAL)]
            else:
                artist, base_title = artist_name(h1 >> 8), title_name(h1 >> 36)
            if len(self._songs) >= 4096:
                self._songs.clear()
            cached = self._songs[song] = (h1, artist, base_title)
        return cached

    def _row(self, index: int) -> tuple[Any, ...]:
        """A generated record's values in FIELDS order."""
        song = index // 3  # three versions (mixes, edits) per song share a groupId
        h1, artist, base_title = self._song(song)
        h2 = _mix64(self._rec_seed ^ index)
        h3 = _mix64(h2)
        genre_id, genre, category_id, _, bpm_low, bpm_high = _GENRE_PICK[h1 % len(_GENRE_PICK)]
        day = self._day_string(max(0, (self._n0 - 1 - index) // self.per_day))
        year = int(day[:4])
        if category_id == 10:
            release_year = min(year, 1970 + (h1 >> 20) % 36)
        else:
            release_year = max(1970, year - (0, 0, 0, 0, 1, 1, 2, 3, 5, 8)[(h1 >> 24) % 10])
        video = h2 % 10 < 3
        tool = _MIX_PICK[(h2 >> 4) % len(_MIX_PICK)]
        advisory = "Dirty" if (h2 >> 12) & 1 else "Clean"
        bpm = bpm_low + (h1 >> 48) % (bpm_high - bpm_low + 1)
        quality_id: int | None = None
        quality = ""
        if video:
            source = "smashvidz" if (h2 >> 13) % 10 < 7 else "dms"
            quality_id = (h2 >> 17) % 4
            # docs/pools/crateq.md's second example: a video whose quality is "".
            quality = VIDEO_QUALITIES[quality_id][1] if (h2 >> 19) % 20 else ""
        else:
            source = "lnrp" if (h2 >> 13) % 10 < 7 else "dms"
        tag = _MIX_TAG[tool]
        if tool == "Transition":
            tag = f"{bpm_low + h3 % 30}-{bpm}"
        if video:
            title = f"{base_title} [{tag or 'Video'}] - {_QUALITY_SHORT[quality]} - {advisory}"
        else:
            title = f"{base_title} [{advisory} {tag}]" if tag else f"{base_title} [{advisory}]"
        seconds = 120 + (h1 >> 40) % 210 + (60 if tool in ("Extended", "Xtendz", "Club") else 0)
        if tool in ("Short Edit", "Loop", "Acapella In", "Acapella Out"):
            seconds = max(30, seconds - 90)
        minutes, secs = divmod(seconds, 60)
        # docs/pools/crateq.md shows both "03:38" and "2:18".
        length = f"{minutes}:{secs:02d}" if source == "lnrp" else f"{minutes:02d}:{secs:02d}"
        low, high = self.size_range
        size_bytes = low + (h3 >> 8) % (high - low + 1)
        originator_id = 30_000 + index
        img = ""
        if video:
            flag = "CN" if advisory == "Clean" else "DY"
            img = (
                f"/images/SV_{originator_id}_{_SOURCE_ABBREV[source]}_{flag}_"
                f"{_QUALITY_SHORT[quality]}_pv.jpg"
            )
        minute = index % self.per_day
        token = (h3 >> 4) % 10**16
        return (
            self._id_of(index),
            artist,
            title,
            genre,
            genre_id,
            _CATEGORY_TITLE[category_id],
            category_id,
            bpm,
            length,
            format_size(size_bytes),
            size_bytes,
            tool,
            EDITORS[(h3 >> 40) % len(EDITORS)] if (h3 >> 36) % 2 else "",
            advisory,
            release_year,
            quality,
            quality_id,
            f"{self.base_url}/Content/Preview/{140_000 + index}?token={token:016d}",
            day,
            True,
            video,
            source,
            img,
            30_000 + song,
            originator_id,
            "mp4" if video else "mp3",
            f"{day}T{minute // 60:02d}:{minute % 60:02d}",
        )

    def get(self, media_id: int) -> Record | None:
        """A fresh dict for a live record; None when unknown or removed."""
        if media_id in self._removed:
            return None
        index = self._index_of(media_id)
        if index is None:
            return None
        record = dict(zip(FIELDS, self._row(index), strict=True))
        changes = self._overrides.get(media_id)
        if changes:
            record.update(changes)
        return record

    def row(self, media_id: int) -> tuple[Any, ...] | None:
        """A live record's values in FIELDS order (no dict: the fast path for rendering)."""
        if media_id in self._removed:
            return None
        index = self._index_of(media_id)
        if index is None:
            return None
        if media_id in self._overrides:
            record = self.get(media_id)
            assert record is not None
            return tuple(record[name] for name in FIELDS)
        return self._row(index)

    def __getitem__(self, media_id: int) -> Record:
        record = self.get(media_id)
        if record is None:
            raise KeyError(media_id)
        return record

    def records(self) -> Iterator[Record]:
        """Every live record, oldest first."""
        for media_id in list(self._live):
            record = self.get(media_id)
            if record is not None:
                yield record

    def revision(self, media_id: int) -> int:
        """How many times the record was changed (0: as generated); for render caches."""
        return self._revisions.get(media_id, 0)

    def updated_at(self, media_id: int) -> float:
        """When the record last changed (epoch seconds; its publish time if never changed)."""
        if media_id in self._updated:
            return self._updated[media_id]
        stamp = datetime.fromisoformat(self[media_id]["updated"]).replace(tzinfo=UTC)
        return stamp.timestamp()

    # -- mutation (incremental-sync tests) -------------------------------------------------------

    def _touch(self, media_id: int, changes: Mapping[str, Any]) -> None:
        now = self.clock()
        merged = self._overrides.setdefault(media_id, {})
        merged.update(changes)
        if "sizeBytes" in changes and "size" not in changes:
            merged["size"] = format_size(int(changes["sizeBytes"]))
        merged["updated"] = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M")
        self._updated[media_id] = now
        self._revisions[media_id] = self._revisions.get(media_id, 0) + 1

    def update(self, ids: Iterable[int], **changes: Any) -> None:
        """Change fields of live records; each one's updated time becomes the clock's now."""
        if "mediaId" in changes:
            raise ValueError("mediaId cannot change")
        for media_id in list(ids):
            if media_id not in self:
                raise KeyError(media_id)
            self._touch(media_id, changes)
        if "date" in changes:
            self._dates_by_id = False
        self.version += 1

    def set_size(self, media_id: int, size_bytes: int) -> None:
        """Set a record's byte size (and "size" text) without counting it as an update."""
        if media_id not in self:
            raise KeyError(media_id)
        merged = self._overrides.setdefault(media_id, {})
        merged["sizeBytes"] = size_bytes
        merged["size"] = format_size(size_bytes)
        self._revisions[media_id] = self._revisions.get(media_id, 0) + 1
        self.version += 1

    def remove(self, ids: Iterable[int]) -> None:
        """Delete records: the API stops listing them."""
        gone = {media_id for media_id in ids if media_id in self}
        self._removed |= gone
        self._live = [media_id for media_id in self._live if media_id not in gone]
        self.version += 1

    def add(self, n: int, **fields: Any) -> list[int]:
        """Publish `n` new records dated today (by the clock); returns their ids."""
        today = self.today().isoformat()
        added = []
        for _ in range(n):
            media_id = self._id_of(self._count)
            self._count += 1
            self._live.append(media_id)
            self._touch(media_id, {"date": today, **fields})
            added.append(media_id)
        # The newest records get the highest ids, so id order still equals date order.
        if "date" in fields:
            self._dates_by_id = False
        self.version += 1
        return added

    # -- queries (docs/pools/crateq.md "Music Catalog" filters)
    # ----------------------------------------------

    def select(
        self, filters: Mapping[str, str], sort: str = "date", direction: str = "desc"
    ) -> list[int]:
        """Ids matching docs/pools/crateq.md's filters, sorted (ties by mediaId); ValueError(param)
        if bad.

        Text filters are case- and accent-insensitive substrings; `days=N` keeps records whose
        updated day is on or after today - N (by the clock). Unknown parameters are ignored."""
        wanted = {k: v for k, v in filters.items() if k in FILTER_PARAMS and v.strip()}
        field = SORT_FIELDS.get(sort.strip().lower() or "date")
        if field is None:
            raise ValueError("sort")
        descending = direction.strip().lower() != "asc"
        today = self.today()
        cache_key = (tuple(sorted(wanted.items())), field, descending, self.version, today)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        days = wanted.pop("days", None)
        candidates = self._live if days is None else self._window(days, today)
        predicate = record_filter(wanted)
        if predicate is None and field in ("date", "mediaId") and self._dates_by_id:
            result = candidates[::-1] if descending else list(candidates)
        else:
            records = [record for record in map(self.get, candidates) if record is not None]
            if predicate is not None:
                records = [record for record in records if predicate(record)]
            if field == "date":
                records.sort(key=lambda r: (r["date"], r["mediaId"]), reverse=descending)
                result = [record["mediaId"] for record in records]
            else:
                result = sorted_ids(records, field, descending)
        if len(self._cache) >= 16:
            self._cache.pop(next(iter(self._cache)))
        self._cache[cache_key] = result
        return result

    def _window(self, days_text: str, today: date) -> list[int]:
        try:
            days = int(days_text)
        except ValueError:
            raise ValueError("days") from None
        cutoff = today - timedelta(days=days)
        cutoff_ts = datetime.combine(cutoff, datetime.min.time(), UTC).timestamp()
        touched = {media_id for media_id, at in self._updated.items() if at >= cutoff_ts}
        # Untouched records: publish days fall by one every `per_day` indices.
        span = (self.anchor - cutoff).days
        first_index = self._n0 - (span + 1) * self.per_day if span >= 0 else self._n0
        first_id = self._id_of(max(0, first_index)) if first_index < self._n0 else None
        return [
            media_id
            for media_id in self._live
            if media_id in touched
            or (first_id is not None and first_id <= media_id and media_id not in self._updated)
        ]
