"""The library's own schedule: `audit_interval` as a scheduler job, `adopt_dirs` at start-up and
with every audit (docs/interface.md §8). Nothing sleeps: jobs are read and called directly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from mutagen.id3 import ID3, TIT2, TPE1

from pooldaemon.events import EventBus
from pooldaemon.library import files as library_files
from pooldaemon.library.keeper import Library
from pooldaemon.library_config import LibraryConfig
from pooldaemon.models import Request, Track
from pooldaemon.scheduler import PoolScheduler
from pooldaemon.sim.media import write_media
from pooldaemon.store import Store, catalog
from pooldaemon.store import library as store_library


async def no_submit(request: Request, origin: str, **_: Any) -> dict[str, Any]:
    raise AssertionError("nothing is downloaded here")


async def test_the_audit_runs_every_audit_interval_and_never_with_zero(store: Store) -> None:
    library = Library(store, LibraryConfig(), EventBus(), no_submit)
    scheduler = PoolScheduler()
    scheduler.add_library_audit(library.scheduled_audit, 6 * 3600)
    (job,) = scheduler.get_jobs()
    assert job.id == "library:audit"
    assert isinstance(job.trigger, IntervalTrigger)
    assert job.trigger.interval.total_seconds() == 6 * 3600
    assert job.max_instances == 1 and job.coalesce
    off = PoolScheduler()
    off.add_library_audit(library.scheduled_audit, 0)
    assert off.get_jobs() == []


async def test_adopt_dirs_are_adopted_at_start_and_with_each_audit(
    store: Store, tmp_path: Path
) -> None:
    music = tmp_path / "DJ"
    music.mkdir()
    await catalog.apply_page(
        store,
        "crateq",
        [
            Track("crateq", "1", artist="Dua Lipa", title="Houdini", mix="Extended"),
            Track("crateq", "2", artist="Tate McRae", title="Greedy"),
        ],
        seen_at=1.0,
    )
    first = music / "a.mp3"
    write_media(first, "mp3", "a", 8000)
    tags = ID3(first)
    tags.add(TPE1(text="Dua Lipa"))
    tags.add(TIT2(text="Houdini (Extended Mix)"))
    tags.save(first)
    library = Library(store, LibraryConfig(adopt_dirs=(music,)), EventBus(), no_submit)
    await library.start()
    try:
        async with asyncio.timeout(20):
            while library.last_adopt is None:
                await asyncio.sleep(0.02)
        assert library.last_adopt["matched"] == 1
        # A new file in the folder is adopted by the next scheduled audit.
        write_media(music / "Tate McRae - Greedy.mp3", "mp3", "b", 8000)
        await library.scheduled_audit("quick")
        entries = await store_library.list_entries(store, state="adopted")
        assert sorted(item["ref"] for item in entries["items"]) == ["crateq:1", "crateq:2"]
    finally:
        await library.stop()


async def test_an_album_folder_is_audited_for_presence(store: Store, tmp_path: Path) -> None:
    """A Harvest album is a folder in the library: there, or `deleted`; never "damaged"."""
    album = tmp_path / "harvest" / "Album"
    album.mkdir(parents=True)
    write_media(album / "01.mp3", "mp3", "x", 8000)
    await store.execute(
        "INSERT INTO library (pool, kind, item_id, path, size, sha256, state, created, updated) "
        "VALUES ('harvest', 'album', 'A1', ?, 8000, 'x', 'downloaded', 1, 1)",
        (str(album),),
    )
    library = Library(store, LibraryConfig(), EventBus(), no_submit)
    await library.complete()
    assert await library.audit(full=True) == {"checked": 1, "ok": 1, "deleted": 0, "lost": 0}
    (album / "01.mp3").unlink()
    album.rmdir()
    assert await library.audit() == {"checked": 1, "ok": 0, "deleted": 1, "lost": 0}
    (entry,) = (await store_library.list_entries(store))["items"]
    assert (entry["ref"], entry["state"]) == ("harvest:album:A1", "deleted")


async def test_a_file_saved_during_the_audit_is_judged_next_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DJ software saving the file while the audit reads it: no verdict, no `lost` (L2)."""
    song = tmp_path / "Song.mp3"
    write_media(song, "mp3", "s", 20_000)
    await store.execute(
        "INSERT INTO library (pool, kind, item_id, path, size, sha256, state, created, updated) "
        "VALUES ('crateq', 'track', '1', ?, 20000, 'x', 'downloaded', 1, 1)",
        (str(song),),
    )
    library = Library(store, LibraryConfig(), EventBus(), no_submit)
    await library.complete()
    real = library_files.read_audio

    def saving_meanwhile(fh: Any, size: int, name: str = "") -> Any:
        """The read sees a half-saved file: audio bytes overwritten, then put back."""
        with open(song, "r+b") as other:
            other.seek(size - 100)
            kept = other.read(8)
            other.seek(size - 100)
            other.write(b"\x00" * 8)
            other.flush()
            seen = real(fh, size, name)
            other.seek(size - 100)
            other.write(kept)
        return seen

    monkeypatch.setattr(library_files, "read_audio", saving_meanwhile)
    assert await library.audit(full=True) == {"checked": 1, "ok": 1, "deleted": 0, "lost": 0}
    monkeypatch.setattr(library_files, "read_audio", real)
    assert await library.audit() == {"checked": 1, "ok": 1, "deleted": 0, "lost": 0}
    (entry,) = (await store_library.list_entries(store))["items"]
    assert entry["state"] == "downloaded"
