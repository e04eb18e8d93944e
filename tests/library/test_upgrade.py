"""A library from before song keys (schema 10) is completed in the background after the upgrade:
song key, version and audio checksum, while the component's start returns at once."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from pooldaemon.events import EventBus
from pooldaemon.library.keeper import Library
from pooldaemon.library_config import LibraryConfig
from pooldaemon.models import Request
from pooldaemon.sim.media import write_media
from pooldaemon.songkey import parse
from pooldaemon.store import Store


async def no_submit(request: Request, origin: str, **_: Any) -> dict[str, Any]:
    raise AssertionError("the background pass never downloads")


async def test_old_entries_get_song_version_and_checksum_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = await Store.open(path, migrate_to=10)
    await old.close()
    song = tmp_path / "Dua Lipa - Houdini.mp3"
    write_media(song, "mp3", "old", 40_000)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO tracks (pool, id, artist, title, mix, advisory, first_seen, last_seen) "
            "VALUES ('crateq', '7', 'Dua Lipa ft. X', 'Houdini', 'Extended', 'Clean', 1, 1)"
        )
        db.execute(
            "INSERT INTO jobs (pool, kind, item_id, format, ref, origin, state, created, updated)"
            " VALUES ('crateq', 'track', '7', '', 'crateq:7', 'socket', 'done', 1, 1)"
        )
        db.execute(
            "INSERT INTO library (pool, kind, item_id, path, size, sha256, state, job_id, "
            "created, updated) VALUES ('crateq', 'track', '7', ?, 40000, 'x', 'downloaded', 1, "
            "1, 1)",
            (str(song),),
        )
    store = await Store.open(path)
    library = Library(store, LibraryConfig(), EventBus(), no_submit)
    try:
        await library.start()  # returns before the pass has run: READY is not held back
        async with asyncio.timeout(20):
            while True:
                row = await store.fetchone(
                    "SELECT song_key, version, audio_hash FROM library WHERE id = 1"
                )
                track = await store.fetchone("SELECT song_key FROM tracks WHERE id = '7'")
                if row["audio_hash"] and track[0]:
                    break
                await asyncio.sleep(0.02)
    finally:
        await library.stop()
        await store.close()
    expected = parse("Dua Lipa ft. X", "Houdini", mix="Extended", advisory="Clean")
    assert (row["song_key"], row["version"]) == ("dualipa/houdini", "extended clean")
    assert (row["song_key"], row["version"]) == (expected.key, expected.version.label)
    assert track[0] == "dualipa/houdini"
    # The simulator's MP3: a 10-byte ID3v2 header and its padding, then frames to the end.
    data = song.read_bytes()
    tag_len = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))  # syncsafe
    assert data[tag_len] == 0xFF
    assert row["audio_hash"] == hashlib.sha256(data[tag_len:]).hexdigest()
