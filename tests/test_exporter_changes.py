"""An export after files were added writes the bytes a full export from scratch writes.

Each case exports, changes the library, exports again (with only files added, the exporter
splices the files written last instead of reading the whole library), then exports the same
library from scratch with a second exporter that has never seen it, after removing every file
and record: the two must agree byte for byte in all four formats. Other changes (a removal, a
tag changed by the pool) must still give a full export's bytes.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pyrekordbox.rbxml import RekordboxXml

from pooldaemon.config import ExportsConfig
from pooldaemon.errors import ExportError
from pooldaemon.events import EventBus
from pooldaemon.exporter import Exporter
from pooldaemon.store import Store
from tests.test_exporter import DAY, Library

# Names with the characters XML, URLs and M3U8 treat specially, non-Latin letters and emoji.
NAMES = ("a & b <c>.mp3", 'q "uote" 100% #1.mp3', "Ünïcødé 初恋 🎧.flac", "plain.mp3")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def library(tmp_path: Path) -> AsyncIterator[Library]:
    store = await Store.open(tmp_path / "state" / "state.db")
    try:
        yield Library(store, tmp_path / "library")
    finally:
        await store.close()


def _config(library: Library) -> ExportsConfig:
    out = library.root.parent / "out"
    return ExportsConfig.model_validate(
        {
            "m3u8_dir": str(library.root / "Playlists"),
            "rekordbox_xml": str(out / "rekordbox.xml"),
            "traktor_nml": str(out / "collection.nml"),
            "serato_dir": str(out / "_Serato_"),
        }
    )


def _outputs(library: Library) -> dict[str, bytes]:
    found = {}
    for folder in (library.root / "Playlists", library.root.parent / "out"):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                found[str(path.relative_to(library.root.parent))] = path.read_bytes()
    return found


async def _from_scratch(library: Library, clock: Clock) -> dict[str, bytes]:
    """What a first export of the library as it is now writes."""
    shutil.rmtree(library.root / "Playlists", ignore_errors=True)
    shutil.rmtree(library.root.parent / "out", ignore_errors=True)
    await library.store.execute("DELETE FROM export_files")
    fresh = Exporter(library.store, _config(library), library.root, EventBus(), clock=clock)
    await fresh.start()
    try:
        await fresh.export_now()
    finally:
        await fresh.stop()
    return _outputs(library)


async def _seed(library: Library) -> None:
    for n, name in enumerate(NAMES):
        await library.add(f"old {name}", origin="rule:deep-house", age_days=n * 3)
    await library.add("promo.mp3", pool="promoonly", age_days=10)


async def _again(
    library: Library, *changes: object, added_only: bool, later_days: float = 0.0
) -> None:
    """Export, then for each change: make it, let `later_days` pass, export; then compare."""
    clock = Clock(time.time())
    exporter = Exporter(library.store, _config(library), library.root, EventBus(), clock=clock)
    await exporter.start()
    try:
        await exporter.export_now()
        assert not exporter.added_only
        for change in changes:
            await change  # type: ignore[misc]
            clock.now += later_days * DAY
            await exporter.export_now()
            assert exporter.added_only == added_only
        spliced = _outputs(library)
    finally:
        await exporter.stop()
    assert spliced == await _from_scratch(library, clock)


async def _add_files(library: Library) -> None:
    for name in NAMES:
        await library.add(f"new {name}", origin="rule:Brand New", age_days=0.5)
    await library.add("harvest one.mp3", pool="harvest")  # a pool with no playlist yet
    await library.add("cq.mp3")


async def test_files_added_give_a_full_exports_bytes(library: Library) -> None:
    await _seed(library)
    await _again(library, _add_files(library), added_only=True)
    # An independent reader takes the spliced collection: every playlist key is a track.
    xml = RekordboxXml(library.root.parent / "out" / "rekordbox.xml")
    assert len(xml.get_tracks()) == len(NAMES) * 2 + 3


async def test_members_aging_out_of_new_this_week_give_a_full_exports_bytes(
    library: Library,
) -> None:
    # Files 0, 3, 6 and 9 days old, and four of 6.9 to 3.9 days: each round, half a day
    # later, may take some out from between others, and the next splices what the last left.
    await _seed(library)
    for n in range(4):
        await library.add(f"almost a week {n}.mp3", age_days=6.9 - n)

    async def add(name: str) -> None:
        await library.add(name, origin="rule:Brand New", age_days=0.5)

    rounds = [_add_files(library), add("one.mp3"), add("two.mp3"), add("three.mp3")]
    await _again(library, *rounds, added_only=True, later_days=0.5)
    text = (library.root / "Playlists" / "New this week.m3u8").read_text(encoding="utf-8")
    assert "almost a week 1" not in text and "almost a week 2" in text and "three" in text


async def test_an_entry_for_a_file_listed_already_gives_a_full_exports_bytes(
    library: Library,
) -> None:
    await _seed(library)
    # An adopted entry for a downloaded file's path: the older entry keeps it.
    await _again(
        library, library.add("old plain.mp3", state="adopted", age_days=0.1), added_only=False
    )


async def test_nothing_new_leaves_every_file_alone(library: Library) -> None:
    await _seed(library)

    async def nothing() -> None:
        return None

    await _again(library, nothing(), added_only=True)


async def test_a_removed_file_gives_a_full_exports_bytes(library: Library) -> None:
    await _seed(library)
    await _again(
        library,
        library.set_state(library.root / "crateq" / "old plain.mp3", "deleted"),
        added_only=False,
    )


async def _mirror(library: Library, item_id: str) -> None:
    """The pool's catalog gains the track (its word index rebuilt, as a sync keeps it)."""
    await library.store.execute(
        "INSERT INTO tracks (pool, id, artist, title, first_seen, last_seen) "
        "VALUES ('crateq', ?, 'Pool Artist', 'Pool Title', 0, 0)",
        (item_id,),
    )
    await library.store.execute("INSERT INTO tracks_fts (tracks_fts) VALUES ('rebuild')")


