"""Any name round-trips through XML attributes and rekordbox Locations (docs/reliability.md E2)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from pyrekordbox.rbxml import decode_path

from pooldaemon.exports.rekordbox import location
from pooldaemon.exports.xmltext import attr

# Text XML 1.0 can carry: no control characters but tab/LF/CR, no surrogates, no U+FFFE/F.
xml_text = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(32) if c not in (9, 10, 13)]
        + ["\ufffe", "\uffff"],
    )
)
file_names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=["/", "\0"]), min_size=1
).filter(lambda name: name not in (".", ".."))


@settings(max_examples=300, deadline=None)
@given(xml_text)
def test_attribute_text_round_trips(text: str) -> None:
    element = ET.fromstring(f'<x a="{attr(text)}"/>')
    assert element.attrib["a"] == text


@settings(max_examples=300, deadline=None)
@given(file_names)
def test_location_round_trips_through_pyrekordbox(name: str) -> None:
    path = Path("/Music", name)
    encoded = location(path)
    assert encoded.startswith("file://localhost/Music/")
    # Nothing a URI would misread is left literal, and every `%` starts an escape.
    rest = encoded[len("file://localhost") :]
    assert not set(rest) & set(' "<>#?[]\\')
    assert re.fullmatch(r"([^%]|%[0-9A-F]{2})*", rest)
    element = ET.fromstring(f'<TRACK Location="{attr(encoded)}"/>')
    assert "/" + decode_path(element.attrib["Location"]) == str(path)


def test_forbidden_characters_become_replacement_characters() -> None:
    assert attr("a\x01b\ud800c") == "a\ufffdb\ufffdc"
    text = attr("t\x0bab")
    assert ET.fromstring(f'<x a="{text}"/>').attrib["a"] == "t\ufffdab"
