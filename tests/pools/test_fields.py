"""One set of value rules for every pool (docs/reliability.md M3): numbers, flags and text."""

from __future__ import annotations

from typing import Any

import pytest

from pooldaemon.pools.fields import (
    Quarantined,
    flag,
    flag_or_none,
    text,
    text_or_none,
    whole_number,
    whole_number_or_none,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (134, 134),
        ("134", 134),  # the pools send numbers as digit strings
        (" 134 ", 134),
        ("-5", -5),
        ("+5", 5),
        ("120.0", 120),
        (120.0, 120),
        (None, None),
        ("", None),
    ],
)
def test_whole_numbers_as_the_pools_send_them(value: Any, expected: int | None) -> None:
    assert whole_number(value, "bpm") == expected
    assert whole_number_or_none(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("fast", "bpm 'fast' is not a whole number"),
        (120.5, "bpm 120.5 is not a whole number"),
        (float("inf"), "bpm inf is not a whole number"),
        (True, "bpm is a boolean"),
        ("1" * 19, f"bpm {'1' * 19!r} is not a whole number"),
        ([1], "bpm '[1]' is not a whole number"),
    ],
)
def test_what_is_not_a_whole_number_says_why(value: Any, reason: str) -> None:
    with pytest.raises(Quarantined) as caught:
        whole_number(value, "bpm")
    assert str(caught.value) == reason
    assert whole_number_or_none(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, None),
        (0, False),
        (1, True),
        (1.0, True),
        ("False", False),  # `"content_warn": "False"`
        ("TRUE", True),
        (" yes ", True),
        ("n", False),
        ("", False),
    ],
)
def test_flags_as_booleans_numbers_and_words(value: Any, expected: bool | None) -> None:
    assert flag(value, "audio") is expected
    assert flag_or_none(value) is expected


@pytest.mark.parametrize("value", [2, -1, "maybe", "tru", [True], {"a": 1}])
def test_what_is_not_a_flag_is_quarantined_or_absent(value: Any) -> None:
    with pytest.raises(Quarantined, match=r"^audio .* is not a boolean$"):
        flag(value, "audio")
    assert flag_or_none(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Deep House ", "Deep House"),
        ("   ", None),
        (None, None),
        (2024, "2024"),
        (1.5, "1.5"),
    ],
)
def test_text_is_stripped_and_numbers_count(value: Any, expected: str | None) -> None:
    assert text(value, "genre") == expected
    assert text_or_none(value) == expected


@pytest.mark.parametrize("value", [True, ["House"], {"name": "House"}])
def test_what_is_not_text_is_quarantined_or_absent(value: Any) -> None:
    with pytest.raises(Quarantined, match=r"^genre is \w+, not text$"):
        text(value, "genre")
    assert text_or_none(value) is None
