"""The words and spellings that name a version in a title: the table `songkey` reads titles with.

Data, kept apart from the parsing rules in `songkey.py` so a new spelling is a one-line change
here. Each phrase maps to its category (advisory, mix, video quality, …) and the canonical
name `songkey` reports; docs/songs.md lists them with examples. A leaf: standard library only.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ADV",
    "EDIT",
    "IDENTITY_WORDS",
    "LONGEST",
    "MAIN",
    "MIX",
    "MIXWORD",
    "MIX_ORDER",
    "MIX_RANK",
    "NEUTRAL",
    "QNUM",
    "QUAL",
    "REMIX",
    "TRANS",
    "VIDEO",
    "VOCAB",
]

# -- ----------------------------------------------------------------------

ADV, MIX, QUAL, QNUM, VIDEO, NEUTRAL, MAIN, EDIT, REMIX, MIXWORD, TRANS = range(11)

# Mix words in the order a label lists them.
MIX_ORDER: Final = (
    "extended",
    "xtendz",
    "club",
    "dub",
    "radio edit",
    "short edit",
    "quick hit",
    "snippet",
    "hype intro",
    "intro",
    "outro",
    "acapella",
    "acapella in",
    "acapella out",
    "instrumental",
    "redrum",
    "remix",
    "mashup",
    "loop",
    "underscore",
    "sting",
    "edit",
)
MIX_RANK = {name: rank for rank, name in enumerate(MIX_ORDER)}


def _vocabulary() -> dict[tuple[str, ...], tuple[int, str]]:
    """Every phrase (as a tuple of words) → (category, canonical name)."""
    table: dict[str, tuple[int, str]] = {
        "clean": (ADV, "clean"),
        "cln": (ADV, "clean"),
        "dirty": (ADV, "dirty"),
        "dty": (ADV, "dirty"),
        "explicit": (ADV, "dirty"),
        "uncensored": (ADV, "dirty"),
        "super clean": (ADV, "super clean"),
        "superclean": (ADV, "super clean"),
        "extra clean": (ADV, "super clean"),
        "extended": (MIX, "extended"),
        "ext": (MIX, "extended"),
        "xtended": (MIX, "extended"),
        "extended mix": (MIX, "extended"),
        "extended edit": (MIX, "extended"),
        "extended version": (MIX, "extended"),
        "xtendz": (MIX, "xtendz"),
        "xtendamix": (MIX, "xtendz"),
        "club": (MIX, "club"),
        "club mix": (MIX, "club"),
        "club edit": (MIX, "club"),
        "club version": (MIX, "club"),
        "dub": (MIX, "dub"),
        "dub mix": (MIX, "dub"),
        "radio edit": (MIX, "radio edit"),
        "radio": (MIX, "radio edit"),
        "radio mix": (MIX, "radio edit"),
        "radio version": (MIX, "radio edit"),
        "short edit": (MIX, "short edit"),
        "short": (MIX, "short edit"),
        "short version": (MIX, "short edit"),
        "quick hit": (MIX, "quick hit"),
        "quickhit": (MIX, "quick hit"),
        "quick hitter": (MIX, "quick hit"),
        "snippet": (MIX, "snippet"),
        "hype intro": (MIX, "hype intro"),
        "intro": (MIX, "intro"),
        "intro edit": (MIX, "intro"),
        "outro": (MIX, "outro"),
        "outro edit": (MIX, "outro"),
        "instrumental": (MIX, "instrumental"),
        "inst": (MIX, "instrumental"),
        "instr": (MIX, "instrumental"),
        "redrum": (MIX, "redrum"),
        "re drum": (MIX, "redrum"),
        "loop": (MIX, "loop"),
        # Production libraries (Harvest): the bed without the lead, the short ending.
        "underscore": (MIX, "underscore"),
        "bed": (MIX, "underscore"),
        "sting": (MIX, "sting"),
        "stinger": (MIX, "sting"),
        "mashup": (MIX, "mashup"),
        "mash up": (MIX, "mashup"),
        "transition": (TRANS, "transition"),
        "trans": (TRANS, "transition"),
        "edit": (EDIT, "edit"),
        "remix": (REMIX, "remix"),
        "rmx": (REMIX, "remix"),
        "mix": (MIXWORD, "mix"),
        "version": (NEUTRAL, ""),
        "vers": (NEUTRAL, ""),
        "bpm": (NEUTRAL, ""),
        "16x9": (NEUTRAL, ""),
        "4x3": (NEUTRAL, ""),
        "remaster": (NEUTRAL, ""),
        "remastered": (NEUTRAL, ""),
        "main": (MAIN, ""),
        "main mix": (MAIN, ""),
        "single": (MAIN, ""),
        "original": (MAIN, ""),
        "original mix": (MAIN, ""),
        "album version": (MAIN, ""),
        "lp version": (MAIN, ""),
        "video": (VIDEO, ""),
        "music video": (VIDEO, ""),
        "official video": (VIDEO, ""),
        "official music video": (VIDEO, ""),
        "sd": (QUAL, "sd"),
        "qhd": (QUAL, "qhd"),
        "hd": (QUAL, "hd"),
        "fhd": (QUAL, "fhd"),
        "full hd": (QUAL, "fhd"),
        "fullhd": (QUAL, "fhd"),
        "uhd": (QUAL, "4k"),
        "4k": (QUAL, "4k"),
        "360p": (QNUM, "sd"),
        "480p": (QNUM, "sd"),
        "540": (QNUM, "qhd"),
        "540p": (QNUM, "qhd"),
        "720": (QNUM, "hd"),
        "720p": (QNUM, "hd"),
        "1080": (QNUM, "fhd"),
        "1080p": (QNUM, "fhd"),
        "1080i": (QNUM, "fhd"),
        "2160": (QNUM, "4k"),
        "2160p": (QNUM, "4k"),
    }
    for acapella in ("acapella", "acappella", "accapella", "acap", "acc", "acca", "a cappella"):
        table[acapella] = (MIX, "acapella")
        table["a capella" if acapella == "a cappella" else acapella] = (MIX, "acapella")
        table[f"{acapella} in"] = (MIX, "acapella in")
        table[f"{acapella} out"] = (MIX, "acapella out")
    return {tuple(phrase.split()): meaning for phrase, meaning in table.items()}


VOCAB: Final = _vocabulary()
LONGEST: Final = max(len(phrase) for phrase in VOCAB)
# Words that, beside a name, make an annotation a different song: "(Kaskade Bootleg)". Remix and
# mix are in the vocabulary (a bare "(Remix)" is a version) and count the same way.
IDENTITY_WORDS: Final = frozenset(
    "rework bootleg flip refix remake vip cover live acoustic unplugged reprise".split()  # noqa: SIM905
)
