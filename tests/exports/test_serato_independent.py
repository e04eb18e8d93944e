"""pooldaemon's Serato crates, read back by the independent reader in serato_reader.py.

The reader was written from the public format notes by someone who had not seen the writer, so
a path that survives this round trip was laid out the way the notes (and Serato) expect.
"""

from __future__ import annotations

import pytest

from .serato_reader import read_crate

serato = pytest.importorskip("pooldaemon.exports.serato")

PATH_LISTS = {
    "plain": ["Music/Artist - Title.mp3", "Music/Other Artist - Other Title (Extended Mix).mp3"],
    "xml-and-url-specials": [
        'Pool/Tom & Jerry - <Live> "Cut" 100% #1.mp3',
        "Pool/a&b/c%20d#e?.m4a",
        "Pool/it's; a [test] {x}.wav",
    ],
    "cyrillic": ["Пул/Земфира - Хочешь.mp3", "Пул/Ёлка - Прованс.aiff"],
    "japanese": ["プール/宇多田ヒカル - 初恋.mp3", "プール/ｶﾀｶﾅ 半角.flac"],
    "emoji": ["Pool/🎧 DJ 🔥 - Banger 💯.mp3", "Pool/👩🏽‍🎤 Singer.mp3", "🎶/𝄞 clef.mp3"],
    "combining-and-rtl": ["Pool/Beyonce\u0301 - Halo.mp3", "Pool/עברית - שיר.mp3"],
    "deep-folders": [
        "Music/RecordPools/crateq/House/2026/12/Artist - Title [Xtendz] - qHD - Clean.mp3",
        "/".join(f"level{n}" for n in range(40)) + "/track.mp3",
    ],
    "one-track": ["a.mp3"],
    "long-name": ["Pool/" + "x" * 240 + ".mp3"],
}


@pytest.mark.parametrize("paths", list(PATH_LISTS.values()), ids=list(PATH_LISTS))
def test_track_paths_read_back_unchanged_and_in_order(paths: list[str]) -> None:
    info = read_crate(serato.crate_bytes(paths))
    assert info.version.startswith("1.0/Serato ScratchLive Crate")
    assert info.tracks == paths


def test_many_tracks_read_back_in_order() -> None:
    paths = [f"Pool/{n:05d} Track {n}.mp3" for n in range(2000)]
    assert read_crate(serato.crate_bytes(paths)).tracks == paths


def test_an_empty_playlist_is_an_empty_crate() -> None:
    info = read_crate(serato.crate_bytes([]))
    assert info.version.startswith("1.0/Serato ScratchLive Crate")
    assert info.tracks == []
