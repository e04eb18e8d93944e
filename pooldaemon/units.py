"""Durations and sizes as people write them ("2m", "8 MiB") and as the program uses them."""

import re
from decimal import Decimal, InvalidOperation

# docs/interface.md §2: durations are strings like "90s", "2m", "6h". A compound ("1h30m") must list
# each unit at most once, largest first, so a typo like "1m30m" is caught.
_DURATION_UNITS: dict[str, Decimal] = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_DURATION_ORDER = list(_DURATION_UNITS)
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

# Sizes follow GNU coreutils (dd, sort, du): "KiB"/"K" are powers of 1024, "KB" powers of 1000.
# A bare "1G" therefore means 1 GiB. Units are matched case-insensitively ("8 mib" is 8 MiB).
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)
_DISPLAY_UNITS = ("KiB", "MiB", "GiB", "TiB")


def _not_a_duration(text: str) -> ValueError:
    return ValueError(f'"{text}" is not a duration (examples: 90s, 2m, 6h)')


def _not_a_size(text: str) -> ValueError:
    return ValueError(f'"{text}" is not a size (examples: 8 MiB, 512 KiB, 1 GiB)')


def parse_duration(text: str) -> float:
    """Seconds in a duration: "90s", "2m", "6h", "1d", "500ms", "1h30m"; a bare number: seconds."""
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return float(Decimal(stripped))
    total = Decimal(0)
    position = 0
    last_unit = -1
    while position < len(stripped):
        match = _DURATION_PART.match(stripped, position)
        if match is None:
            raise _not_a_duration(text)
        unit = _DURATION_ORDER.index(match.group(2))
        if unit <= last_unit:
            raise _not_a_duration(text)
        last_unit = unit
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if last_unit < 0:
        raise _not_a_duration(text)
    return float(total)


def parse_size(text: str) -> int:
    """Bytes in a size such as "8 MiB", "512 KiB", "8 MB" (8,000,000), "1G" (1 GiB) or "0".

    Fractions are allowed ("1.5 GiB") and rounded to whole bytes.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise _not_a_size(text)
    multiplier = _SIZE_UNITS.get(match.group(2).lower())
    if multiplier is None:
        raise _not_a_size(text)
    try:
        value = Decimal(match.group(1)) * multiplier
    except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
        raise _not_a_size(text) from None
    return int(value.to_integral_value())


def format_size(n: int) -> str:
    """A size for display: "512 B", "8.0 MiB", "1.5 GiB"."""
    sign = "-" if n < 0 else ""
    value = float(abs(n))
    if value < 1024:
        return f"{sign}{int(value)} B"
    for unit in _DISPLAY_UNITS:
        value /= 1024
        if value < 1024 or unit == _DISPLAY_UNITS[-1]:
            return f"{sign}{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """A duration for display, exact to the millisecond: "2m", "6h", "1h30m", "500ms", "0s"."""
    sign = "-" if seconds < 0 else ""
    millis = round(abs(seconds) * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS.items():
        unit_millis = int(size * 1000)
        count, millis = divmod(millis, unit_millis)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def parse_rate(text: str) -> int:
    """Bytes per second in a rate: a size, optionally written with "/s" ("2 MiB/s"); "0": none."""
    stripped = text.strip()
    try:
        return parse_size(stripped[:-2] if stripped.endswith("/s") else stripped)
    except ValueError:
        raise _not_a_size(text) from None
