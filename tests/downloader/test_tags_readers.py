"""Tags written by write_tags, read back by readers we did not write: exiftool, ffprobe, mutagen.

docs/formats.md "Tags" is the mapping checked here. MP3 and WAV come from the simulators'
generator; AIFF and FLAC are hand-built (the generator makes neither); the M4A is encoded by
ffmpeg, because a taggable MP4 needs a sample table the generator's `mdat`-only file lacks.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pooldaemon.downloader.tags import AIFF, FLAC, ID3, MP4, WAVE, write_tags
from pooldaemon.sim.media import media_bytes, write_media
from tests.downloader.test_tags import make_aiff, make_flac
from tests.readers import EXIFTOOL, FFPROBE, ffprobe_tags

FFMPEG = shutil.which("ffmpeg")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool is not installed (Debian: libimage-exiftool-perl)"
)
needs_ffmpeg = pytest.mark.skipif(
    FFPROBE is None or FFMPEG is None, reason="ffprobe/ffmpeg not installed (Debian: ffmpeg)"
)

ARTIST = "Ærtist Ünïcode 🎧"  # Latin-1, beyond Latin-1, and an astral-plane emoji
TITLE = "東京 Nights — Ёлка"
META = {
    "artist": ARTIST,
    "title": TITLE,
    "mix": "Extended Mix",
    "genre": "Afro House",
    "bpm": "124",
    "key": "Am",
    "year": "2021-03-04",
    "album": "Sommer EP",
    "label": "Défected 🌍",
    "pool": "crateq",
    "id": "4711",
}
# What the pool's metadata becomes, as docs/formats.md "Tags" says.
COMMENT = "crateq via pooldaemon"
REF = "crateq:4711"


def _exiftool(path: Path) -> dict[str, tuple[str, str]]:
    """exiftool's reading: "Group:Name" → (tag id, value as text)."""
    assert EXIFTOOL is not None
    out = subprocess.run(
        [EXIFTOOL, "-a", "-G1", "-H", "-j", "-b", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    found: dict[str, tuple[str, str]] = {}
    for key, item in json.loads(out)[0].items():
        if isinstance(item, dict):
            found[key] = (str(item["id"]), _exif_text(item["val"]))
    return found


def _exif_text(value: object) -> str:
    """A value as text. exiftool 12.57 decodes each half of a UTF-16 surrogate pair in an
    ID3v2.3 frame on its own (so an emoji comes out as two 3-byte sequences, base64 in JSON);
    joining the halves again checks the code units on disk are exactly our character's."""
    if isinstance(value, str) and value.startswith("base64:"):
        raw = base64.b64decode(value[7:])
        units = raw.decode("utf-8", "surrogatepass").encode("utf-16-le", "surrogatepass")
        return units.decode("utf-16-le")
    return str(value)


def _sim_mp3(path: Path) -> None:
    write_media(path, "mp3", "tags-readers", 40_000)


def _sim_wav(path: Path) -> None:
    write_media(path, "wav", "tags-readers", 40_000)


def _ffmpeg_m4a(path: Path) -> None:
    assert FFMPEG is not None
    command = [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac"]
    subprocess.run([*command, str(path)], check=True, timeout=120)


# ID3v2.3 frames (MP3, WAV's `id3 ` chunk, AIFF's `ID3 ` chunk): exiftool group ID3v2_3, by id.
ID3_EXIF = {
    "TPE1": ARTIST,
    "TIT2": TITLE,
    "TIT3": "Extended Mix",
    "TCON": "Afro House",
    "TBPM": "124",
    "TKEY": "Am",
    "TYER": "2021",
    "TDAT": "0403",  # ID3v2.3 TDAT is DDMM
    "TALB": "Sommer EP",
    "TPUB": "Défected 🌍",
    "COMM": COMMENT,
    "TXXX": f"(POOLDAEMON_REF) {REF}",  # exiftool prints a TXXX as "(description) value"
}
ID3_FFPROBE = {
    "artist": ARTIST,
    "title": TITLE,
    "TIT3": "Extended Mix",
    "genre": "Afro House",
    "TBPM": "124",
    "TKEY": "Am",
    "date": "2021-03-04",
    "album": "Sommer EP",
    "publisher": "Défected 🌍",
    "comment": COMMENT,
    "POOLDAEMON_REF": REF,
}
FLAC_EXIF = {
    "ARTIST": ARTIST,
    "TITLE": TITLE,
    "SUBTITLE": "Extended Mix",
    "GENRE": "Afro House",
    "BPM": "124",
    "INITIALKEY": "Am",
    "DATE": "2021-03-04",
    "ALBUM": "Sommer EP",
    "LABEL": "Défected 🌍",
    "COMMENT": COMMENT,
    "POOLDAEMON_REF": REF,
}
# MP4 atoms by exiftool's name (its ids for © atoms are not printable as JSON keys).
MP4_EXIF = {
    "ItemList:Artist": ARTIST,
    "ItemList:Title": TITLE,
    "iTunes:SUBTITLE": "Extended Mix",
    "ItemList:Genre": "Afro House",
    "ItemList:BeatsPerMinute": "124",
    "iTunes:InitialKey": "Am",
    "ItemList:ContentCreateDate": "2021:03:04",
    "ItemList:Album": "Sommer EP",
    "iTunes:Label": "Défected 🌍",
    "ItemList:Comment": COMMENT,
    "iTunes:Ref": REF,
}
MP4_IDS = {"iTunes:InitialKey": "initialkey", "iTunes:Label": "LABEL"}
MP4_IDS["iTunes:Ref"] = "com.pooldaemon/ref"  # the freeform atom's mean/name
# ffprobe 5.1 does not export `tmpo` at all (not even from a file ffmpeg itself wrote with
# -metadata tmpo=…), so BPM in MP4 is left to exiftool and mutagen.
MP4_FFPROBE = {
    "artist": ARTIST,
    "title": TITLE,
    "SUBTITLE": "Extended Mix",
    "genre": "Afro House",
    "initialkey": "Am",
    "date": "2021-03-04",
    "album": "Sommer EP",
    "LABEL": "Défected 🌍",
    "comment": COMMENT,
    "ref": REF,
}

FORMATS: dict[str, tuple[Callable[[Path], None], str]] = {
    "mp3": (_sim_mp3, "id3"),
    "wav": (_sim_wav, "id3"),
    "aiff": (make_aiff, "id3"),
    "flac": (make_flac, "flac"),
    "m4a": (_ffmpeg_m4a, "mp4"),
}


@pytest.fixture(params=sorted(FORMATS))
def tagged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A file of each format, with META written into it."""
    ext: str = request.param
    build, family = FORMATS[ext]
    if ext == "m4a" and FFMPEG is None:
        pytest.skip("ffmpeg is not installed (Debian: ffmpeg); it encodes the M4A")
    path = tmp_path / f"track.{ext}"
    build(path)
    assert write_tags(path, META) is True
    return path, family


@needs_exiftool
def test_exiftool_reads_every_value(tagged: tuple[Path, str]) -> None:
    path, family = tagged
    found = _exiftool(path)
    assert "ExifTool:Warning" not in found  # e.g. a frame the tag's version does not define
    if family == "id3":
        by_id = {fid: val for key, (fid, val) in found.items() if key.startswith("ID3v2_3:")}
        assert by_id == ID3_EXIF
        assert not any(key.startswith(("ID3v2_4:", "ID3v2_2:")) for key in found)
    elif family == "flac":
        by_id = {fid: val for key, (fid, val) in found.items() if key.startswith("Vorbis:")}
        by_id.pop("vendor")
        assert by_id == FLAC_EXIF
    else:
        assert {key: found[key][1] for key in MP4_EXIF if key in found} == MP4_EXIF
        assert {key: found[key][0] for key in MP4_IDS} == MP4_IDS


@needs_ffmpeg
def test_ffprobe_reads_every_value(tagged: tuple[Path, str]) -> None:
    path, family = tagged
    tags = ffprobe_tags(path)
    expected = {"id3": ID3_FFPROBE, "flac": FLAC_EXIF, "mp4": MP4_FFPROBE}[family]
    assert {key: tags.get(key) for key in expected} == expected


def test_mutagen_reads_every_value(tagged: tuple[Path, str]) -> None:
    path, family = tagged
    if family == "id3":
        cls = {".mp3": ID3, ".wav": WAVE, ".aiff": AIFF}[path.suffix]
        loaded = cls(path)
        tags = loaded if cls is ID3 else loaded.tags
        assert tags.version[:2] == (2, 3)
        found = {frame_id: tags[frame_id].text for frame_id in ("TPE1", "TIT2", "TPUB", "TKEY")}
        assert found == {
            "TPE1": [ARTIST],
            "TIT2": [TITLE],
            "TPUB": ["Défected 🌍"],
            "TKEY": ["Am"],
        }
        assert tags["TBPM"].text == ["124"]
        assert str(tags["TDRC"].text[0]) == "2021-03-04"  # mutagen reads TYER+TDAT back as one
        assert tags["COMM::eng"].text == [COMMENT]
        assert tags["TXXX:POOLDAEMON_REF"].text == [REF]
    elif family == "flac":
        vorbis = FLAC(path).tags
        assert {key: vorbis[key] for key in FLAC_EXIF} == {k: [v] for k, v in FLAC_EXIF.items()}
    else:
        atoms = MP4(path).tags
        assert atoms["©ART"] == [ARTIST]
        assert atoms["tmpo"] == [124]
        assert bytes(atoms["----:com.apple.iTunes:initialkey"][0]) == b"Am"
        assert bytes(atoms["----:com.apple.iTunes:LABEL"][0]).decode() == "Défected 🌍"
        assert bytes(atoms["----:com.pooldaemon:ref"][0]) == REF.encode()


# --- ID3v2.3 on disk, and what an existing ID3v2.4 tag becomes ------------------------------


def _id3_frames(tag: bytes) -> list[tuple[bytes, bytes]]:
    """(frame id, payload) in order, parsed from a whole ID3v2.3/2.4 tag (header included)."""
    major = tag[3]
    size = _syncsafe(tag[6:10])
    frames, pos = [], 10
    while pos + 10 <= 10 + size and tag[pos : pos + 1] != b"\0":
        frame_id, raw_len = tag[pos : pos + 4], tag[pos + 4 : pos + 8]
        length = _syncsafe(raw_len) if major == 4 else struct.unpack(">I", raw_len)[0]
        frames.append((frame_id, tag[pos + 10 : pos + 10 + length]))
        pos += 10 + length
    return frames


def _syncsafe(data: bytes) -> int:
    return (data[0] << 21) | (data[1] << 14) | (data[2] << 7) | data[3]


def _v24_frame(frame_id: bytes, payload: bytes) -> bytes:
    size = len(payload)
    header = bytes(((size >> shift) & 0x7F) for shift in (21, 14, 7, 0))
    return frame_id + header + b"\0\0" + payload


def _v24_text(frame_id: bytes, text: str) -> bytes:
    return _v24_frame(frame_id, b"\x03" + text.encode() + b"\0")


# A Serato analysis object as Serato DJ stores it: Latin-1 strings, then opaque bytes.
SERATO_GEOB = b"\x00application/octet-stream\x00\x00Serato Markers2\x00" + bytes(range(256)) * 3


def _v24_tagged_mp3(path: Path) -> bytes:
    """A generated MP3 whose ID3v2.4 tag (built by hand) already has some values and a GEOB."""
    frames = _v24_text(b"TPE1", "Kept Ärtist")
    frames += _v24_text(b"TDRC", "1999")
    frames += _v24_text(b"TSOP", "Ärtist, Kept")  # v2.4 only: must survive the move to v2.3
    frames += _v24_frame(b"GEOB", SERATO_GEOB)
    size = len(frames)
    tag = b"ID3\x04\x00\x00" + bytes(((size >> s) & 0x7F) for s in (21, 14, 7, 0)) + frames
    generated = media_bytes("mp3", "v24", 20_000)
    audio = generated[10 + _syncsafe(generated[6:10]) :]
    path.write_bytes(tag + audio)
    return audio


def test_written_mp3_starts_with_an_id3v23_header(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    _sim_mp3(path)
    assert path.read_bytes()[:5] == b"ID3\x04\x00"  # the generator writes an empty v2.4 tag
    write_tags(path, META)
    assert path.read_bytes()[:5] == b"ID3\x03\x00"


@pytest.mark.parametrize(("build", "chunk"), [(_sim_wav, b"id3 "), (make_aiff, b"ID3 ")])
def test_wav_and_aiff_chunks_hold_id3v23(
    tmp_path: Path, build: Callable[[Path], None], chunk: bytes
) -> None:
    path = tmp_path / ("t.wav" if chunk == b"id3 " else "t.aiff")
    build(path)
    write_tags(path, META)
    data = path.read_bytes()
    at = data.index(chunk)
    assert data[at + 8 : at + 13] == b"ID3\x03\x00"


def test_v24_tag_becomes_v23_keeping_values_and_serato_geob(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    audio = _v24_tagged_mp3(path)
    assert write_tags(path, META) is True
    data = path.read_bytes()
    assert data[:5] == b"ID3\x03\x00"
    assert data.endswith(audio)
    frames = _id3_frames(data[: 10 + _syncsafe(data[6:10])])
    assert [payload for fid, payload in frames if fid == b"GEOB"] == [SERATO_GEOB]
    ids = [fid for fid, _ in frames]
    assert b"TDRC" not in ids  # ID3v2.3 has no TDRC: the year is TYER
    assert len(ids) == len(set(ids)), ids
    assert dict(frames)[b"TSOP"] == b"\x01" + "Ärtist, Kept".encode("utf-16") + b"\0\0"
    if EXIFTOOL is not None:
        found = {fid: val for key, (fid, val) in _exiftool(path).items() if key.startswith("ID3")}
        assert found["TPE1"] == "Kept Ärtist"  # the file's own value wins over the pool's
        assert found["TYER"] == "1999"
        assert "TDAT" not in found  # the file's year had no day; ours was not mixed in
        # Kept although ID3v2.3 does not define it (iTunes writes it there too); exiftool
        # notes that and nothing else.
        assert "TSOP" not in found
        warning = _exiftool(path)["ExifTool:Warning"][1]
        assert warning == "[minor] Frame 'TSOP' is not valid for this ID3 version"
        assert found["TIT2"] == TITLE
        assert found["TXXX"] == f"(POOLDAEMON_REF) {REF}"
    tags = ID3(path)
    assert tags["TPE1"].text == ["Kept Ärtist"]
    assert tags["TSOP"].text == ["Ärtist, Kept"]
    assert tags["TKEY"].text == ["Am"]


def test_v24_tag_with_nothing_to_add_is_left_as_v24(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    _v24_tagged_mp3(path)
    before = path.read_bytes()
    assert write_tags(path, {"artist": "Someone Else", "year": "2020"}) is True
    assert path.read_bytes() == before


def test_existing_ref_key_and_label_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    _sim_mp3(path)
    write_tags(path, {"ref": "harvest:1", "key": "8A", "label": "Own"})
    write_tags(path, META)
    tags = ID3(path)
    assert tags["TXXX:POOLDAEMON_REF"].text == ["harvest:1"]
    assert tags["TKEY"].text == ["8A"]
    assert tags["TPUB"].text == ["Own"]
    assert tags["COMM::eng"].text == [COMMENT]


def test_meta_without_pool_writes_no_comment_or_ref(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    _sim_mp3(path)
    write_tags(path, {"artist": "A", "id": "12"})
    tags = ID3(path)
    assert "COMM::eng" not in tags
    assert "TXXX:POOLDAEMON_REF" not in tags


def test_m4a_existing_freeform_key_in_other_case_is_kept(tmp_path: Path) -> None:
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed (Debian: ffmpeg); it encodes the M4A")
    path = tmp_path / "t.m4a"
    _ffmpeg_m4a(path)
    audio: Any = MP4(path)
    assert audio.tags is not None  # ffmpeg's own ©too atom
    audio.tags["----:com.apple.iTunes:INITIALKEY"] = [b"11B"]
    audio.save()
    write_tags(path, META)
    atoms = MP4(path).tags
    assert "----:com.apple.iTunes:initialkey" not in atoms
    assert bytes(atoms["----:com.apple.iTunes:INITIALKEY"][0]) == b"11B"
