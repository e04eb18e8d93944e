"""A small library on disk whose names carry every character an export must escape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pooldaemon.exports import ExportTargets, ExportTrack, Playlist, PlaylistKind

# docs/reliability.md E2: `&`, `<`, `"`, `%`, `#`, non-Latin scripts and emoji in paths and names.
TRICKY_NAMES = (
    'R&B <Live> "Quoted" - 100% #1.mp3',
    "Кино - Группа крови.mp3",
    "日本語 - 東京 (Remix).m4a",
    "🔥 Fire 🎧 - Drop.wav",
    "a+b=c;@!$'~ [Clean] (Intro).aiff",
    "literal %20 and %zz - x.mp3",
    "tab\tand  two spaces?.mp3",
)


@dataclass
class Library:
    """Tracks on disk, the playlists over them, and the directories they live in."""

    root: Path  # the download directory
    outside: Path  # a directory that is not under `root`
    tracks: list[ExportTrack]
    playlists: list[Playlist]
    missing: Path  # in a playlist, not in the library


def make_library(base: Path) -> Library:
    """Write the files and describe them as the daemon would."""
    root = base / "Music & Pools" / "library"
    outside = base / "elsewhere ✨"
    tracks: list[ExportTrack] = []
    keys = ("8A", "Am", "F#m", "11B", "Bb", None, "Ebm")
    for i, name in enumerate(TRICKY_NAMES):
        folder = root / ("crateq" if i % 2 == 0 else 'promo "only" & co')
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(b"\0" * (1000 + i))
        stem = path.stem
        tracks.append(
            ExportTrack(
                path=path,
                artist=stem.split(" - ")[0],
                title=stem.split(" - ")[-1] + ' <&> "t" 🎵',
                album=f"Album #{i} & more",
                genre="Hip-Hop & R&B" if i % 2 else "Ελληνικά",
                bpm=90.0 + i * 7.25,
                key=keys[i],
                year=2020 + i,
                label="Label <x>",
                mix="Clean" if i % 3 else "",
                comment=f"pool crateq, ref c-{i}",
                duration_s=180.4 + i,
                size_bytes=path.stat().st_size,
                added=datetime(2026, 12, 1 + i, 10, 0, tzinfo=UTC),
                pool="crateq" if i % 2 == 0 else "promoonly",
                ref=f"crateq:{i}",
            )
        )
    outside.mkdir(parents=True)
    far = outside / "outside & away.mp3"
    far.write_bytes(b"\0" * 500)
    tracks.append(
        ExportTrack(
            path=far,
            artist="Far",
            title="Away",
            size_bytes=500,
            added=datetime(2026, 12, 7, tzinfo=UTC),
        )
    )
    missing = root / "crateq" / "not in the library.mp3"
    paths = [t.path for t in tracks]
    playlists = [
        Playlist("crateq", PlaylistKind.POOL, (*paths[0::2], missing)),
        Playlist('promo "only" & co', PlaylistKind.POOL, tuple(paths[1::2])),
        Playlist("Tech <House> 🔊 #1 100%", PlaylistKind.RULE, tuple(reversed(paths[:4]))),
        Playlist("New this week", PlaylistKind.RECENT, tuple(paths)),
    ]
    return Library(root, outside, tracks, playlists, missing)


def all_targets(base: Path, library: Library, **changes: object) -> ExportTargets:
    """Every format switched on, under `base`."""
    values: dict[str, object] = {
        "m3u8_dir": library.root / "Playlists",
        "m3u8_root": library.root,
        "rekordbox_xml": base / "exports" / "rekordbox.xml",
        "traktor_nml": base / "exports" / "collection.nml",
        "serato_dir": base / "_Serato_",
    }
    values.update(changes)
    return ExportTargets(**values)  # type: ignore[arg-type]
