"""The independent crate reader against bytes laid out by hand from the public format notes.

Lengths below are counted by hand (UTF-16 code units × 2, plus 8 per nested header), not computed
by a writer, so the reader is checked against the notes rather than against itself.
"""

from __future__ import annotations

import pytest

from .serato_reader import CRATE_VERSION, CrateInfo, read_crate

# "1.0/Serato ScratchLive Crate" is 28 characters: 56 = 0x38 bytes.
VRSN = b"vrsn\x00\x00\x00\x38" + CRATE_VERSION.encode("utf-16-be")

# "Pool/a.mp3" is 10 characters: ptrk body 20 = 0x14 bytes, otrk body 8 + 20 = 28 = 0x1c.
TRACK_A = (
    b"otrk\x00\x00\x00\x1c"
    + b"ptrk\x00\x00\x00\x14"
    + b"\x00P\x00o\x00o\x00l\x00/\x00a\x00.\x00m\x00p\x003"
)
# "Pool/bb.mp3" is 11 characters: 22 = 0x16, otrk 30 = 0x1e.
TRACK_B = b"otrk\x00\x00\x00\x1e" + b"ptrk\x00\x00\x00\x16" + "Pool/bb.mp3".encode("utf-16-be")

TWO_TRACKS = VRSN + TRACK_A + TRACK_B

# A one-track crate written by Serato, transcribed from the hex dump in dalhaan/dj-migrator-electron
# docs/decoding-serato-crates.md (osrt + seven ovct columns + one otrk). The dump's last byte (0x6f)
# begins the repeated column records the notes leave out, so it is not part of this fixture.
SERATO_DUMP = bytes.fromhex(
    """
    76 72 73 6E 00 00 00 38 00 31 00 2E 00 30 00 2F 00 53 00 65 00 72 00 61 00 74 00 6F 00 20 00 53
    00 63 00 72 00 61 00 74 00 63 00 68 00 4C 00 69 00 76 00 65 00 20 00 43 00 72 00 61 00 74 00 65
    6F 73 72 74 00 00 00 19 74 76 63 6E 00 00 00 08 00 73 00 6F 00 6E 00 67 62 72 65 76 00 00 00 01
    00 6F 76 63 74 00 00 00 1E 74 76 63 6E 00 00 00 08 00 73 00 6F 00 6E 00 67 74 76 63 77 00 00 00
    06 00 35 00 35 00 31 6F 76 63 74 00 00 00 24 74 76 63 6E 00 00 00 12 00 70 00 6C 00 61 00 79 00
    43 00 6F 00 75 00 6E 00 74 74 76 63 77 00 00 00 02 00 30 6F 76 63 74 00 00 00 18 74 76 63 6E 00
    00 00 06 00 62 00 70 00 6D 74 76 63 77 00 00 00 02 00 30 6F 76 63 74 00 00 00 1E 74 76 63 6E 00
    00 00 0C 00 6C 00 65 00 6E 00 67 00 74 00 68 74 76 63 77 00 00 00 02 00 30 6F 76 63 74 00 00 00
    1E 74 76 63 6E 00 00 00 0C 00 61 00 72 00 74 00 69 00 73 00 74 74 76 63 77 00 00 00 02 00 30 6F
    76 63 74 00 00 00 1C 74 76 63 6E 00 00 00 0A 00 61 00 6C 00 62 00 75 00 6D 74 76 63 77 00 00 00
    02 00 30 6F 76 63 74 00 00 00 20 74 76 63 6E 00 00 00 0E 00 63 00 6F 00 6D 00 6D 00 65 00 6E 00
    74 74 76 63 77 00 00 00 02 00 30 6F 74 72 6B 00 00 00 78 70 74 72 6B 00 00 00 70 00 6D 00 75 00
    73 00 69 00 63 00 2F 00 44 00 6E 00 42 00 20 00 54 00 6F 00 20 00 47 00 65 00 74 00 20 00 57 00
    65 00 69 00 72 00 64 00 20 00 54 00 6F 00 20 00 49 00 49 00 2F 00 41 00 6C 00 69 00 78 00 20 00
    50 00 65 00 72 00 65 00 7A 00 20 00 2D 00 20 00 47 00 6F 00 6F 00 64 00 20 00 54 00 6F 00 20 00
    4D 00 65 00 2E 00 6D 00 70 00 33
    """
)


