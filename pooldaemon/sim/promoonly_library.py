"""The simulated Promo Only distribution: its tracks, generated from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pooldaemon.sim.media import min_size

__all__ = ["SimTrack", "make_track"]

_ARTISTS = (
    "Dua Lipa",
    "The Weeknd",
    "Calvin Harris",
    "Doja Cat",
    "Fred again..",
    "Bad Bunny",
    "Tiësto",
    "Beyoncé",
)
_TITLES = (
    "Houdini",
    "Blinding Lights",
    "Feel So Close",
    "Paint The Town Red",
    "Delilah",
    "Tití Me Preguntó",
    "The Business",
    "Texas Hold 'Em",
)
_GENRES = ("Pop", "Dance", "Hip Hop", "Latin", "House", "R&B")
_MIXES = ("Clean", "Dirty", "Extended Mix", "Intro - Clean", "Quick Hit", "Original Mix")
_LABELS = ("Warner", "Republic", "Columbia", "Atlantic", "Interscope")


@dataclass(frozen=True)
class SimTrack:
    """One track of the account's distribution; `kind` is the media served ("mp3" / "mp4")."""

    trackid: int
    titleid: int
    releaseid: int
    artist: str
    title: str
    genre: str
    bpm: int
    mix: str
    label: str
    file_type: str
    kind: str
    duration: int
    explicit: int
    release_name: str
    release_year: int
    modified: int
    size: int

    def fields(self) -> dict[str, Any]:
        """The track's part of a docs/pools/promoonly.md §2 answer (no Result, dl_token, queueid or
        servers)."""
        video = self.kind == "mp4"
        return {
            "artist": self.artist,
            "bpm": self.bpm,
            "content_warn": "True" if self.explicit else "False",  # docs/pools/promoonly.md §2: a
            # string
            "duration": self.duration,
            "end": "Cold",
            "explicit": self.explicit,
            "file_type": self.file_type,
            "genre": self.genre,
            "label": self.label,
            "media_type": 1 if video else 2,
            "mix": self.mix,
            "modified": self.modified,
            "release_image": "https://pomed.promoonly.com/issue_imgs/hits_hd_web.jpg",
            "release_name": self.release_name,
            "release_year": self.release_year,
            "releaseid": self.releaseid,
            "title": self.title,
            "titleid": self.titleid,
            "trackid": self.trackid,
        }


def make_track(index: int, rng: random.Random, media_size: int) -> SimTrack:
    """Track number `index` of the distribution; track 0 is docs/pools/promoonly.md's example."""
    if index == 0:
        # docs/pools/promoonly.md §2's example track.
        kind, size = "mp4", media_size
        return SimTrack(
            trackid=374210,
            titleid=627199,
            releaseid=56320,
            artist="Rage Against The Machine",
            title="Sleep Now In The Fire",
            genre="Rock",
            bpm=134,
            mix="From The Battle Of Mexico City",
            label="Epic",
            file_type="720 mp4",
            kind=kind,
            duration=215,
            explicit=0,
            release_name="Hits HD (4-16-2020)",
            release_year=2020,
            modified=1586170938,
            size=max(size, min_size(kind)),
        )
    kind = "mp3" if index % 2 else "mp4"
    size = max(media_size + rng.randrange(0, 4096), min_size(kind))
    return SimTrack(
        trackid=374210 + index,
        titleid=627199 + index,
        releaseid=56320 + index // 3,
        artist=_ARTISTS[index % len(_ARTISTS)],
        title=_TITLES[(index * 3) % len(_TITLES)],
        genre=_GENRES[index % len(_GENRES)],
        bpm=rng.randrange(90, 132),
        mix=_MIXES[index % len(_MIXES)],
        label=_LABELS[index % len(_LABELS)],
        file_type="mp3 320" if kind == "mp3" else "720 mp4",
        kind=kind,
        duration=rng.randrange(150, 330),
        explicit=int(index % 3 == 0),
        release_name=f"Club Tools ({index}-16-2020)" if kind == "mp3" else "Hits HD (4-16-2020)",
        release_year=2020 + index % 5,
        modified=1586170938 + index * 86400,
        size=size,
    )
