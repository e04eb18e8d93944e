"""The exporter over a real state database: which playlists, which fields, what goes away.

The files are read back as text (M3U8) and with pyrekordbox; the expected values come from
docs/interface.md §9 and docs/formats.md, not from the exporter.
"""

from __future__ import annotations

import hashlib
import json
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
from pooldaemon.store import exports as store_exports
from pooldaemon.store.exports import ExportRecord

DAY = 24 * 3600.0


class Library:
    """A state database with library entries, and the files they name."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root

    async def add(
        self,
        name: str,
        *,
        pool: str = "crateq",
        origin: str = "auto",
        age_days: float = 0.0,
        meta: dict[str, object] | None = None,
        state: str = "downloaded",
    ) -> Path:
        path = self.root / pool / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"ID3" + name.encode())
        created = time.time() - age_days * DAY
        item = str(abs(hash(name)) % 10**8)
        plan = {"pool": pool, "item_id": item, "archive": False, "meta": meta or {}}
        job = await self.store.execute(
            "INSERT INTO jobs (pool, kind, item_id, ref, origin, title, artist, state, path, "
            "plan, created, updated) VALUES (?, 'track', ?, ?, ?, ?, 'Job Artist', 'done', ?, ?, "
            "?, ?)",
            (
                pool,
                item,
                f"{pool}:{item}",
                origin,
                name,
                str(path),
                json.dumps(plan),
                created,
                created,
            ),
        )
        await self.store.execute(
            "INSERT INTO library (pool, kind, item_id, path, size, sha256, state, job_id, "
            "created, updated) VALUES (?, 'track', ?, ?, ?, '', ?, ?, ?, ?)",
            (pool, item, str(path), path.stat().st_size, state, job, created, created),
        )
        return path

    async def set_state(self, path: Path, state: str) -> None:
        await self.store.execute("UPDATE library SET state = ? WHERE path = ?", (state, str(path)))


@pytest.fixture
async def library(tmp_path: Path) -> AsyncIterator[Library]:
    store = await Store.open(tmp_path / "state" / "state.db")
    try:
        yield Library(store, tmp_path / "library")
    finally:
        await store.close()


async def _exporter(library: Library, **config: object) -> Exporter:
    cfg = ExportsConfig.model_validate({"m3u8_dir": str(library.root / "Playlists"), **config})
    exporter = Exporter(library.store, cfg, library.root, EventBus(), delay_s=60)
    await exporter.start()
    return exporter


def _m3u8(path: Path) -> list[Path]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    return [(path.parent / line).resolve() for line in lines[1:] if not line.startswith("#")]


async def test_playlists_per_pool_per_rule_and_new_this_week(library: Library) -> None:
    old = await library.add("old.mp3", origin="rule:deep-house", age_days=30)
    a = await library.add("a.mp3", origin="rule:deep-house", age_days=2)
    b = await library.add("b.mp3", pool="promoonly", origin="rule:Tech House", age_days=1)
    c = await library.add("c.mp3", origin="socket")
    exporter = await _exporter(library)
    try:
        written = await exporter.export_now()
    finally:
        await exporter.stop()
    lists = library.root / "Playlists"
    assert sorted(w.path.name for w in written) == [
        "New this week.m3u8",
        "Pools - crateq.m3u8",
        "Pools - promoonly.m3u8",
        "Rules - Tech House.m3u8",
        "Rules - deep-house.m3u8",
    ]
    # Newest first in every playlist; "New this week" leaves out what is older than 7 days.
    assert _m3u8(lists / "Pools - crateq.m3u8") == [c, a, old]
    assert _m3u8(lists / "Pools - promoonly.m3u8") == [b]
    assert _m3u8(lists / "Rules - deep-house.m3u8") == [a, old]
    assert _m3u8(lists / "Rules - Tech House.m3u8") == [b]
    assert _m3u8(lists / "New this week.m3u8") == [c, b, a]


async def test_fields_come_from_the_download_and_the_comment_names_the_pool(
    library: Library, tmp_path: Path
) -> None:
    path = await library.add(
        "t.mp3",
        meta={
            "artist": "Meta Artist",
            "title": "Meta Title",
            "album": "The EP",
            "key": "8A",
            "label": "Big Label",
            "bpm": 124,
            "year": 2024,
            "genre": "House",
            "length_s": 181,
        },
    )
    xml_path = tmp_path / "rb" / "rekordbox.xml"
    exporter = await _exporter(library, rekordbox_xml=str(xml_path), playlists=[])
    try:
        await exporter.export_now()
    finally:
        await exporter.stop()
    [track] = RekordboxXml(xml_path).get_tracks()
    assert Path("/" + track["Location"]) == path
    # No mirrored track: the plan's metadata, which the tags were written from.
    assert (track["Artist"], track["Name"], track["Album"]) == (
        "Meta Artist",
        "Meta Title",
        "The EP",
    )
    assert (track["Tonality"], track["Label"], track["Genre"]) == ("8A", "Big Label", "House")
    assert track["AverageBpm"] == 124 and track["Year"] == 2024 and track["TotalTime"] == 181
    assert track["Comments"] == "crateq via pooldaemon"


async def test_a_playlist_that_is_gone_takes_its_file_along_unless_the_user_changed_it(
    library: Library,
) -> None:
    gone = await library.add("gone.mp3", pool="harvest", origin="rule:once")
    kept = await library.add("kept.mp3", pool="promoonly", origin="rule:edited")
    await library.add("stays.mp3")
    exporter = await _exporter(library)
    try:
        await exporter.export_now()
        lists = library.root / "Playlists"
        edited = lists / "Rules - edited.m3u8"
        edited.write_text(edited.read_text(encoding="utf-8") + "# mine\n", encoding="utf-8")
        await library.set_state(gone, "deleted")
        await library.set_state(kept, "failed")
        written = await exporter.export_now()
    finally:
        await exporter.stop()
    assert not (lists / "Rules - once.m3u8").exists()
    assert not (lists / "Pools - harvest.m3u8").exists()
    assert edited.read_text(encoding="utf-8").endswith("# mine\n")  # the user's: left alone
    assert sorted(w.path.name for w in written) == [
        "New this week.m3u8",
        "Pools - crateq.m3u8",
    ]


async def test_an_upgrade_removes_the_old_new_this_week_names_unless_the_user_edited_them(
    library: Library,
) -> None:
    """Earlier builds wrote `New this week - New this week.m3u8` and a crate nested in a crate
    of the same name (docs/interface.md §9, file names)."""
    await library.add("a.mp3")
    lists = library.root / "Playlists"
    serato = library.root / "_Serato_"
    old_m3u8 = lists / "New this week - New this week.m3u8"
    old_crate = serato / "Subcrates" / "New this week%%New this week.crate"
    for path in (old_m3u8, old_crate):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"#EXTM3U\n")
    records = [
        ExportRecord(
            str(old_m3u8), "m3u8", str(old_m3u8), hashlib.sha256(b"#EXTM3U\n").hexdigest()
        ),
        # Written by us, then edited by the user: the digest no longer matches.
        ExportRecord(str(old_crate), "serato", str(old_crate), hashlib.sha256(b"ours").hexdigest()),
    ]
    await store_exports.save_export_records(library.store, records)
    exporter = await _exporter(library, serato_dir=str(serato))
    try:
        written = await exporter.export_now()
    finally:
        await exporter.stop()
    assert not old_m3u8.exists()
    assert old_crate.read_bytes() == b"#EXTM3U\n"
    names = sorted(w.path.name for w in written)
    assert "New this week.m3u8" in names and "New this week.crate" in names
    assert (serato / "Subcrates" / "New this week.crate").is_file()
    left = await store_exports.export_records(library.store)
    assert str(old_m3u8) not in left and str(old_crate) not in left


async def test_an_export_that_cannot_be_written_names_the_file(library: Library) -> None:
    await library.add("a.mp3")
    blocker = library.root / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    exporter = await _exporter(library, rekordbox_xml=str(blocker / "rekordbox.xml"))
    try:
        with pytest.raises(ExportError, match="not-a-dir"):
            await exporter.export_now()
        # The exporter goes on: the next request succeeds once the path is usable.
        blocker.unlink()
        written = await exporter.export_now()
    finally:
        await exporter.stop()
    assert any(w.path == blocker / "rekordbox.xml" for w in written)
    # The playlists written beside the failure were recorded: still ours, replaced in place.
    playlists = [w for w in written if w.format == "m3u8"]
    assert playlists and not any(w.beside for w in playlists)


async def test_nothing_switched_on_writes_nothing(library: Library) -> None:
    await library.add("a.mp3")
    cfg = ExportsConfig.model_validate({"m3u8_dir": ""})
    exporter = Exporter(library.store, cfg, library.root, EventBus())
    await exporter.start()
    try:
        assert await exporter.export_now() == []
    finally:
        await exporter.stop()
    assert not (library.root / "Playlists").exists()


def test_poolctl_export_lines_mark_a_file_written_beside_the_users() -> None:
    from rich.console import Console

    from pooldaemon.cli.render import export_view

    console = Console(width=120, record=True)
    console.print(
        export_view(
            {
                "written": [
                    {"format": "rekordbox", "path": "/m/rekordbox (pooldaemon).xml"},
                    {"format": "m3u8", "path": "/m/Playlists/Pools - crateq.m3u8"},
                ]
            }
        )
    )
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert lines == [
        "rekordbox /m/rekordbox (pooldaemon).xml (yours was edited: ours is beside it)",
        "m3u8 /m/Playlists/Pools - crateq.m3u8",
    ]
    console = Console(width=200, record=True)
    console.print(export_view({"written": []}))
    assert "no export is switched on" in console.export_text()


async def test_an_export_after_new_files_equals_a_fresh_full_export_byte_for_byte(
    library: Library, tmp_path: Path
) -> None:
    await library.add("old & <one>.mp3", origin="rule:deep-house", age_days=30)
    await library.add("Кино 🔥.mp3", pool="promoonly", origin="rule:Tech House", age_days=1)
    await library.add("plain.mp3", pool="harvest")

    def formats(out: Path, lists: str) -> dict[str, object]:
        return {
            "m3u8_dir": str(library.root / lists),
            "rekordbox_xml": str(out / "rekordbox.xml"),
            "traktor_nml": str(out / "collection.nml"),
            "serato_dir": str(out / "_Serato_"),
        }

    exporter = await _exporter(library, **formats(tmp_path / "out", "Playlists"))
    try:
        first = await exporter.export_now()
        before = {w.path: (w.path.stat().st_ino, w.path.stat().st_mtime_ns) for w in first}
        # Two new files in one pool: the other pool's and the rules' playlists stay as they are.
        await library.add("new #1.mp3", age_days=0.5)
        await library.add("new 100%.mp3", age_days=0.1)
        again = await exporter.export_now()
    finally:
        await exporter.stop()
    fresh = await _exporter(library, **formats(tmp_path / "fresh", "Fresh"))
    try:
        full = await fresh.export_now()
    finally:
        await fresh.stop()

    assert len(again) == len(full) == len(first)
    for incremental, whole in zip(again, full, strict=True):
        assert incremental.path.name == whole.path.name
        assert incremental.path.read_bytes() == whole.path.read_bytes(), incremental.path.name
    untouched = {w.path.name for w in again if not w.replaced}
    assert untouched == {
        "Pools - promoonly.m3u8",
        "Pools - harvest.m3u8",
        "Rules - Tech House.m3u8",
        "Rules - deep-house.m3u8",
        "Pools%%promoonly.crate",
        "Pools%%harvest.crate",
        "Rules%%Tech House.crate",
        "Rules%%deep-house.crate",
    }
    for w in again:
        stat = w.path.stat()
        assert ((stat.st_ino, stat.st_mtime_ns) == before[w.path]) == (not w.replaced)