def test_two_tracks_in_order() -> None:
    assert read_crate(TWO_TRACKS) == CrateInfo(
        version="1.0/Serato ScratchLive Crate", columns=[], tracks=["Pool/a.mp3", "Pool/bb.mp3"]
    )


def test_a_crate_serato_wrote_reads_with_its_columns() -> None:
    info = read_crate(SERATO_DUMP)
    assert info.version == "1.0/Serato ScratchLive Crate"
    assert info.columns == ["song", "playCount", "bpm", "length", "artist", "album", "comment"]
    assert info.tracks == ["music/DnB To Get Weird To II/Alix Perez - Good To Me.mp3"]


def test_the_dump_with_its_stray_next_byte_is_a_truncated_header() -> None:
    with pytest.raises(ValueError, match=r"truncated record header at offset 491"):
        read_crate(SERATO_DUMP + b"\x6f")


def test_no_tracks_is_a_valid_crate() -> None:
    assert read_crate(VRSN) == CrateInfo(CRATE_VERSION, [], [])


def test_non_latin_and_emoji_paths() -> None:
    # "Поп/Ж.mp3": 9 characters, 18 = 0x12 bytes; П=041F о=043E п=043F Ж=0416.
    cyrillic = (
        b"otrk\x00\x00\x00\x1a"
        + b"ptrk\x00\x00\x00\x12"
        + b"\x04\x1f\x04\x3e\x04\x3f\x00/\x04\x16\x00.\x00m\x00p\x003"
    )
    # "曲/🎧.mp3": 7 code points but 8 UTF-16 units (🎧 U+1F3A7 = surrogates D83C DFA7): 16 = 0x10.
    emoji = (
        b"otrk\x00\x00\x00\x18"
        + b"ptrk\x00\x00\x00\x10"
        + b"\x66\xf2\x00/\xd8\x3c\xdf\xa7\x00.\x00m\x00p\x003"
    )
    assert read_crate(VRSN + cyrillic + emoji).tracks == ["Поп/Ж.mp3", "曲/🎧.mp3"]


def test_unknown_records_are_framed_and_skipped() -> None:
    # A u-record (4 bytes), a b-record (1 byte) and an o-record Serato might add one day.
    extra = (
        b"uadd\x00\x00\x00\x04\x00\x00\x00\x01"
        + b"bbgl\x00\x00\x00\x01\x00"
        + b"onew\x00\x00\x00\x0a"
        + b"tnam\x00\x00\x00\x02\x00x"
    )
    assert read_crate(VRSN + extra + TRACK_A).tracks == ["Pool/a.mp3"]


@pytest.mark.parametrize("cut", [1, 3, 4, 7, 8, 9, 30, 56, 63, 65, 70, 71, 80, len(TWO_TRACKS) - 1])
def test_a_cut_inside_a_record_raises(cut: int) -> None:
    with pytest.raises(ValueError, match=r"truncated|claims \d+ byte"):
        read_crate(TWO_TRACKS[:cut])


