"""Magic-byte sniffing and merging tags into real (hand-built) media files."""

from __future__ import annotations

import struct
import wave
from pathlib import Path
from typing import Any

import mutagen.id3
import pytest

from pooldaemon.downloader.tags import (
    AIFF,
    FLAC,
    ID3,
    MP4,
    WAVE,
    TagError,
    expected_kinds,
    sniff_media,
    write_tags,
)

TCON: Any = mutagen.id3.TCON
TIT2: Any = mutagen.id3.TIT2
TPE1: Any = mutagen.id3.TPE1

# MPEG-1 Layer III, 128 kbps, 44.1 kHz, no padding: 144 * 128000 / 44100 = 417 bytes a frame.
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)
MP3_AUDIO = MP3_FRAME * 40

META = {
    "artist": "Daft Punk",
    "title": "One More Time",
    "mix": "Extended Mix",
    "genre": "House",
    "bpm": "123.6",
    "year": "2000-11-13",
    "album": "CrateQ",
    "comment": "crateq:12345",
}


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def make_mp4(path: Path) -> bytes:
    """ftyp + moov(mvhd) + mdat: the least mutagen accepts as a taggable MP4."""
    mvhd = _box(
        b"mvhd",
        bytes(4)
        + struct.pack(">IIII", 0, 0, 1000, 5000)
        + struct.pack(">IH", 0x10000, 0x100)
        + bytes(10)
        + struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
        + bytes(24)
        + struct.pack(">I", 2),
    )
    data = _box(b"ftyp", b"M4A \0\0\0\0M4A mp42isom") + _box(b"moov", mvhd)
    data += _box(b"mdat", b"\x5a" * 200)
    path.write_bytes(data)
    return data


def make_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(bytes(range(256)) * 40)


def make_aiff(path: Path) -> None:
    frames = 1000
    # 44100 as an 80-bit IEEE extended float.
    comm = struct.pack(">hLh", 2, frames, 16) + b"\x40\x0e\xac\x44" + bytes(6)
    ssnd = struct.pack(">LL", 0, 0) + bytes(frames * 4)
    body = b"AIFF" + b"COMM" + struct.pack(">L", len(comm)) + comm
    body += b"SSND" + struct.pack(">L", len(ssnd)) + ssnd
    path.write_bytes(b"FORM" + struct.pack(">L", len(body)) + body)


def make_flac(path: Path) -> None:
    # STREAMINFO only: block sizes 4096, 44.1 kHz, stereo, 16 bit, 44100 samples, no MD5.
    info = struct.pack(">HH", 4096, 4096) + bytes(6)
    packed = (44100 << 44) | (1 << 41) | (15 << 36) | 44100
    info += packed.to_bytes(8, "big") + bytes(16)
    path.write_bytes(b"fLaC" + bytes([0x80, 0, 0, len(info)]) + info)


