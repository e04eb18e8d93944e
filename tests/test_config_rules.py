"""`[[rules]]` and `[library]` in the config (docs/interface.md §7): typed, checked, and a bad rule
keeps the daemon from starting, with one line per problem naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ConfigFactory

from pooldaemon.cli.daemon import main as pooldaemon_cli
from pooldaemon.config import ConfigError, load_config, render_effective

POOLS = """
[pools.crateq]
type = "crateq"
api_key = "k-123"
username = "dj"
password = "pw-crateq"

[pools.promoonly]
type = "promoonly"
email = "dj@example.com"
password = "pw-promo"
"""

FULL_RULE = """
[[rules]]
name = "house-extended"
pools = ["crateq"]
words = "remix"
genre = ["House", "Tech House"]
bpm = "120-128"
year = "2024-2026"
mix = ["Extended", "Club"]
exclude_mix = ["Short Edit", "Quick Hit"]
exclude_words = ["acapella"]
advisory = "clean"
media = "audio"
one_version = true
prefer_mix = ["Extended", "Intro", "Main"]
max_per_day = 50
folder = "Rules/{rule}"
enabled = true

[library]
prefer_pools = ["promoonly", "crateq"]
"""


def load(config_factory: ConfigFactory, text: str) -> list[str]:
    """The problems of a config, one line each (empty: it loads)."""
    try:
        load_config(config_factory(POOLS + text), env={})
    except ConfigError as err:
        return err.problems
    return []


def test_every_key_of_the_documented_rule(config_factory: ConfigFactory) -> None:
    cfg = load_config(config_factory(POOLS + FULL_RULE), env={})
    (rule,) = cfg.rules
    assert rule.name == "house-extended" and rule.origin == "rule:house-extended"
    assert rule.pools == ("crateq",)
    assert rule.genre == ("House", "Tech House")
    assert (rule.bpm, rule.year) == ("120-128", "2024-2026")
    assert rule.mix == ("Extended", "Club") and rule.exclude_mix == ("Short Edit", "Quick Hit")
    assert rule.exclude_words == ("acapella",)
    assert (rule.advisory, rule.media, rule.one_version) == ("clean", "audio", True)
    assert rule.prefer_mix == ("Extended", "Intro", "Main")
    assert (rule.max_per_day, rule.folder, rule.enabled) == (50, "Rules/{rule}", True)
    assert cfg.library.prefer_pools == ("promoonly", "crateq")
    shown = render_effective(cfg)
    assert "[[rules]]" in shown and 'name = "house-extended"' in shown
    library = shown.split("[library]\n", 1)[1].split("\n\n", 1)[0]
    assert 'prefer_pools = ["promoonly", "crateq"]' in library.splitlines()


def test_defaults_and_a_single_genre_as_text(config_factory: ConfigFactory) -> None:
    cfg = load_config(config_factory(POOLS + '[[rules]]\nname = "a"\ngenre = "House"\n'), env={})
    (rule,) = cfg.rules
    assert rule.genre == ("House",) and rule.pools == () and rule.max_per_day is None
    assert not rule.one_version and rule.enabled and rule.folder == ""
    assert load_config(config_factory(POOLS), env={}).rules == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[[rules]]\nname = "a"\ncolour = "red"\n',
            "rules[0].colour: unknown key (known keys: name, pools, words, genre, bpm, year, "
            "mix, exclude_mix, exclude_words, advisory, media, one_version, prefer_mix, "
            "max_per_day, folder, enabled)",
        ),
        (
            '[[rules]]\nname = "a"\nnmae = "b"\n',
            'rules[0].nmae: unknown key (did you mean "name"?)',
        ),
        ('[[rules]]\nbpm = "120"\n', 'rules[0]: missing required key "name"'),
        (
            '[[rules]]\nname = "house music"\n',
            'rules[0].name: "house music" is not a valid rule name: use letters, digits, - and _ '
            "(at most 64)",
        ),
        (
            '[[rules]]\nname = "a"\n[[rules]]\nname = "b"\n[[rules]]\nname = "a"\n',
            'rules[2].name: "a" is the name of rules[0] too; give each rule its own name',
        ),
        (
            '[[rules]]\nname = "a"\nbpm = "128-120"\n',
            "rules[0].bpm: range 128-120 runs backwards (write 120-128)",
        ),
        (
            '[[rules]]\nname = "a"\nbpm = "fast"\n',
            'rules[0].bpm: expected N, N,M,… or N-M (got "fast")',
        ),
        ('[[rules]]\nname = "a"\nbpm = "0-90"\n', "rules[0].bpm: 0 is outside 1-999"),
        (
            '[[rules]]\nname = "a"\nyear = "2024-20266"\n',
            'rules[0].year: expected N, N,M,… or N-M (got "2024-20266")',
        ),
        (
            '[[rules]]\nname = "a"\npools = ["crateqq"]\n',
            'rules[0].pools: no pool "crateqq" is configured (did you mean "crateq"?) '
            "(pools: crateq, promoonly)",
        ),
        (
            '[[rules]]\nname = "a"\nmix = ["Extnded"]\n',
            'rules[0].mix: "Extnded" is not a mix pooldaemon knows (did you mean "Extended"?)',
        ),
        (
            '[[rules]]\nname = "a"\nprefer_mix = ["Extended", "Intor"]\n',
            'rules[0].prefer_mix: "Intor" is not a mix pooldaemon knows (did you mean "Intro"?)',
        ),
        (
            '[[rules]]\nname = "a"\nexclude_mix = ["Quick Hitt"]\n',
            'rules[0].exclude_mix: "Quick Hitt" is not a mix pooldaemon knows '
            '(did you mean "Quick Hit"?)',
        ),
        (
            '[[rules]]\nname = "a"\ngenre = ["House", "HOUSE"]\n',
            'rules[0].genre: "HOUSE" is listed twice (as "House": case does not count)',
        ),
        (
            '[[rules]]\nname = "a"\nadvisory = "explicit"\n',
            'rules[0].advisory: must be one of "clean" or "dirty" (got "explicit")',
        ),
        (
            '[[rules]]\nname = "a"\nmedia = "both"\n',
            'rules[0].media: must be one of "audio" or "video" (got "both")',
        ),
        (
            '[[rules]]\nname = "a"\nmax_per_day = 0\n',
            "rules[0].max_per_day: must be at least 1 (got 0)",
        ),
        (
            '[[rules]]\nname = "a"\nfolder = "../elsewhere"\n',
            'rules[0].folder: folder levels must not be empty, "." or ".."',
        ),
        (
            '[[rules]]\nname = "a"\nfolder = "Rules/{rules}"\n',
            "rules[0].folder: unknown placeholder {rules}",
        ),
        (
            '[[rules]]\nname = "a"\nwords = "!!!"\n',
            'rules[0].words: "!!!" has no letter or digit to search for',
        ),
        (
            '[library]\nprefer_pools = ["harvest"]\n',
            'library.prefer_pools: no pool "harvest" is configured (pools: crateq, promoonly)',
        ),
        ("[library]\nprefer = []\n", 'library.prefer: unknown key (did you mean "prefer_pools"?)'),
        ('[rules]\nname = "a"\n', "rules: must be a list (got a table)"),
    ],
)
def test_bad_rules_are_named_with_the_fix(
    config_factory: ConfigFactory, text: str, problem: str
) -> None:
    problems = load(config_factory, text)
    assert any(line.startswith(problem) for line in problems), problems


def test_a_pools_own_mix_name_is_accepted(config_factory: ConfigFactory) -> None:
    assert load(config_factory, '[[rules]]\nname = "a"\nmix = ["DMS", "Intro - Clean"]\n') == []


def test_a_bad_rule_keeps_the_daemon_from_starting(config_factory: ConfigFactory) -> None:
    config = config_factory(POOLS + '[[rules]]\nname = "a"\nbpm = "128-120"\n')
    checked = CliRunner().invoke(pooldaemon_cli, ["check-config", "--config", str(config)])
    assert checked.exit_code == 1
    assert "rules[0].bpm: range 128-120 runs backwards (write 120-128)" in checked.stderr
    ran = CliRunner().invoke(pooldaemon_cli, ["run", "--config", str(config)])
    assert ran.exit_code == 1
    assert "rules[0].bpm: range 128-120 runs backwards" in ran.stderr
    assert not (Path(config).parent / "state").exists()
