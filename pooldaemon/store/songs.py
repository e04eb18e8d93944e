"""Songs and versions of mirrored tracks and library entries (docs/songs.md).

`library_songs` is the one answer to "is this song+version already in the library?" for
rules (docs/interface.md §7, §8): entries downloaded, adopted or deleted by the user count.
Library entries do not carry their song key yet, so it is computed here from the mirrored
track with `songkey.parse`; the day the library stores it in columns, only this function
changes.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pooldaemon.songkey import Parsed, parse
from pooldaemon.store.db import Store

#: Library entry states that mean "the user has this song+version, or chose to be rid of it".
HELD_STATES = ("downloaded", "adopted", "deleted")


def track_song(track: Mapping[str, Any]) -> Parsed:
    """Song, key and version of a track as `track_dict` (or a library join) gives it."""
    return parse(
        track.get("artist") or "",
        track.get("title") or "",
        mix=track.get("mix"),
        advisory=track.get("advisory"),
        media="video" if track.get("video") else None,
        quality=track.get("quality"),
    )


@dataclass(frozen=True, slots=True)
class Held:
    """One library entry of a song: its version, length, state and where it is."""

    ref: str
    version: str
    length_s: int | None
    state: str
    path: str


_HELD_SQL = (
    "SELECT l.pool, l.item_id, l.path, l.state, t.artist, t.title, t.mix, t.advisory, "
    "t.video, t.quality, t.length_s FROM library l JOIN tracks t "
    "ON t.pool = l.pool AND t.id = l.item_id "
    f"WHERE l.kind = 'track' AND l.state IN ({','.join('?' * len(HELD_STATES))}) ORDER BY l.id"
)
_SIGNATURE_SQL = "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(MAX(updated), 0) FROM library"
#: Per store: (signature of the library table, song key → entries), rebuilt when it changes.
_CACHE: weakref.WeakKeyDictionary[Store, tuple[tuple[Any, ...], dict[str, list[Held]]]] = (
    weakref.WeakKeyDictionary()
)


async def library_songs(store: Store, song_keys: Collection[str]) -> dict[str, list[Held]]:
    """What the library holds of these songs (downloaded, adopted or deleted), by song key."""
    if not song_keys:
        return {}
    signature = tuple(await store.fetchone(_SIGNATURE_SQL))
    cached = _CACHE.get(store)
    if cached is None or cached[0] != signature:
        by_key: dict[str, list[Held]] = {}
        for row in await store.fetchall(_HELD_SQL, HELD_STATES):
            entry = dict(row)
            song = track_song(entry)
            by_key.setdefault(song.key, []).append(
                Held(
                    ref=f"{entry['pool']}:{entry['item_id']}",
                    version=song.version.label,
                    length_s=entry["length_s"],
                    state=str(entry["state"]),
                    path=str(entry["path"]),
                )
            )
        cached = (signature, by_key)
        _CACHE[store] = cached
    return {key: cached[1][key] for key in song_keys if key in cached[1]}