# --- sniff_media ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (MP3_AUDIO[:4096], "mp3"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) + MP3_FRAME, "mp3"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) + b"fLaC\x00", "flac"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
        (b"FORM\x00\x00\x10\x00AIFFCOMM", "aiff"),
        (b"FORM\x00\x00\x10\x00AIFCFVER", "aiff"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x00\x10\x00mdat", "mp4"),
        (b"PK\x03\x04\x14\x00\x00\x00", "zip"),
        (b"PK\x05\x06" + bytes(18), "zip"),
        (b"<!DOCTYPE html><html><body>503</body></html>", "html"),
        (b"\xef\xbb\xbf  \r\n<html>", "html"),
        (b"\n\n<?xml version='1.0'?><error><code>5</code></error>", "html"),
        ("\ufeff<HTML>".encode("utf-16-le"), "html"),
        (b"  []", "json"),
        (b'{"error": {"code": "x"}}', "json"),
        (b"", None),
        (b"just some text", None),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", None),  # ADTS AAC, not MP3
        (b"\xff\xfb\xf0\x64" + bytes(100), None),  # bitrate index 15 is invalid
        (b"\xff\xfd\x90\x64" + bytes(100), None),  # Layer II
        (b"\xff\xfb\x90\x64" + bytes(500), None),  # no second frame where the first ends
        (b"\xff\xfb\x90\x64" + bytes(100), "mp3"),  # too short to check a second frame
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    assert sniff_media(head) == kind


def test_expected_kinds() -> None:
    assert expected_kinds("mp3") == {"mp3"}
    assert expected_kinds(".M4A") == {"mp4"}
    assert expected_kinds("mov") == {"mp4"}
    assert expected_kinds("aif") == expected_kinds("aiff") == {"aiff"}
    assert expected_kinds("wav") == {"wav"}
    assert expected_kinds("flac") == {"flac"}
    assert expected_kinds("zip") == {"zip"}
    assert expected_kinds("exe") == set()
    assert sniff_media(b"<html>") not in expected_kinds("mp3")


# --- write_tags -------------------------------------------------------------------------------


def test_mp3_gets_id3v23_and_keeps_its_audio(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    path.write_bytes(MP3_AUDIO)
    assert write_tags(path, META) is True
    data = path.read_bytes()
    assert data.endswith(MP3_AUDIO)
    assert sniff_media(data[:8192]) == "mp3"
    tags = ID3(path)
    assert tags.version[:2] == (2, 3)
    assert tags["TPE1"].text == ["Daft Punk"]
    assert tags["TIT2"].text == ["One More Time"]  # the mix stays out of the title
    assert tags["TIT3"].text == ["Extended Mix"]
    assert tags["TCON"].text == ["House"]
    assert tags["TBPM"].text == ["124"]
    assert str(tags["TDRC"].text[0]) == "2000-11-13"
    assert tags["TALB"].text == ["CrateQ"]
    assert tags["COMM::eng"].text == ["crateq:12345"]


def test_merge_keeps_existing_values_and_fills_missing(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    path.write_bytes(MP3_AUDIO)
    tags = ID3()
    tags.add(TPE1(encoding=3, text=["The Artist's Own Spelling"]))
    tags.add(TIT2(encoding=3, text=["   "]))  # blank counts as missing
    tags.add(TCON(encoding=3, text=[""]))
    tags.save(path)
    assert write_tags(path, {"artist": "Pool Artist", "title": "Pool Title", "genre": "Techno"})
    tags = ID3(path)
    assert tags["TPE1"].text == ["The Artist's Own Spelling"]
    assert tags["TIT2"].text == ["Pool Title"]
    assert tags["TCON"].text == ["Techno"]
    assert "TBPM" not in tags


def test_nothing_to_add_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    path.write_bytes(MP3_AUDIO)
    write_tags(path, META)
    before = path.read_bytes()
    assert write_tags(path, {**META, "artist": "Someone Else"}) is True
    assert path.read_bytes() == before


def test_id3v23_tag_stays_v23(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    path.write_bytes(MP3_AUDIO)
    tags = ID3()
    tags.add(TPE1(encoding=1, text=["Old Tagger"]))
    tags.save(path, v2_version=3)
    write_tags(path, {"genre": "Disco", "year": "1999"})
    assert path.read_bytes()[:4] == b"ID3\x03"
    tags = ID3(path)
    assert tags["TPE1"].text == ["Old Tagger"]
    assert tags["TCON"].text == ["Disco"]
    assert str(tags["TDRC"].text[0]) == "1999"


def test_values_are_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    path.write_bytes(MP3_AUDIO)
    write_tags(
        path,
        {
            "title": "Line one\nline\x00two",
            "bpm": "fast",
            "date": "2024-05-01T12:00:00",
            "genre": None,
        },
    )
    tags = ID3(path)
    assert tags["TIT2"].text == ["Line one line two"]
    assert "TBPM" not in tags
    assert str(tags["TDRC"].text[0]) == "2024-05-01"
    assert "TCON" not in tags


def test_wav_gets_an_id3_chunk_and_stays_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    make_wav(path)
    assert write_tags(path, META) is True
    tags = WAVE(path).tags
    assert tags is not None
    assert tags["TPE1"].text == ["Daft Punk"]
    assert tags["TIT3"].text == ["Extended Mix"]
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 256 * 40 // 4
        assert w.readframes(w.getnframes()) == bytes(range(256)) * 40


def test_aiff(tmp_path: Path) -> None:
    path = tmp_path / "t.aiff"
    make_aiff(path)
    assert write_tags(path, {"artist": "A", "bpm": 128}) is True
    audio = AIFF(path)
    assert audio.tags is not None
    assert audio.tags["TPE1"].text == ["A"]
    assert audio.tags["TBPM"].text == ["128"]
    assert audio.info.sample_rate == 44100


def test_flac_vorbis_comments_merge(tmp_path: Path) -> None:
    path = tmp_path / "t.flac"
    make_flac(path)
    audio = FLAC(path)
    audio.add_tags()
    assert audio.tags is not None
    audio.tags["ARTIST"] = ["Kept"]
    audio.save()
    assert write_tags(path, META) is True
    tags = FLAC(path).tags
    assert tags is not None
    assert tags["ARTIST"] == ["Kept"]
    assert tags["TITLE"] == ["One More Time"]
    assert tags["SUBTITLE"] == ["Extended Mix"]
    assert tags["BPM"] == ["124"]
    assert tags["DATE"] == ["2000-11-13"]
    assert tags["COMMENT"] == ["crateq:12345"]


def test_mp4_atoms(tmp_path: Path) -> None:
    path = tmp_path / "t.m4a"
    make_mp4(path)
    assert write_tags(path, META) is True
    tags = MP4(path).tags
    assert tags is not None
    assert tags["©ART"] == ["Daft Punk"]
    assert tags["©nam"] == ["One More Time"]
    assert tags["tmpo"] == [124]
    assert bytes(tags["----:com.apple.iTunes:SUBTITLE"][0]) == b"Extended Mix"
    assert tags["©cmt"] == ["crateq:12345"]
    assert path.read_bytes().endswith(_box(b"mdat", b"\x5a" * 200))
    # Merge: a second pass with other values changes nothing.
    before = path.read_bytes()
    write_tags(path, {"artist": "Other", "genre": "House"})
    assert path.read_bytes() == before


def test_mp4_key_label_and_ref_go_into_freeform_atoms(tmp_path: Path) -> None:
    path = tmp_path / "t.m4a"
    make_mp4(path)
    assert write_tags(path, {"key": "F#m", "label": "Toolroom", "pool": "promoonly", "id": "9"})
    tags = MP4(path).tags
    assert tags is not None
    assert bytes(tags["----:com.apple.iTunes:initialkey"][0]) == b"F#m"
    assert bytes(tags["----:com.apple.iTunes:LABEL"][0]) == b"Toolroom"
    assert bytes(tags["----:com.pooldaemon:ref"][0]) == b"promoonly:9"
    assert tags["©cmt"] == ["promoonly via pooldaemon"]


def test_flac_key_label_and_ref(tmp_path: Path) -> None:
    path = tmp_path / "t.flac"
    make_flac(path)
    assert write_tags(path, {"key": "8A", "label": "Toolroom", "ref": "harvest:77"})
    tags = FLAC(path).tags
    assert tags is not None
    assert tags["INITIALKEY"] == ["8A"]
    assert tags["LABEL"] == ["Toolroom"]
    assert tags["POOLDAEMON_REF"] == ["harvest:77"]


def test_mp4_without_moov_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.m4a"
    data = _box(b"ftyp", b"M4A \0\0\0\0M4A mp42isom") + _box(b"free", bytes(16))
    path.write_bytes(data)
    with pytest.raises(TagError, match=r"cannot tag t\.m4a: the mp4 file looks corrupt"):
        write_tags(path, META)
    assert path.read_bytes() == data


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("t.zip", b"PK\x03\x04" + bytes(40)),
        ("t.mp3", b"<!doctype html><title>Error</title>"),
        ("t.mp3", b"[]"),
        ("t.bin", b"\x00\x01\x02 random"),
    ],
)
def test_untaggable_content_returns_false_and_is_untouched(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert write_tags(path, META) is False
    assert path.read_bytes() == data


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("c.mp3", b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\x01" * 50),
        ("c.flac", b"fLaC" + b"\x01" * 50),
        ("c.wav", b"RIFF\x64\x00\x00\x00WAVEjunk\xe8\x03\x00\x00" + b"x" * 20),
    ],
)
def test_corrupt_media_raises_tag_error(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(TagError, match="looks corrupt") as info:
        write_tags(path, META)
    assert info.value.code == "tags"
    assert path.read_bytes() == data
