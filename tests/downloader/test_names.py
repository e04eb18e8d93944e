"""File names DJs want (docs/interface.md §9): the template fields, no debris from empty fields,
and no name repeating a version it already carries — over every title and mix the simulated
pools write."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldaemon.config import FILE_TEMPLATE_FIELDS, DaemonConfig
from pooldaemon.downloader.paths import render_template, sanitize_component, template_fields
from pooldaemon.sim.catalog import MIXES
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.harvest import HarvestSim
from pooldaemon.sim.promoonly import PromoOnlySim

DEFAULT = DaemonConfig.model_fields["file_template"].default
CRATEQ = CrateQSim(records=3000, seed="names")


def name(meta: dict[str, Any], ext: str, template: str = DEFAULT, origin: str = "") -> str:
    """The file name (last level) the template gives a track."""
    fields = template_fields(meta, pool="pool", item_id="1", ext=ext, origin=origin)
    return render_template(template, fields, ext)[-1]


def crateq_meta(record: dict[str, Any]) -> dict[str, Any]:
    """A CrateQ record as the adapter hands it on (tool is the mix)."""
    return {
        "artist": record["artist"],
        "title": record["title"],
        "genre": record["genre"],
        "mix": record["tool"],
        "advisory": record["advisory"],
        "quality": record["quality"],
        "bpm": record["bpm"],
        "year": record["releaseYear"],
    }


def test_the_default_template_is_the_documented_one() -> None:
    assert DEFAULT == "{pool}/{genre}/{artist} - {title} ({mix})"


def test_every_documented_field_is_accepted() -> None:
    documented = "pool source genre artist title song version mix advisory bpm key year rule"
    assert set(documented.split()) <= set(FILE_TEMPLATE_FIELDS)


def test_the_simulated_crateq_catalog_covers_every_mix() -> None:
    assert {record["tool"] for record in CRATEQ.catalog.records()} == set(MIXES)


def test_crateq_titles_carry_their_mix_so_nothing_is_appended() -> None:
    # The simulator writes each tool into the title ("[Clean Club Mix]", "[Xtendz] - qHD -
    # Dirty", "[Dirty 101-124]" for a transition; nothing for "Single", the plain song).
    for record in CRATEQ.catalog.records():
        ext = record["kind"]
        got = name(crateq_meta(record), ext)
        expected = sanitize_component(f"{record['artist']} - {record['title']}.{ext}")
        assert got == expected, (record["title"], record["tool"])
        # The title says the whole version too: advisory, and the quality of a video.
        with_version = name(crateq_meta(record), ext, "{artist} - {title} ({version})")
        assert with_version == expected, (record["title"], record["tool"], record["quality"])


@pytest.mark.parametrize(
    ("title", "mix", "ext", "appended"),
    [
        ("Sexy Lady [Xtendz] - qHD - Clean", "Xtendz", "mp4", ""),
        ("First Rhythm [Clean Xtendz]", "Xtendz", "mp3", ""),
        ("First Rhythm [Xtendz] - FHD - Dirty", "Xtendz", "mp4", ""),
        ("Wet [Dirty Acc]", "Acapella", "mp3", ""),
        ("Song [Clean DMS Edit]", "DMS", "mp3", ""),
        ("Song [Clean]", "Single", "mp3", ""),
        ("Song [Clean]", "Extended", "mp3", " (Extended)"),
        ("Houdini", "Extended Mix", "mp3", " (Extended Mix)"),
        ("Houdini", "Intro - Clean", "mp3", " (Intro - Clean)"),
    ],
)
def test_a_version_in_the_title_is_not_repeated(
    title: str, mix: str, ext: str, appended: str
) -> None:
    got = name({"artist": "A", "title": title, "mix": mix}, ext)
    assert got == f"A - {title}{appended}.{ext}"


def test_a_version_shows_only_what_the_name_does_not_say() -> None:
    meta = {"artist": "A", "title": "Song [Clean]", "mix": "Extended"}
    assert name(meta, "mp3", "{artist} - {title} ({version})") == "A - Song [Clean] (Extended).mp3"
    got = name(meta, "mp3", "{artist} - {title} ({mix}) [{version}]")
    assert got == "A - Song [Clean] (Extended).mp3"
    song = name(meta, "mp3", "{artist} - {song} ({version})")
    assert song == "A - Song (Extended Clean).mp3"


def test_an_artist_named_like_a_mix_does_not_hide_the_mix() -> None:
    got = name({"artist": "Club Dogo", "title": "Song [Clean]", "mix": "Club"}, "mp3")
    assert got == "Club Dogo - Song [Clean] (Club).mp3"


def test_promo_only_and_harvest_mixes_appear_at_most_once() -> None:
    promo = PromoOnlySim(tracks=24)
    harvest = HarvestSim()
    cases = [(t.artist, t.title, t.mix) for t in promo.tracks.values()]
    cases += [(t.artist, t.title, t.version) for a in harvest.albums for t in a.tracks]
    mixes = {mix for _, _, mix in cases}
    assert {"Extended Mix", "Intro - Clean", "Original Mix", "Instrumental", "Main"} <= mixes
    for artist, title, mix in cases:
        got = name({"artist": artist, "title": title, "mix": mix}, "mp3")
        count = got.casefold().count(mix.casefold())
        plain = mix in ("Original Mix", "Main")  # the plain song: nothing to add
        assert count == (0 if plain else 1), (got, mix)


def test_song_version_and_the_other_fields() -> None:
    meta = {
        "artist": "Yung Berg ft Junior",
        "title": "Sexy Lady [Xtendz] - qHD - Clean",
        "mix": "Xtendz",
        "advisory": "Clean",
        "quality": "HD 1080",
        "genre": "Hip Hop",
        "bpm": 98.0,
        "key": "8A",
        "date": "2019-05-01",
        "source": "smashvidz",
    }
    template = "{rule}/{source}/{year}/{artist} - {song} ({version}) [{key} {bpm}] {advisory}"
    got = render_template(
        template,
        template_fields(meta, pool="crateq", item_id="7", ext="mp4", origin="rule:Fresh Hip Hop"),
        "mp4",
    )
    assert got == [
        "Fresh Hip Hop",
        "smashvidz",
        "2019",
        # {advisory} is empty: the version before it already says "Clean".
        "Yung Berg ft Junior - Sexy Lady (Xtendz Clean qHD) [8A 98].mp4",
    ]


def test_rule_is_empty_unless_a_rule_made_the_job() -> None:
    for origin in ("request", "auto", "drop", ""):
        fields = template_fields({"title": "T"}, pool="p", item_id="1", ext="mp3", origin=origin)
        assert fields["rule"] is None
        assert render_template("{title} [{rule}]", fields, "mp3") == ["T.mp3"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{artist} - {title} - {version}", "A - T"),
        ("{version} - {artist} - {title}", "A - T"),
        ("{artist} - {version} - {title}", "A - T"),
        ("{artist} - {title} ({mix}, {advisory})", "A - T"),
        ("{artist} - {title} [{key}] {bpm}", "A - T"),
        ("{artist} - {title} ({bpm} BPM)", "A - T (BPM)"),
        ("{artist}_{title}_{key}", "A_T"),
        ("{title} ({mix} {advisory})", "T"),
        ("{artist} - {title} - {year} - {rule}", "A - T"),
    ],
)
def test_empty_fields_leave_no_debris(template: str, expected: str) -> None:
    fields = template_fields({"artist": "A", "title": "T"}, pool="p", item_id="1", ext="mp3")
    assert render_template(template, fields, "mp3") == [f"{expected}.mp3"]


def test_debris_rules_keep_what_is_filled() -> None:
    fields = template_fields(
        {"artist": "A", "title": "T", "advisory": "Dirty"}, pool="p", item_id="1", ext="mp3"
    )
    assert render_template("{artist} - {title} ({mix}, {advisory})", fields, "mp3") == [
        "A - T (Dirty).mp3"
    ]
    assert render_template("{artist} - {title} - {key} - {advisory}", fields, "mp3") == [
        "A - T - Dirty.mp3"
    ]


def test_no_empty_brackets_or_dangling_dashes_over_the_catalog() -> None:
    template = "{pool}/{artist} - {song} ({version}) [{key}] - {rule}"
    debris = re.compile(r"\(\s*\)|\[\s*\]|\s-\s*$|^\s*-\s|\s-\s+-\s|\s{2}")
    for record in list(CRATEQ.catalog.records())[:500]:
        got = name(crateq_meta(record), record["kind"], template)
        stem = got.rsplit(".", 1)[0]
        assert not debris.search(stem), got


def test_a_name_field_missing_still_reads_unknown() -> None:
    fields = template_fields({"title": "T"}, pool="p", item_id="1", ext="mp3")
    assert render_template(DEFAULT, fields, "mp3") == [
        "p",
        "Unknown Genre",
        "Unknown Artist - T.mp3",
    ]


_OPTIONAL = ["mix", "version", "advisory", "key", "bpm", "year", "rule", "source"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([" - ", " ", "_", ", ", " (", ") ", " [", "] "]),
            st.sampled_from(_OPTIONAL),
        ),
        min_size=1,
        max_size=5,
    ),
    st.sets(st.sampled_from(_OPTIONAL)),
)
@settings(max_examples=300, deadline=None)
def test_any_mix_of_empty_optional_fields_leaves_no_debris(
    tail: list[tuple[str, str]], filled: set[str]
) -> None:
    template = "{artist} - {title}"
    opened: list[str] = []
    for separator, field in tail:
        if separator.strip() in ("(", "[") and not opened:
            opened.append(")" if "(" in separator else "]")
            template += f"{separator}{{{field}}}"
        elif separator.strip() in (")", "]"):
            template += f", {{{field}}}"
        else:
            template += f"{separator}{{{field}}}"
    template += "".join(opened)
    values = {field: f"V{field}" for field in filled}
    got = render_template(template, {"artist": "A", "title": "T", **values}, "mp3")[0]
    stem = got.removesuffix(".mp3")
    assert stem.startswith("A - T")
    assert not re.search(r"\(\s*\)|\[\s*\]", stem), (template, filled, got)
    assert not re.search(r"[-_,]\s*$|\(\s*[-_,]|[-_,]\s*[)\]]", stem), (template, filled, got)
    assert not re.search(r"\s[-_,]\s*[-_,]\s", stem), (template, filled, got)
    for field in filled & {field for _, field in tail}:
        assert f"V{field}" in stem
