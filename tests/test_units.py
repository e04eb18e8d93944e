"""Durations and sizes: parsing what people write, and formatting for display."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pooldaemon.units import format_duration, format_size, parse_duration, parse_size

KIB, MIB, GIB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("2m", 120.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1.5h", 5400.0),
        ("90 s", 90.0),
        (" 2m ", 120.0),
        ("90", 90.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["2x", "", " ", "m", "1m30m", "30m1h", "1h30", "-5s", "2M", "1e3", "5 minutes", "h1"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f'"{text}" is not a duration (examples: 90s, 2m, 6h)'


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8 MiB", 8 * MIB),
        ("8MiB", 8 * MIB),
        ("8 mib", 8 * MIB),
        ("8 MB", 8_000_000),
        ("512 KiB", 512 * KIB),
        ("512 KB", 512_000),
        ("1G", GIB),  # GNU coreutils: a bare letter is a power of 1024
        ("1GiB", GIB),
        ("1 GB", 1_000_000_000),
        ("2 TiB", 2 * 1024**4),
        ("1.5 KiB", 1536),
        ("16K", 16 * KIB),
        ("0", 0),
        ("1024", 1024),
        ("100 B", 100),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["8 MiBB", "", "-1", "1e3", "MiB", "8 Mi", "8 MiB/s", "eight"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert str(caught.value) == f'"{text}" is not a size (examples: 8 MiB, 512 KiB, 1 GiB)'


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (8 * MIB, "8.0 MiB"),
        (8 * GIB, "8.0 GiB"),
        (3 * 1024**5, "3072.0 TiB"),
        (-2 * MIB, "-2.0 MiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (90, "1m30s"),
        (120, "2m"),
        (21600, "6h"),
        (5400, "1h30m"),
        (90061, "1d1h1m1s"),
        (-60, "-1m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**11))
def test_format_duration_round_trips_to_the_millisecond(millis: int) -> None:
    assert parse_duration(format_duration(millis / 1000)) == pytest.approx(millis / 1000)
