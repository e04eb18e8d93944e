"""The NML checker against hand-written Traktor collections, good and broken."""

from __future__ import annotations

import pytest

from .nml_checks import check_nml

VALID = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<NML VERSION="19">
  <HEAD COMPANY="www.native-instruments.com" PROGRAM="Traktor"/>
  <MUSICFOLDERS/>
  <COLLECTION ENTRIES="3">
    <ENTRY TITLE="Sexy Lady" ARTIST="Xtendz">
      <LOCATION DIR="/:home/:dj/:Music/:crateq/:" FILE="Sexy Lady.mp3" VOLUME="osx" VOLUMEID="osx"/>
    </ENTRY>
    <ENTRY TITLE="Tom &amp; Jerry &lt;Live&gt;" ARTIST="">
      <LOCATION DIR="/:home/:dj/:Music/:a:b &amp; c/:" FILE="100% #1.mp3" VOLUME="osx"/>
    </ENTRY>
    <ENTRY TITLE="初恋" ARTIST="宇多田ヒカル">
      <LOCATION DIR="/:" FILE="🎧 初恋.flac" VOLUME="C:"/>
    </ENTRY>
  </COLLECTION>
  <PLAYLISTS>
    <NODE TYPE="FOLDER" NAME="$ROOT">
      <SUBNODES COUNT="2">
        <NODE TYPE="PLAYLIST" NAME="New this week">
          <PLAYLIST ENTRIES="2" TYPE="LIST" UUID="f80b2bdebbb843eb897c1ae90af896f5">
            <ENTRY><PRIMARYKEY TYPE="TRACK" KEY="C:/:🎧 初恋.flac"/></ENTRY>
            <ENTRY>
              <PRIMARYKEY TYPE="TRACK" KEY="osx/:home/:dj/:Music/:a:b &amp; c/:100% #1.mp3"/>
            </ENTRY>
          </PLAYLIST>
        </NODE>
        <NODE TYPE="FOLDER" NAME="Pools">
          <SUBNODES COUNT="1">
            <NODE TYPE="PLAYLIST" NAME="crateq">
              <PLAYLIST ENTRIES="0" TYPE="LIST" UUID="0b6c6b1ad2a14c43a6b3e4b6f1b2c3d4"></PLAYLIST>
            </NODE>
          </SUBNODES>
        </NODE>
      </SUBNODES>
    </NODE>
  </PLAYLISTS>
</NML>
"""


def test_a_well_formed_collection_has_no_problems() -> None:
    assert check_nml(VALID.encode()) == []


def test_a_collection_without_playlists_is_fine() -> None:
    start, end = VALID.index("  <PLAYLISTS>"), VALID.index("</NML>")
    assert check_nml((VALID[:start] + VALID[end:]).encode()) == []


def test_the_shape_traktor_itself_writes_passes() -> None:
    # Reduced from traktor-nml-utils' tests/fixtures/collection.nml (a file Traktor wrote).
    traktor = b"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<NML VERSION="19"><HEAD COMPANY="www.native-instruments.com" PROGRAM="Traktor"></HEAD>
<MUSICFOLDERS></MUSICFOLDERS><COLLECTION ENTRIES="1">
<ENTRY MODIFIED_DATE="2019/10/19" MODIFIED_TIME="13047" TITLE="Dubstep 1" ARTIST="Loopmasters">
<LOCATION DIR="/:Library/:Application Support/:Native Instruments/:Traktor 2/:Factory Sounds/:"
 FILE="Loopmasters_Dubstep1.mp3" VOLUME="osx" VOLUMEID="osx"></LOCATION>
<INFO BITRATE="189720" GENRE="Dubstep" PLAYTIME="193"></INFO><TEMPO BPM="139.999924"></TEMPO>
</ENTRY></COLLECTION></NML>"""
    assert check_nml(traktor) == []


