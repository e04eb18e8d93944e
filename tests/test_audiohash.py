"""The audio checksum (docs/reliability.md L2, L3): tags rewritten the way DJ software writes
them leave it alone; a cut-off or flipped audio byte changes it.

The files are the simulators' media (`pooldaemon.sim.media`), tagged and re-tagged by mutagen,
the library DJ software's own tag writers are modelled on."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from mutagen.aiff import AIFF
from mutagen.apev2 import APEv2
from mutagen.flac import FLAC
from mutagen.id3 import GEOB, ID3, TIT2, TPE1
from mutagen.wave import WAVE

from pooldaemon.audiohash import read_audio
from pooldaemon.sim.media import aiff_bytes, media_bytes

SIZE = 300_000


def audio_hash(path: Path) -> tuple[str, str | None]:
    with path.open("rb") as fh:
        read = read_audio(fh, path.stat().st_size, str(path))
    return read.audio_hash, read.problem


def flac_bytes(seed: str, size: int) -> bytes:
    """A FLAC file mutagen reads: STREAMINFO, an empty VORBIS_COMMENT, then frame bytes."""
    info = bytearray(34)
    struct.pack_into(">HH", info, 0, 4096, 4096)
    packed = (44100 << 44) | (1 << 41) | (15 << 36) | 44100 * 5
    info[10:18] = packed.to_bytes(8, "big")
    comment = bytes(8)
    frames = media_bytes("wav", seed, size)[44:]
    return (
        b"fLaC"
        + b"\x00"
        + (34).to_bytes(3, "big")
        + bytes(info)
        + b"\x84"
        + len(comment).to_bytes(3, "big")
        + comment
        + frames
    )


def mp4_with_metadata(plain: bytes) -> bytes:
    """The same MP4 with a `moov/udta` box in front of `mdat` and a `free` box behind, as a
    tag editor writes it (the simulator's MP4 has no `moov` for mutagen to edit)."""
    ftyp_len = struct.unpack(">I", plain[:4])[0]
    meta = b"\xa9nam" + b"Edited title by the DJ app" * 3
    udta = struct.pack(">I4s", 8 + len(meta), b"udta") + meta
    moov = struct.pack(">I4s", 8 + len(udta), b"moov") + udta
    free = struct.pack(">I4s", 16, b"free") + bytes(8)
    return plain[:ftyp_len] + moov + plain[ftyp_len:] + free


def write(tmp_path: Path, kind: str, name: str) -> Path:
    path = tmp_path / name
    if kind == "aiff":
        path.write_bytes(aiff_bytes(name, SIZE))
    elif kind == "flac":
        path.write_bytes(flac_bytes(name, SIZE))
    else:
        path.write_bytes(media_bytes(kind, name, SIZE))
    return path


def dj_software_tags(path: Path, kind: str) -> None:
    """Tags, a changed title and Serato-style GEOB analysis, written in place by mutagen."""
    if kind == "mp3":
        tags = ID3(path)
        tags.add(TPE1(text="Some Artist"))
        tags.add(TIT2(text="A New Title (Clean)"))
        markers = os.urandom(900)
        tags.add(GEOB(desc="Serato Markers2", mime="application/octet-stream", data=markers))
        tags.save(path, v1=2)  # ID3v1 at the end too
        ape = APEv2()
        ape["Comment"] = "cue points"
        ape.save(path)
    elif kind in ("wav", "aiff"):
        media = WAVE(path) if kind == "wav" else AIFF(path)
        media.add_tags()
        assert media.tags is not None
        media.tags.add(TIT2(text="A New Title"))
        analysis = GEOB(desc="Serato Analysis", mime="application/octet-stream", data=b"x" * 64)
        media.tags.add(analysis)
        media.save()
    elif kind == "flac":
        flac = FLAC(path)
        flac["title"] = "A New Title"
        flac["serato_markers"] = "AAAA" * 100
        flac.save()
    else:
        path.write_bytes(mp4_with_metadata(path.read_bytes()))


KINDS = ["mp3", "mp4", "wav", "aiff", "flac"]


@pytest.mark.parametrize("kind", KINDS)
def test_tags_cues_and_analysis_leave_the_audio_checksum_alone(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, kind, f"track.{kind}")
    before_bytes = hashlib.sha256(path.read_bytes()).hexdigest()
    before, problem = audio_hash(path)
    assert problem is None
    dj_software_tags(path, kind)
    assert hashlib.sha256(path.read_bytes()).hexdigest() != before_bytes  # the file did change
    after, problem = audio_hash(path)
    assert (after, problem) == (before, None)


@pytest.mark.parametrize("kind", KINDS)
def test_a_flipped_audio_byte_changes_the_checksum(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, kind, f"track.{kind}")
    dj_software_tags(path, kind)
    before, _ = audio_hash(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # well inside the audio of every format here
    data[middle] ^= 0x40
    path.write_bytes(bytes(data))
    after, _ = audio_hash(path)
    assert after != before


@pytest.mark.parametrize("kind", ["mp3", "mp4", "wav", "aiff"])
def test_a_cut_off_file_changes_the_checksum_and_says_so(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, kind, f"track.{kind}")
    before, _ = audio_hash(path)
    with path.open("r+b") as fh:
        fh.truncate(SIZE - 1000)
    after, problem = audio_hash(path)
    assert after != before
    assert problem is not None and problem.startswith("truncated")


def test_the_checksum_is_the_payload_hash(tmp_path: Path) -> None:
    """Independent of the reader: a WAV's checksum is SHA-256 of its `data` chunk's bytes."""
    path = write(tmp_path, "wav", "plain.wav")
    raw = path.read_bytes()
    assert raw[36:40] == b"data"
    length = struct.unpack("<I", raw[40:44])[0]
    assert audio_hash(path)[0] == hashlib.sha256(raw[44 : 44 + length]).hexdigest()
