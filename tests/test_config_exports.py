"""The `[exports]` table: defaults, "" for off, checks that name the fix, display, environment."""

from pathlib import Path

import pytest

from pooldaemon.config import ConfigError, effective_dict, load_config, render_effective


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}


def _load(tmp_path: Path, env: dict[str, str], text: str, **extra: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={**env, **extra})


def _problems(tmp_path: Path, env: dict[str, str], text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, env, text)
    return caught.value.problems


def test_defaults_playlists_under_the_download_dir_and_the_rest_off(
    tmp_path: Path, env: dict[str, str]
) -> None:
    cfg = load_config(None, env=env)  # no config file: every default
    exports = cfg.exports
    assert exports.m3u8_dir == Path(env["HOME"]) / "Music/RecordPools/Playlists"
    assert (exports.rekordbox_xml, exports.traktor_nml, exports.serato_dir) == (None, None, None)
    assert exports.playlists == ("pool", "rule", "recent")
    moved = _load(tmp_path, env, '[daemon]\ndownload_dir = "lib"\n')
    assert moved.exports.m3u8_dir == tmp_path / "lib" / "Playlists"  # type: ignore[attr-defined]


def test_paths_expand_and_empty_switches_off(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = _load(
        tmp_path,
        env,
        '[exports]\nm3u8_dir = ""\nrekordbox_xml = "~/DJ/rekordbox.xml"\n'
        'traktor_nml = "pd.nml"\nserato_dir = "/Volumes/USB/_Serato_"\nplaylists = ["recent"]\n',
    )
    exports = cfg.exports  # type: ignore[attr-defined]
    assert exports.m3u8_dir is None
    assert exports.rekordbox_xml == Path(env["HOME"]) / "DJ/rekordbox.xml"
    assert exports.traktor_nml == tmp_path / "pd.nml"
    assert exports.serato_dir == Path("/Volumes/USB/_Serato_")
    assert exports.playlists == ("recent",)


def test_bad_values_name_the_key_and_the_fix(tmp_path: Path, env: dict[str, str]) -> None:
    problems = _problems(
        tmp_path,
        env,
        '[exports]\nrekordbox_xml = "~/rb.txt"\ntraktor_nml = 5\nserato_dir = "~/Music"\n'
        'playlists = ["pool", "rules"]\nm3u_dir = "x"\n',
    )
    home = env["HOME"]
    assert problems == [
        f'exports.rekordbox_xml: must name a .xml file, e.g. "~/Music/rekordbox.xml" '
        f'(got "{home}/rb.txt"); "" switches it off',
        'exports.traktor_nml: must be a path, or "" to switch this export off (got 5)',
        f'exports.serato_dir: must be Serato\'s "_Serato_" folder, e.g. "~/Music/_Serato_" '
        f'(got "{home}/Music"); "" switches it off',
        'exports.playlists[1]: "rules" is not a kind of playlist (use "pool", "rule" or '
        '"recent"; did you mean "rule"?)',
        'exports.m3u_dir: unknown key (did you mean "m3u8_dir"?)',
    ]
    assert _problems(tmp_path, env, '[exports]\nplaylists = ["pool", "pool"]\n') == [
        'exports.playlists: "pool" is listed twice'
    ]


def test_environment_overrides_one_key(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = _load(
        tmp_path,
        env,
        '[exports]\nrekordbox_xml = "a.xml"\n',
        POOLDAEMON_EXPORTS__PLAYLISTS="pool,rule",
        POOLDAEMON_EXPORTS__M3U8_DIR="",
    )
    exports = cfg.exports  # type: ignore[attr-defined]
    assert exports.playlists == ("pool", "rule")
    assert exports.m3u8_dir is None
    assert exports.rekordbox_xml == tmp_path / "a.xml"


def test_effective_config_shows_exports_with_off_as_empty(
    tmp_path: Path, env: dict[str, str]
) -> None:
    cfg = _load(tmp_path, env, '[exports]\nrekordbox_xml = "/x/rb.xml"\n')
    text = render_effective(cfg)  # type: ignore[arg-type]
    section = text[text.index("[exports]") :]
    assert section.splitlines()[:6] == [
        "[exports]",
        f'm3u8_dir = "{env["HOME"]}/Music/RecordPools/Playlists"',
        'rekordbox_xml = "/x/rb.xml"',
        'traktor_nml = ""',
        'serato_dir = ""',
        'playlists = ["pool", "rule", "recent"]',
    ]
    assert effective_dict(cfg)["exports"] == {  # type: ignore[arg-type]
        "m3u8_dir": f"{env['HOME']}/Music/RecordPools/Playlists",
        "rekordbox_xml": "/x/rb.xml",
        "traktor_nml": None,
        "serato_dir": None,
        "playlists": ["pool", "rule", "recent"],
    }


def test_the_example_config_documents_every_exports_key(env: dict[str, str]) -> None:
    import re

    from pooldaemon.config import ExportsConfig, toml_keys

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    section = text[text.index("[exports]") :]
    for key in toml_keys(ExportsConfig):
        assert re.search(rf"^{key} = ", section, re.MULTILINE), key
    exports = load_config(example, env=env).exports
    assert exports.m3u8_dir == Path(env["HOME"]) / "Music/RecordPools/Playlists"
    assert exports.rekordbox_xml is None and exports.serato_dir is None