def _broken(old: str, new: str) -> bytes:
    assert old in VALID, old  # the edit must apply, or the case tests nothing
    return VALID.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<NML VERSION='19'><HEAD", "not well-formed or unsafe XML"),
        (
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><NML VERSION="19">&a;</NML>',
            "not well-formed or unsafe XML",
        ),
        (b'<DJ_PLAYLISTS Version="1.0.0"/>', "root element is <DJ_PLAYLISTS>, not <NML>"),
        (_broken('NML VERSION="19"', 'NML VERSION="15"'), "NML VERSION is '15', expected \"19\""),
        (_broken('NML VERSION="19"', "NML"), "NML VERSION is None"),
        (
            _broken('<HEAD COMPANY="www.native-instruments.com" PROGRAM="Traktor"/>', ""),
            "NML has 0 HEAD elements, expected 1",
        ),
        (_broken(' PROGRAM="Traktor"', ""), "HEAD has no PROGRAM"),
        (
            _broken('COLLECTION ENTRIES="3"', 'COLLECTION ENTRIES="2"'),
            "COLLECTION says ENTRIES='2' but holds 3",
        ),
        (
            _broken('COLLECTION ENTRIES="3"', "COLLECTION"),
            "COLLECTION says ENTRIES=None but holds 3",
        ),
        (
            _broken('<ENTRY TITLE="Sexy Lady" ', "<ENTRY "),
            "COLLECTION ENTRY 1 ('?') has no TITLE attribute",
        ),
        (
            _broken(' ARTIST="Xtendz"', ""),
            "COLLECTION ENTRY 1 ('Sexy Lady') has no ARTIST attribute",
        ),
        (
            _broken('<LOCATION DIR="/:" FILE="🎧 初恋.flac" VOLUME="C:"/>', ""),
            "COLLECTION ENTRY 3 ('初恋') has 0 LOCATION elements, expected 1",
        ),
        (
            _broken('VOLUME="osx" VOLUMEID="osx"', 'VOLUME="" VOLUMEID=""'),
            "COLLECTION ENTRY 1 ('Sexy Lady') LOCATION has no VOLUME",
        ),
        (_broken(' FILE="Sexy Lady.mp3"', ""), "LOCATION has no FILE"),
        (
            _broken('DIR="/:home/:dj/:Music/:crateq/:"', 'DIR="/home/dj/Music/crateq/"'),
            "LOCATION DIR '/home/dj/Music/crateq/' does not use Traktor's '/:' separators",
        ),
        (
            _broken('DIR="/:home/:dj/:Music/:crateq/:"', 'DIR="/:home/:dj/:Music/:crateq"'),
            "LOCATION DIR '/:home/:dj/:Music/:crateq' does not use Traktor's '/:' separators",
        ),
        (
            _broken('DIR="/:home/:dj/:Music/:crateq/:"', 'DIR="/:home/:/:crateq/:"'),
            "does not use Traktor's '/:' separators",
        ),
        (
            _broken('FILE="Sexy Lady.mp3"', 'FILE="crateq/Sexy Lady.mp3"'),
            "LOCATION FILE 'crateq/Sexy Lady.mp3' is not a bare file name",
        ),
        (
            _broken(
                'DIR="/:" FILE="🎧 初恋.flac" VOLUME="C:"',
                'DIR="/:home/:dj/:Music/:crateq/:" FILE="Sexy Lady.mp3" VOLUME="osx"',
            ),
            "COLLECTION ENTRY 3 ('初恋') repeats the location "
            "'osx/:home/:dj/:Music/:crateq/:Sexy Lady.mp3'",
        ),
        (
            _broken('KEY="C:/:🎧 初恋.flac"', 'KEY="C:/🎧 初恋.flac"'),
            "playlist '$ROOT/New this week' entry 1 KEY 'C:/🎧 初恋.flac' matches no "
            "collection entry",
        ),
        (
            # The key must be VOLUME + DIR + FILE: without the volume it matches nothing.
            _broken('KEY="C:/:🎧 初恋.flac"', 'KEY="/:🎧 初恋.flac"'),
            "KEY '/:🎧 初恋.flac' matches no collection entry",
        ),
        (
            _broken('TYPE="TRACK" KEY="C:', 'TYPE="FILE" KEY="C:'),
            "playlist '$ROOT/New this week' entry 1 needs one PRIMARYKEY TYPE=\"TRACK\"",
        ),
        (
            _broken('PLAYLIST ENTRIES="2"', 'PLAYLIST ENTRIES="3"'),
            "playlist '$ROOT/New this week' says ENTRIES='3' but holds 2",
        ),
        (
            _broken('ENTRIES="2" TYPE="LIST"', 'ENTRIES="2" TYPE="SMART"'),
            "playlist '$ROOT/New this week' PLAYLIST TYPE is 'SMART', not \"LIST\"",
        ),
        (
            _broken('SUBNODES COUNT="1"', 'SUBNODES COUNT="2"'),
            "folder '$ROOT/Pools' SUBNODES says COUNT='2' but holds 1",
        ),
        (
            _broken('NAME="$ROOT"', 'NAME="Root"'),
            'PLAYLISTS must hold exactly one NODE TYPE="FOLDER" NAME="$ROOT"',
        ),
        (_broken(' NAME="crateq"', ""), "a NODE in folder '$ROOT/Pools' has no NAME"),
        (
            _broken('NODE TYPE="PLAYLIST" NAME="crateq"', 'NODE TYPE="LIST" NAME="crateq"'),
            "NODE '$ROOT/Pools/crateq' has TYPE 'LIST'",
        ),
    ],
)
def test_each_problem_is_named(document: bytes, expected: str) -> None:
    problems = check_nml(document)
    assert any(expected in problem for problem in problems), problems


def test_several_problems_are_all_reported() -> None:
    document = VALID.replace('VERSION="19"', 'VERSION="20"').replace(' ARTIST="Xtendz"', "")
    assert len(check_nml(document.encode())) == 2
