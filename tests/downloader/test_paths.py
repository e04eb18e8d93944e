"""Name sanitizing, template rendering and safe joins (docs/interface.md §5, docs/reliability.md
N1–N3)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldaemon.downloader.paths import (
    PathEscape,
    ensure_dirs,
    final_path,
    render_template,
    sanitize_component,
    sanitize_ext,
    unique_path,
)

TEMPLATE = "{genre}/{artist} - {title} ({mix})"


# --- sanitize_component: the table from docs/reliability.md N1/N2
# -----------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../.bashrc", "_.._.bashrc"),
        ("/etc/passwd", "_etc_passwd"),
        ("..\\..\\x", "_.._x"),
        ("C:\\x", "C__x"),
        ("%2E%2E%2F", "%2E%2E%2F"),  # stays literal: nothing decodes it, so it cannot climb
        ("Title\x00Injected", "Title Injected"),
        ("Title\nINFO fake log line", "Title INFO fake log line"),
        ("Tab\there\r\n", "Tab here"),
        ("CON.mp3", "CON_.mp3"),
        ("con", "con_"),
        ("NUL", "NUL_"),
        ("lpt9.tar.gz", "lpt9_.tar.gz"),
        ("COM10", "COM10"),  # not reserved
        ("CONSOLE", "CONSOLE"),
        ("Trailing dot.", "Trailing dot"),
        ("Trailing space   ", "Trailing space"),
        ("  .hidden", "hidden"),
        (".pooldaemon", "pooldaemon"),  # can never name the work area (docs/interface.md §5)
        ("gnp.\u202eexe.mp3", "gnp.exe.mp3"),
        ("a\u2066b\u2069c", "abc"),
        ('What? <Now> "|*"', "What_ _Now_ ____"),
        ("Artist: Title", "Artist_ Title"),
        ("AC/DC", "AC_DC"),
        ("many     spaces", "many spaces"),
        (".", "Unknown"),
        ("..", "Unknown"),
        ("", "Unknown"),
        ("   ", "Unknown"),
        ("\x00\x01", "Unknown"),
    ],
)
def test_sanitize_table(raw: str, expected: str) -> None:
    assert sanitize_component(raw) == expected


def test_fallback_is_used_for_empty_names() -> None:
    assert sanitize_component("...", fallback="Unknown Genre") == "Unknown Genre"


def test_nfc_and_nfd_give_the_same_name() -> None:
    nfc = "Beyoncé – Déjà Vu"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    assert sanitize_component(nfd) == sanitize_component(nfc) == nfc


def test_long_emoji_name_is_cut_on_a_character_boundary_keeping_the_extension() -> None:
    name = "🎧" * 300 + ".mp3"
    out = sanitize_component(name)
    assert out.endswith(".mp3")
    assert len(out.encode()) <= 200
    assert set(out[:-4]) == {"🎧"}
    assert len(out.encode()) == 4 * ((200 - 4) // 4) + 4


def test_long_name_without_extension_is_cut_and_trimmed() -> None:
    out = sanitize_component("a" * 198 + " . b" * 10)
    assert len(out.encode()) <= 200
    assert not out.endswith((" ", "."))


def test_tiny_byte_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        sanitize_component("x", max_bytes=8)


@given(st.text())
@settings(max_examples=400, deadline=None)
def test_sanitize_properties(text: str) -> None:
    out = sanitize_component(text)
    assert out not in ("", ".", "..")
    assert "/" not in out and "\\" not in out and "\0" not in out
    assert not any(unicodedata.category(ch) == "Cc" for ch in out)
    assert not any(ch in out for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert len(out.encode()) <= 200
    assert out == out.strip() and not out.endswith(".") and not out.startswith(".")
    assert unicodedata.is_normalized("NFC", out)
    assert sanitize_component(out) == out


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=150, max_size=400))
@settings(max_examples=200, deadline=None)
def test_long_names_stay_in_budget_and_stable(text: str) -> None:
    out = sanitize_component(text + ".flac")
    assert len(out.encode()) <= 200
    assert sanitize_component(out) == out


# --- render_template -------------------------------------------------------------------------


def test_render_keeps_levels_and_appends_extension() -> None:
    comps = render_template(
        TEMPLATE,
        {"genre": "House", "artist": "Daft Punk", "title": "One More Time", "mix": "Club"},
        "MP3",
    )
    assert comps == ["House", "Daft Punk - One More Time (Club).mp3"]


def test_empty_mix_drops_its_brackets() -> None:
    for mix in (None, "", "   "):
        comps = render_template(
            TEMPLATE, {"genre": "House", "artist": "A", "title": "T", "mix": mix}, "mp3"
        )
        assert comps == ["House", "A - T.mp3"]
    comps = render_template("{artist} - {title} [{label}]", {"artist": "A", "title": "T"}, "wav")
    assert comps == ["A - T.wav"]


def test_missing_fields_become_unknown_field() -> None:
    comps = render_template(TEMPLATE, {"title": "T"}, "mp3")
    assert comps == ["Unknown Genre", "Unknown Artist - T.mp3"]
    assert render_template("{release_name}/{title}", {}, "zip") == [
        "Unknown Release Name",
        "Unknown Title.zip",
    ]


def test_field_values_cannot_add_levels_or_climb() -> None:
    fields = {"genre": "../../etc", "artist": "/etc/passwd", "title": "..\\..\\x", "mix": "a/b"}
    comps = render_template(TEMPLATE, fields, "mp3")
    assert len(comps) == 2
    assert comps == ["_.._etc", "_etc_passwd - .._.._x (a_b).mp3"]


def test_a_value_that_sanitizes_to_nothing_uses_the_field_fallback() -> None:
    assert render_template("{genre}/{title}", {"genre": " . ", "title": "T"}, "mp3")[0] == (
        "Unknown Genre"
    )


def test_extension_is_sanitized_and_kept_under_the_byte_cut() -> None:
    comps = render_template("{title}", {"title": "é" * 300}, ".M4A!")
    assert comps[0].endswith(".m4a")
    assert len(comps[0].encode()) <= 200
    assert sanitize_ext("Very.Long.Extension!!") == "verylongex"
    assert render_template("{title}", {"title": "T"}, "") == ["T"]


def test_format_specs_and_numbers() -> None:
    fields = {"bpm": 128.0, "title": "T", "year": "2024"}
    assert render_template("{bpm:03d} {title}", fields, "mp3") == ["128 T.mp3"]
    # A spec that does not fit the value shows the value instead of failing.
    assert render_template("{year:03d} {title}", fields, "mp3") == ["2024 T.mp3"]


def test_reserved_stem_in_template() -> None:
    assert render_template("{title}", {"title": "CON"}, "mp3") == ["CON_.mp3"]


def test_empty_template_is_refused() -> None:
    with pytest.raises(ValueError):
        render_template("//", {}, "mp3")


# --- final_path, ensure_dirs -----------------------------------------------------------------


@given(
    st.dictionaries(
        st.sampled_from(["genre", "artist", "title", "mix"]),
        st.one_of(st.none(), st.text(), st.integers(), st.floats(allow_nan=False)),
    ),
    st.text(max_size=12),
)
@settings(max_examples=300, deadline=None)
def test_any_field_values_stay_under_root(fields: dict[str, object], ext: str) -> None:
    root = Path("/nonexistent-library-root")
    comps = render_template(TEMPLATE, fields, ext)
    path = final_path(root, comps)
    assert os.path.realpath(path).startswith("/nonexistent-library-root/")
    assert all(len(c.encode()) <= 200 for c in comps)
    assert len(comps) == 2


def test_final_path_joins_under_root(tmp_path: Path) -> None:
    assert final_path(tmp_path, ["House", "A - T.mp3"]) == tmp_path / "House" / "A - T.mp3"


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "a\\b", "x\0y"])
def test_final_path_refuses_unsafe_components(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PathEscape):
        final_path(tmp_path, ["ok", bad])


def test_final_path_refuses_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "library"
    root.mkdir()
    (root / "Artist").symlink_to(outside)
    with pytest.raises(PathEscape, match="symlink"):
        final_path(root, ["Artist", "x.mp3"])
    # Even a symlink that stays inside the root is refused, and so is one at the file name.
    (root / "Inside").mkdir()
    (root / "Alias").symlink_to(root / "Inside")
    with pytest.raises(PathEscape):
        final_path(root, ["Alias", "x.mp3"])
    (root / "Inside" / "x.mp3").symlink_to(outside / "x.mp3")
    with pytest.raises(PathEscape):
        final_path(root, ["Inside", "x.mp3"])


def test_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert final_path(link, ["a", "b.mp3"]) == link / "a" / "b.mp3"


def test_ensure_dirs_creates_levels(tmp_path: Path) -> None:
    folder = ensure_dirs(tmp_path, ["House", "2024", "A - T.mp3"])
    assert folder == tmp_path / "House" / "2024"
    assert folder.is_dir() and not (folder / "A - T.mp3").exists()
    assert ensure_dirs(tmp_path, ["House", "2024", "B.mp3"]) == folder  # existing is fine
    assert ensure_dirs(tmp_path, ["file.mp3"]) == tmp_path


def test_ensure_dirs_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "library"
    root.mkdir()
    (root / "Artist").symlink_to(outside)
    with pytest.raises(PathEscape, match="symlink"):
        ensure_dirs(root, ["Artist", "Album", "x.mp3"])
    assert list(outside.iterdir()) == []


def test_ensure_dirs_needs_an_existing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ensure_dirs(tmp_path / "unmounted", ["a", "b.mp3"])
    assert not (tmp_path / "unmounted").exists()


def test_ensure_dirs_reports_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "House").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        ensure_dirs(tmp_path, ["House", "x.mp3"])


# --- unique_path -----------------------------------------------------------------------------


def test_unique_path_free_name_is_kept(tmp_path: Path) -> None:
    assert unique_path(tmp_path / "Track.mp3") == tmp_path / "Track.mp3"
    assert unique_path(tmp_path / "missing" / "Track.mp3") == tmp_path / "missing" / "Track.mp3"


def test_unique_path_collides_case_insensitively(tmp_path: Path) -> None:
    (tmp_path / "Track.mp3").write_bytes(b"one")
    assert unique_path(tmp_path / "track.mp3") == tmp_path / "track (2).mp3"
    (tmp_path / "TRACK (2).MP3").write_bytes(b"two")
    assert unique_path(tmp_path / "track.mp3") == tmp_path / "track (3).mp3"


def test_unique_path_collides_across_normal_forms(tmp_path: Path) -> None:
    (tmp_path / unicodedata.normalize("NFD", "Déjà.mp3")).write_bytes(b"x")
    assert unique_path(tmp_path / "Déjà.mp3") == tmp_path / "Déjà (2).mp3"


def test_unique_path_adopts_same_content(tmp_path: Path) -> None:
    (tmp_path / "Track.mp3").write_bytes(b"other")
    (tmp_path / "Track (2).mp3").write_bytes(b"ours")
    seen: list[Path] = []

    def same(path: Path) -> bool:
        seen.append(path)
        return path.read_bytes() == b"ours"

    assert unique_path(tmp_path / "track.mp3", same_content=same) == tmp_path / "Track (2).mp3"
    assert seen == [tmp_path / "Track.mp3", tmp_path / "Track (2).mp3"]


def test_unique_path_never_adopts_a_folder(tmp_path: Path) -> None:
    (tmp_path / "Track.mp3").mkdir()
    assert unique_path(tmp_path / "Track.mp3", same_content=lambda p: True) == (
        tmp_path / "Track (2).mp3"
    )


def test_unique_path_for_folders_numbers_the_whole_name(tmp_path: Path) -> None:
    (tmp_path / "Pack Vol.2").mkdir()
    assert unique_path(tmp_path / "Pack Vol.2", split_ext=False) == tmp_path / "Pack Vol.2 (2)"
    assert unique_path(tmp_path / "Pack Vol.2") == tmp_path / "Pack Vol (2).2"


def test_unique_path_suffix_stays_within_200_bytes(tmp_path: Path) -> None:
    name = sanitize_component("🎧" * 100 + ".mp3")
    (tmp_path / name).write_bytes(b"x")
    out = unique_path(tmp_path / name)
    assert out.name.endswith(" (2).mp3")
    assert len(out.name.encode()) <= 200