def test_a_cut_between_records_is_undetectable_by_design() -> None:
    # The format has no count and no trailer (see the reader's notes): writers must replace
    # crates atomically, because a crate cut here is simply shorter.
    assert read_crate(TWO_TRACKS[: len(VRSN) + len(TRACK_A)]).tracks == ["Pool/a.mp3"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"empty crate"),
        (TRACK_A + VRSN, r"starts with 'otrk' at offset 0, not 'vrsn'"),
        (VRSN + VRSN, r"second 'vrsn' record at offset 64"),
        (
            b"vrsn\x00\x00\x00\x40" + "2.0/Serato Scratch LIVE Database".encode("utf-16-be"),
            r"not a crate: version is '2.0/Serato Scratch LIVE Database'",
        ),
        (VRSN + b"OTRK\x00\x00\x00\x00", r"bad record tag b'OTRK' at offset 64"),
        (VRSN + b"ot\xc3\xa4\x00\x00\x00\x00", r"bad record tag .* at offset 64"),
        # otrk claims 0x1d bytes but its body ends one byte early: the file ends inside it.
        (VRSN + b"otrk\x00\x00\x00\x1d" + TRACK_A[8:], r"'otrk' at offset 64 claims 29 byte"),
        # ptrk claims more than its otrk holds.
        (
            VRSN + b"otrk\x00\x00\x00\x0a" + b"ptrk\x00\x00\x00\x04\x00a",
            r"'ptrk' at offset 72 claims 4 byte\(s\) but only 2 remain before the end of 'otrk'",
        ),
        (VRSN + b"otrk\x00\x00\x00\x00", r"'otrk' at offset 64 holds 0 'ptrk' record\(s\)"),
        (
            VRSN + b"otrk\x00\x00\x00\x14" + (b"ptrk\x00\x00\x00\x02\x00a" * 2),
            r"holds 2 'ptrk' record\(s\), expected exactly one",
        ),
        (VRSN + b"ptrk\x00\x00\x00\x02\x00a", r"'ptrk' at offset 64 is not inside an 'otrk'"),
        (
            VRSN + b"ovct\x00\x00\x00\x0a" + b"ptrk\x00\x00\x00\x02\x00a",
            r"'ptrk' at offset 72 is not inside an 'otrk'",
        ),
        (VRSN + b"otrk\x00\x00\x00\x08ptrk\x00\x00\x00\x00", r"empty path"),
        (VRSN + b"otrk\x00\x00\x00\x0bptrk\x00\x00\x00\x03\x00a\x00", r"odd length \(3 bytes\)"),
        # A lone high surrogate: what a writer that splits an emoji produces.
        (
            VRSN + b"otrk\x00\x00\x00\x0cptrk\x00\x00\x00\x04\xd8\x3c\x00a",
            r"'ptrk' at offset 72 is not valid UTF-16BE",
        ),
        # A NUL terminator, as a C-minded writer might add.
        (VRSN + b"otrk\x00\x00\x00\x0cptrk\x00\x00\x00\x04\x00a\x00\x00", r"NUL character"),
        (VRSN + b"otrk\x00\x00\x00\x0cptrk\x00\x00\x00\x04\xfe\xff\x00a", r"byte-order mark"),
        # UTF-16LE instead of BE decodes to CJK-looking text; caught as a wrong version string.
        (
            b"vrsn\x00\x00\x00\x38" + CRATE_VERSION.encode("utf-16-le"),
            r"not a crate",
        ),
        (VRSN + b"ovct\x00\x00\x00\x0atvcw\x00\x00\x00\x02\x000", r"0 'tvcn' record\(s\)"),
        (VRSN + b"uadd\x00\x00\x00\x02\x00\x01", r"32-bit value but has 2 byte"),
        (VRSN + b"brev\x00\x00\x00\x02\x00\x01", r"one-byte value but has 2 byte"),
        (
            VRSN
            + b"oaaa\x00\x00\x00\x30"
            + b"obbb\x00\x00\x00\x28"
            + b"occc\x00\x00\x00\x20"
            + b"oddd\x00\x00\x00\x18"
            + b"oeee\x00\x00\x00\x10"
            + b"offf\x00\x00\x00\x08"
            + b"oggg\x00\x00\x00\x00",
            r"nests deeper than 4 levels",
        ),
    ],
)
def test_malformed_input_raises_a_specific_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_crate(data)
