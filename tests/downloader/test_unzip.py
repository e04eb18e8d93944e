"""Safe extraction of ZIP parts (docs/interface.md §5, docs/reliability.md Z1–Z3, C5, §3 item
14)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from pooldaemon.downloader.unzip import (
    ArchiveDamaged,
    ArchiveRejected,
    extract_parts,
    extract_zip,
)

LIMIT = 50 * 1024 * 1024


def build_zip(
    entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """A real archive from (name or ZipInfo, data) pairs; duplicates allowed."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names; we want them
        with zipfile.ZipFile(buf, "w", compression=method) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def patch_entry(
    data: bytes, index: int, *, flag: int | None = None, method: int | None = None
) -> bytes:
    """Rewrite flag bits or compression method in both headers of entry `index`."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        local = zf.infolist()[index].header_offset
        central = zf.start_dir  # type: ignore[attr-defined]
    for _ in range(index):
        n, m, k = struct.unpack("<HHH", out[central + 28 : central + 34])
        central += 46 + n + m + k
    assert out[local : local + 4] == b"PK\x03\x04" and out[central : central + 4] == b"PK\x01\x02"
    if flag is not None:
        struct.pack_into("<H", out, local + 6, flag)
        struct.pack_into("<H", out, central + 8, flag)
    if method is not None:
        struct.pack_into("<H", out, local + 8, method)
        struct.pack_into("<H", out, central + 10, method)
    return bytes(out)


def quoted_overlap_zip() -> bytes:
    """Two stored entries where the first one's data contains the second's local header.

    The shape of the cpython#109858 bomb: Python 3.11.7 reads both without complaint.
    """
    kernel = b"kernel bytes " * 50

    def local(name: bytes, body: bytes) -> bytes:
        return (
            struct.pack(
                "<4s2B4HL2L2H",
                b"PK\x03\x04",
                20,
                0,
                0,
                0,
                0,
                0x21,
                zlib.crc32(body),
                len(body),
                len(body),
                len(name),
                0,
            )
            + name
        )

    def central(name: bytes, body: bytes, offset: int) -> bytes:
        return (
            struct.pack(
                "<4s4B4HL2L5H2L",
                b"PK\x01\x02",
                20,
                3,
                20,
                0,
                0,
                0,
                0,
                0x21,
                zlib.crc32(body),
                len(body),
                len(body),
                len(name),
                0,
                0,
                0,
                0,
                0o100644 << 16,
                offset,
            )
            + name
        )

    header_b = local(b"b.txt", kernel)
    body_a = header_b + kernel
    header_a = local(b"a.txt", body_a)
    data = header_a + body_a
    cd = central(b"a.txt", body_a, 0) + central(b"b.txt", kernel, len(header_a))
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 2, 2, len(cd), len(data), 0)
    return data + cd + eocd


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its content (symlinks as their target)."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = os.readlink(path).encode()
        elif path.is_file():
            out[rel] = path.read_bytes()
        else:
            out[rel + "/"] = b""
    return out


@pytest.fixture
def area(tmp_path: Path) -> dict[str, Path]:
    """download_dir with its work area: <root>/.pooldaemon/{parts,staging}, <root>/harvest/."""
    root = tmp_path / "library"
    (root / ".pooldaemon").mkdir(parents=True)
    (root / "harvest").mkdir()
    return {
        "root": root,
        "archive": root / ".pooldaemon" / "pack.zip",
        "staging": root / ".pooldaemon" / "staging-1",
        "dest": root / "harvest" / "Summer Pack",
    }


def _extract(area: dict[str, Path], data: bytes, **kw: object) -> list[Path]:
    area["archive"].write_bytes(data)
    limits: dict[str, object] = {"max_total_bytes": LIMIT, **kw}
    return extract_zip(area["archive"], area["dest"], area["staging"], **limits)  # type: ignore[arg-type]


def _refused(area: dict[str, Path], data: bytes, **kw: object) -> ArchiveRejected:
    """Extract, expecting a refusal that leaves the archive intact and nothing behind."""
    area["archive"].write_bytes(data)
    before = snapshot(area["root"])
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(ArchiveRejected) as info:
        _extract(area, data, **kw)
    assert snapshot(area["root"]) == before
    assert hashlib.sha256(area["archive"].read_bytes()).hexdigest() == digest
    return info.value


# --- the happy path ---------------------------------------------------------------------------


def test_extracts_into_place_with_folders(area: dict[str, Path]) -> None:
    audio = os.urandom(300_000)
    data = build_zip(
        [
            ("Summer Pack/", b""),
            ("Summer Pack/01 Intro.mp3", audio),
            ("Summer Pack/Bonus\\02 Outro.wav", b"RIFF....WAVE"),
            ("readme.txt", b" " * 10_000),  # ratio > 100 but tiny: allowed
            ("__MACOSX/Summer Pack/._01 Intro.mp3", b"resource fork"),
            ("Summer Pack/.DS_Store", b"finder"),
        ]
    )
    paths = _extract(area, data)
    dest = area["dest"]
    assert paths == [
        dest / "Summer Pack" / "01 Intro.mp3",
        dest / "Summer Pack" / "Bonus" / "02 Outro.wav",
        dest / "readme.txt",
    ]
    assert paths[0].read_bytes() == audio
    assert paths[1].read_bytes() == b"RIFF....WAVE"
    assert not area["staging"].exists()
    assert snapshot(dest).keys() == {
        "Summer Pack/",
        "Summer Pack/01 Intro.mp3",
        "Summer Pack/Bonus/",
        "Summer Pack/Bonus/02 Outro.wav",
        "readme.txt",
    }
    assert area["archive"].exists()  # the caller removes parts once it has recorded success


def test_a_taken_destination_gets_a_numbered_sibling(area: dict[str, Path]) -> None:
    area["dest"].mkdir()
    (area["dest"] / "mine.txt").write_bytes(b"keep")
    paths = _extract(area, build_zip([("x.mp3", b"abc")]))
    assert paths == [area["root"] / "harvest" / "Summer Pack (2)" / "x.mp3"]
    assert (area["dest"] / "mine.txt").read_bytes() == b"keep"


def test_names_are_sanitized(area: dict[str, Path]) -> None:
    entries = [("CON.mp3", b"1"), ("DJ: Track?.mp3", b"2"), ("x\u202e3pm.exe", b"3")]
    paths = _extract(area, build_zip(entries))
    assert [p.name for p in paths] == ["CON_.mp3", "DJ_ Track_.mp3", "x3pm.exe"]


def test_cp437_names_are_decoded_as_zipfile_does(area: dict[str, Path]) -> None:
    data = build_zip([("CafX.mp3", b"x")], method=zipfile.ZIP_STORED)
    assert data.count(b"CafX") == 2
    data = data.replace(b"CafX", b"Caf\x82")  # 0x82 is é in CP437; no UTF-8 flag set
    paths = _extract(area, data)
    assert [p.name for p in paths] == ["Café.mp3"]


def test_leftover_staging_from_a_crash_is_replaced(area: dict[str, Path]) -> None:
    area["staging"].mkdir()
    (area["staging"] / "half-written.mp3").write_bytes(b"partial")
    paths = _extract(area, build_zip([("x.mp3", b"full")]))
    assert [p.read_bytes() for p in paths] == [b"full"]
    assert snapshot(area["dest"]).keys() == {"x.mp3"}
    assert not area["staging"].exists()


# --- Z1: names, links, duplicates -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "../../x",
        "/abs/x",
        "C:/x",
        "C:\\x",
        "..\\..\\x",
        "a/../../x",
        "\\\\server\\share\\x",
        "a/..",
    ],
)
def test_escaping_entries_are_refused(area: dict[str, Path], bad: str) -> None:
    err = _refused(area, build_zip([("ok.mp3", b"fine"), (bad, b"evil")]))
    assert "outside the destination folder" in err.reason
    assert err.entries == [bad]
    assert err.code == "rejected_archive"
    assert not (area["root"].parent / "x").exists()


def test_symlink_entries_are_refused(area: dict[str, Path]) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    err = _refused(area, build_zip([(link, b"/etc"), ("link/passwd", b"owned")]))
    assert "symlink" in err.reason
    assert err.entries == ["link"]


def test_duplicate_names_are_refused(area: dict[str, Path]) -> None:
    err = _refused(area, build_zip([("a.mp3", b"1"), ("a.mp3", b"2")]))
    assert "duplicate entry names" in err.reason
    assert err.entries == ["a.mp3", "a.mp3"]


def test_names_differing_only_by_case_are_refused(area: dict[str, Path]) -> None:
    err = _refused(area, build_zip([("Dir/Track.mp3", b"1"), ("dir/track.MP3", b"2")]))
    assert "ignoring case" in err.reason
    assert err.entries == ["Dir/Track.mp3", "dir/track.MP3"]


def test_names_colliding_after_sanitizing_are_refused(area: dict[str, Path]) -> None:
    err = _refused(area, build_zip([("DJ:b.mp3", b"1"), ("dj_b.mp3", b"2")]))
    assert "duplicate entry names" in err.reason


def test_file_and_folder_with_one_name_are_refused(area: dict[str, Path]) -> None:
    err = _refused(area, build_zip([("a", b"file"), ("a/b.mp3", b"2")]))
    assert "both a file and a folder" in err.reason
    assert err.entries == ["a"]


# --- Z2: bombs and limits ---------------------------------------------------------------------


def test_quoted_overlap_is_refused(area: dict[str, Path]) -> None:
    data = quoted_overlap_zip()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # 3.11.7 itself sees nothing wrong
        assert zf.testzip() is None
    err = _refused(area, data)
    assert "overlapping entries" in err.reason
    assert err.entries == ["a.txt", "b.txt"]


def test_entries_sharing_one_local_header_are_refused(area: dict[str, Path]) -> None:
    data = bytearray(build_zip([("a.mp3", b"x" * 100), ("b.mp3", b"y" * 100)], zipfile.ZIP_STORED))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        second_central = zf.start_dir + 46 + len("a.mp3")  # type: ignore[attr-defined]
    struct.pack_into("<L", data, second_central + 42, 0)  # b.mp3's local header := a.mp3's
    err = _refused(area, bytes(data))
    assert "overlapping entries" in err.reason


def test_ratio_bomb_is_refused(area: dict[str, Path]) -> None:
    err = _refused(area, build_zip([("ok.mp3", b"x"), ("bomb.wav", bytes(5_000_000))]))
    assert "compression ratio above 100" in err.reason
    assert err.entries == ["bomb.wav"]


def test_ratio_limit_is_configurable(area: dict[str, Path]) -> None:
    paths = _extract(area, build_zip([("quiet.wav", bytes(5_000_000))]), max_ratio=2000.0)
    assert paths[0].stat().st_size == 5_000_000


def test_total_size_limit(area: dict[str, Path]) -> None:
    data = build_zip([("a.mp3", os.urandom(60_000)), ("b.mp3", os.urandom(60_000))])
    err = _refused(area, data, max_total_bytes=100_000)
    assert "expands beyond the limit of 100000 bytes" in err.reason


def test_too_many_entries(area: dict[str, Path]) -> None:
    err = _refused(area, build_zip([(f"{i}.mp3", b"x") for i in range(4)]), max_entries=3)
    assert err.reason == "too many entries: 4 (limit 3)"


def test_header_understating_the_size_is_not_trusted(area: dict[str, Path]) -> None:
    # cpython#83522: the directory says 100 bytes; the stream holds 200,000.
    data = bytearray(build_zip([("liar.mp3", os.urandom(200_000))], zipfile.ZIP_STORED))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
        central = zf.start_dir  # type: ignore[attr-defined]
    struct.pack_into("<L", data, info.header_offset + 22, 100)
    struct.pack_into("<L", data, central + 24, 100)
    err = _refused(area, bytes(data))
    assert isinstance(err, ArchiveDamaged)
    assert err.entries == ["liar.mp3"]


def test_header_overstating_the_size_is_damage(area: dict[str, Path]) -> None:
    # The CRC matches the 100 bytes really stored; only the declared size is wrong, and
    # zipfile alone returns the short content without complaint.
    data = bytearray(build_zip([("short.mp3", os.urandom(100))], zipfile.ZIP_STORED))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
        central = zf.start_dir  # type: ignore[attr-defined]
    struct.pack_into("<L", data, info.header_offset + 22, 150)
    struct.pack_into("<L", data, central + 24, 150)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        assert len(zf.read("short.mp3")) == 100
    err = _refused(area, bytes(data))
    assert isinstance(err, ArchiveDamaged)
    assert "entry produced 100 bytes, its header says 150" in err.reason


# --- Z3: damage and unsupported archives ------------------------------------------------------


def test_bad_crc_is_damage_and_nothing_is_written(area: dict[str, Path]) -> None:
    payload = os.urandom(10_000)
    data = bytearray(build_zip([("a.mp3", b"first"), ("b.mp3", payload)], zipfile.ZIP_STORED))
    where = bytes(data).index(payload) + 5000
    data[where] ^= 0xFF
    err = _refused(area, bytes(data))
    assert isinstance(err, ArchiveDamaged)
    assert err.code == "damaged_archive"
    assert "Bad CRC-32" in err.reason
    assert err.entries == ["b.mp3"]


def test_truncated_archive_is_damage(area: dict[str, Path]) -> None:
    data = build_zip([("a.mp3", os.urandom(20_000))])
    err = _refused(area, data[: len(data) // 2])
    assert isinstance(err, ArchiveDamaged)
    assert "not a readable ZIP archive" in err.reason


def test_html_error_page_is_not_an_archive(area: dict[str, Path]) -> None:
    err = _refused(area, b"<html><body>Invalid Token</body></html>")
    assert "pack.zip: not a readable ZIP archive" in err.reason


def test_encrypted_entries_are_refused(area: dict[str, Path]) -> None:
    data = patch_entry(build_zip([("a.mp3", b"x"), ("secret.mp3", b"y")]), 1, flag=0x1)
    err = _refused(area, data)
    assert "encrypted entries are not supported" in err.reason
    assert err.entries == ["secret.mp3"]


def test_deflate64_is_refused_by_name(area: dict[str, Path]) -> None:
    data = patch_entry(build_zip([("big.wav", b"z" * 1000)]), 0, method=9)
    err = _refused(area, data)
    assert "unsupported compression method 9 (Deflate64)" in err.reason
    assert err.entries == ["big.wav"]


def test_spanned_set_is_refused(area: dict[str, Path]) -> None:
    data = b"PK\x07\x08" + build_zip([("a.mp3", b"x")])
    err = _refused(area, data)
    assert "spanned (multi-volume) ZIP set is not supported" in err.reason
    assert not isinstance(err, ArchiveDamaged)


def test_staging_on_another_filesystem_is_refused(area: dict[str, Path]) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == area["root"].stat().st_dev:
        pytest.skip("no second filesystem to stage on")
    area["archive"].write_bytes(build_zip([("a.mp3", b"x")]))
    with pytest.raises(OSError, match="not on the filesystem"):
        extract_zip(
            area["archive"], area["dest"], shm / "pooldaemon-test-staging", max_total_bytes=LIMIT
        )
    assert not (shm / "pooldaemon-test-staging").exists()
    assert not area["dest"].exists()


# --- multi-part sets --------------------------------------------------------------------------


def _parts(area: dict[str, Path], *archives: bytes) -> list[Path]:
    paths = []
    for i, data in enumerate(archives, 1):
        path = area["root"] / ".pooldaemon" / f"pack.part{i}.zip"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_parts_share_one_folder(area: dict[str, Path]) -> None:
    parts = _parts(
        area,
        build_zip([("Pack/01.mp3", b"one")]),
        build_zip([("Pack/02.mp3", b"two"), ("Pack/Extras/03.mp3", b"three")]),
    )
    paths = extract_parts(parts, area["dest"], area["staging"], max_total_bytes=LIMIT)
    assert [p.relative_to(area["dest"]).as_posix() for p in paths] == [
        "Pack/01.mp3",
        "Pack/02.mp3",
        "Pack/Extras/03.mp3",
    ]
    assert [p.read_bytes() for p in paths] == [b"one", b"two", b"three"]
    assert all(p.exists() for p in parts)


def test_collision_across_parts_is_refused(area: dict[str, Path]) -> None:
    parts = _parts(area, build_zip([("Pack/01.mp3", b"one")]), build_zip([("pack/01.MP3", b"dup")]))
    before = snapshot(area["root"])
    with pytest.raises(ArchiveRejected) as info:
        extract_parts(parts, area["dest"], area["staging"], max_total_bytes=LIMIT)
    assert info.value.reason == (
        "part 2 (pack.part2.zip): entry names collide with part 1 (pack.part1.zip)"
    )
    assert info.value.entries == ["pack/01.MP3"]
    assert snapshot(area["root"]) == before


def test_damage_in_a_later_part_names_it_and_writes_nothing(area: dict[str, Path]) -> None:
    good = build_zip([("01.mp3", os.urandom(5000))])
    payload = os.urandom(5000)
    bad = bytearray(build_zip([("02.mp3", payload)], zipfile.ZIP_STORED))
    bad[bytes(bad).index(payload) + 10] ^= 1
    parts = _parts(area, good, bytes(bad))
    before = snapshot(area["root"])
    with pytest.raises(ArchiveDamaged) as info:
        extract_parts(parts, area["dest"], area["staging"], max_total_bytes=LIMIT)
    assert info.value.reason.startswith("part 2 (pack.part2.zip): damaged entry")
    assert snapshot(area["root"]) == before


def test_total_limit_counts_all_parts(area: dict[str, Path]) -> None:
    parts = _parts(
        area, build_zip([("a.mp3", os.urandom(60_000))]), build_zip([("b.mp3", os.urandom(60_000))])
    )
    with pytest.raises(ArchiveRejected, match="archive set: expands beyond the limit"):
        extract_parts(parts, area["dest"], area["staging"], max_total_bytes=100_000)
    assert not area["dest"].exists() and not area["staging"].exists()


def test_no_parts_is_a_programming_error(area: dict[str, Path]) -> None:
    with pytest.raises(ValueError):
        extract_parts([], area["dest"], area["staging"], max_total_bytes=LIMIT)
