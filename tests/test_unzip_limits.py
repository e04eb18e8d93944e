"""The ZIP limits as configured (docs/interface.md §5, docs/reliability.md Z2): a bomb made of many
small entries, each under the size below which the ratio is not judged, is still bounded by
the entry count and the output budget, and nothing of it reaches the library."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pooldaemon.downloader.unzip import RATIO_FLOOR_BYTES, extract_parts
from pooldaemon.errors import ArchiveRejected

KIB = 1024
#: One entry of zeros just at the ratio floor: it compresses about 1,000:1 and is not judged.
SMALL = RATIO_FLOOR_BYTES


def bomb(path: Path, entries: int, size: int = SMALL) -> Path:
    """`entries` entries of `size` zero bytes each, deflated (a few hundred bytes apiece)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for n in range(entries):
            zf.writestr(f"album/{n:05d}.wav", bytes(size))
    return path


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "library").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path / "library" / "Album", tmp_path / "work" / "staging"


def test_many_small_entries_past_the_output_budget_are_refused_before_a_byte_is_written(
    tmp_path: Path, places: tuple[Path, Path]
) -> None:
    archive = bomb(tmp_path / "bomb.zip", 2_000)  # 125 MiB out of well under 1 MiB
    assert archive.stat().st_size < 2_000 * SMALL / 100  # every entry breaks the ratio
    dest, staging = places
    with pytest.raises(ArchiveRejected, match="expands beyond the limit of 8388608 bytes"):
        extract_parts([archive], dest, staging, max_total_bytes=8 * 1024 * KIB)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    assert not staging.exists() or list(staging.rglob("*.wav")) == []


def test_many_small_entries_past_the_entry_count_are_refused(
    tmp_path: Path, places: tuple[Path, Path]
) -> None:
    archive = bomb(tmp_path / "bomb.zip", 101, size=KIB)
    dest, staging = places
    with pytest.raises(ArchiveRejected, match=r"too many entries: 101 \(limit 100\)"):
        extract_parts([archive], dest, staging, max_total_bytes=1 << 30, max_entries=100)
    assert not dest.exists()


def test_what_the_exemption_allows_is_bounded_by_entries_times_the_floor(
    tmp_path: Path, places: tuple[Path, Path]
) -> None:
    """The most small entries can produce is max_entries x 64 KiB, inside the output budget."""
    archive = bomb(tmp_path / "ok.zip", 100)
    dest, staging = places
    files = extract_parts(
        [archive], dest, staging, max_total_bytes=100 * SMALL, max_entries=100, max_ratio=100
    )
    assert len(files) == 100 and sum(f.stat().st_size for f in files) == 100 * SMALL


def test_an_entry_above_the_floor_is_judged_by_the_configured_ratio(
    tmp_path: Path, places: tuple[Path, Path]
) -> None:
    archive = bomb(tmp_path / "one.zip", 1, size=4 * 1024 * KIB)  # about 1,000:1
    dest, staging = places
    with pytest.raises(ArchiveRejected, match="compression ratio above 100"):
        extract_parts([archive], dest, staging, max_total_bytes=1 << 30, max_ratio=100)
    files = extract_parts([archive], dest, staging, max_total_bytes=1 << 30, max_ratio=5_000)
    assert [f.stat().st_size for f in files] == [4 * 1024 * KIB]