async def test_a_tag_the_pool_changed_gives_a_full_exports_bytes(library: Library) -> None:
    await _seed(library)
    path = library.root / "crateq" / "old plain.mp3"
    row = await library.store.fetchone("SELECT item_id FROM library WHERE path = ?", (str(path),))
    await _mirror(library, row["item_id"])

    async def retitle() -> None:
        await library.store.execute(
            "UPDATE tracks SET title = 'New & <Title>' WHERE pool = 'crateq' AND id = ?",
            (row["item_id"],),
        )

    await _again(library, retitle(), added_only=False)


async def test_a_track_joining_the_mirror_gives_a_full_exports_bytes(library: Library) -> None:
    await _seed(library)
    path = library.root / "crateq" / "old plain.mp3"
    row = await library.store.fetchone("SELECT item_id FROM library WHERE path = ?", (str(path),))

    await _again(library, _mirror(library, row["item_id"]), added_only=False)


async def test_a_playlist_the_user_edited_stays_and_the_rest_is_still_exact(
    library: Library,
) -> None:
    await _seed(library)
    edited = library.root / "Playlists" / "Rules - deep-house.m3u8"

    async def edit_and_add() -> None:
        edited.write_text(edited.read_text(encoding="utf-8") + "# mine\n", encoding="utf-8")
        await library.add("new.mp3", origin="rule:deep-house")

    clock = Clock(time.time())
    exporter = Exporter(library.store, _config(library), library.root, EventBus(), clock=clock)
    await exporter.start()
    try:
        await exporter.export_now()
        await edit_and_add()
        await exporter.export_now()
        assert not exporter.added_only  # a file is not as written: only a full export can tell
        assert edited.read_text(encoding="utf-8").endswith("# mine\n")
        beside = edited.with_name("Rules - deep-house (pooldaemon).m3u8")
        ours = beside.read_bytes()
        await library.add("newer.mp3", pool="promoonly")
        await exporter.export_now()
        assert not exporter.added_only  # ours is beside the user's: looked at again
        assert beside.read_bytes() == ours  # promoonly's file changed, not this one
    finally:
        await exporter.stop()


async def test_a_collection_gone_midway_keeps_what_was_spliced_as_ours(library: Library) -> None:
    """The playlists are spliced before the collections; when a collection's folder is gone by
    then, the playlists written are recorded (not taken for the user's later), and the full
    export that follows names the folder."""
    await _seed(library)
    out = library.root.parent / "out"
    clock = Clock(time.time())
    exporter = Exporter(library.store, _config(library), library.root, EventBus(), clock=clock)
    await exporter.start()
    try:
        await exporter.export_now()
        await library.add("new.mp3", origin="rule:deep-house")
        moved = out.rename(library.root.parent / "elsewhere")
        out.write_text("a file where the folder was")
        with pytest.raises(ExportError, match="out"):
            await exporter.export_now()
        out.unlink()
        moved.rename(out)
        await exporter.export_now()
        spliced = _outputs(library)
    finally:
        await exporter.stop()
    assert not [name for name in spliced if "(pooldaemon)" in name]
    assert spliced == await _from_scratch(library, clock)
