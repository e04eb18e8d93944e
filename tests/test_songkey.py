"""The song key and version parser against titles as the pools write them, read as a DJ reads them.

Each row's expectation was written by hand from what the title means to a DJ (docs/songs.md):
a named remix is another song, a clean/extended/intro cut is a version of the same song.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pooldaemon.sim.catalog import Catalog
from pooldaemon.sim.harvest import HarvestSim
from pooldaemon.sim.promoonly import PromoOnlySim
from pooldaemon.songkey import (
    Version,
    display_song,
    parse,
    parse_version,
    same_recording,
    song_key,
    split_title,
    version_in_name,
)

# Rows: "artist | title | the pool's mix field", then "-> song | key | version label";
# a line starting with "#" is a comment.
_TABLE = """
# -- CrateQ's own examples and its sources' bracket style
Yung Berg ft Junior | Sexy Lady [Xtendz] - qHD - Clean | Xtendz
-> Sexy Lady | yungberg/sexylady | xtendz clean qhd
Gesaffelstein n The Weeknd | Lost In The Fire [124-101] - HD - Dirty | DMS
-> Lost In The Fire | gesaffelstein&weeknd/lostinthefire | transition 124-101 dirty hd
Bando Jonez feat LaRon and Polow Da Don | Wet [Dirty Acc] | Acapella
-> Wet | bandojonez/wet | acapella dirty
Q-Unique feat Cappadonna, Taking Back Sunday and DJ Eclipse | Verrazzano Villians [Clean] | Extended
-> Verrazzano Villians | qunique/verrazzanovillians | extended clean
Yung Berg ft. Junior | Sexy Lady [Clean Xtendz] |
-> Sexy Lady | yungberg/sexylady | xtendz clean
Yung Berg feat. Junior | Sexy Lady [Dirty Xtendz] |
-> Sexy Lady | yungberg/sexylady | xtendz dirty
Yung Berg featuring Junior | Sexy Lady [Xtendz] - FHD - Dirty |
-> Sexy Lady | yungberg/sexylady | xtendz dirty fhd
Yung Berg | Sexy Lady [Clean Intro] |
-> Sexy Lady | yungberg/sexylady | intro clean
Yung Berg | Sexy Lady [Dirty Intro] |
-> Sexy Lady | yungberg/sexylady | intro dirty
Yung Berg | Sexy Lady [Clean Extended] |
-> Sexy Lady | yungberg/sexylady | extended clean
Yung Berg | Sexy Lady [Clean Club Mix] |
-> Sexy Lady | yungberg/sexylady | club clean
Yung Berg | Sexy Lady [Clean Inst] |
-> Sexy Lady | yungberg/sexylady | instrumental clean
Yung Berg | Sexy Lady [Dirty Acc In] |
-> Sexy Lady | yungberg/sexylady | acapella in dirty
Yung Berg | Sexy Lady [Clean Acc Out] |
-> Sexy Lady | yungberg/sexylady | acapella out clean
Yung Berg | Sexy Lady [Dirty Loop] |
-> Sexy Lady | yungberg/sexylady | loop dirty
Yung Berg | Sexy Lady [Clean Short Edit] |
-> Sexy Lady | yungberg/sexylady | short edit clean
Yung Berg | Sexy Lady [Dirty Remix] | Remix
-> Sexy Lady | yungberg/sexylady | remix dirty
Yung Berg | Sexy Lady [Clean DMS Edit] | DMS
-> Sexy Lady | yungberg/sexylady | dms edit clean
Yung Berg | Sexy Lady [Clean] | Single
-> Sexy Lady | yungberg/sexylady | clean
Yung Berg | Sexy Lady [Video] - SD - Dirty | Single
-> Sexy Lady | yungberg/sexylady | dirty sd
Yung Berg | Sexy Lady [Intro] - HD - Clean |
-> Sexy Lady | yungberg/sexylady | intro clean hd
Yung Berg | Sexy Lady [95-128] - qHD - Clean | Transition
-> Sexy Lady | yungberg/sexylady | transition 95-128 clean qhd
Yung Berg | Sexy Lady [Clean 95-128] |
-> Sexy Lady | yungberg/sexylady | transition 95-128 clean
# -- Promo Only: the version lives in the mix field
Rage Against The Machine | Sleep Now In The Fire | From The Battle Of Mexico City
-> Sleep Now In The Fire | rageagainstthemachine/sleepnowinthefire | from the battle of mexico city
Dua Lipa | Houdini | Clean
-> Houdini | dualipa/houdini | clean
Dua Lipa | Houdini | Dirty
-> Houdini | dualipa/houdini | dirty
Dua Lipa | Houdini | Extended Mix
-> Houdini | dualipa/houdini | extended
Dua Lipa | Houdini | Intro - Clean
-> Houdini | dualipa/houdini | intro clean
Dua Lipa | Houdini | Quick Hit
-> Houdini | dualipa/houdini | quick hit
Dua Lipa | Houdini | Original Mix
-> Houdini | dualipa/houdini |
Dua Lipa | Houdini | Main
-> Houdini | dualipa/houdini |
Dua Lipa | Houdini | Radio Edit
-> Houdini | dualipa/houdini | radio edit
Dua Lipa | Houdini | Dillon Francis Remix
-> Houdini (Dillon Francis Remix) | dualipa/houdinidillonfrancisremix |
Dua Lipa | Houdini (Dillon Francis Remix) | Dillon Francis Remix
-> Houdini (Dillon Francis Remix) | dualipa/houdinidillonfrancisremix |
Dua Lipa | Houdini | Clean Extended
-> Houdini | dualipa/houdini | extended clean
Dua Lipa | Houdini | Dirty Intro
-> Houdini | dualipa/houdini | intro dirty
Dua Lipa | Houdini | Instrumental
-> Houdini | dualipa/houdini | instrumental
Dua Lipa | Houdini | Acapella - Dirty
-> Houdini | dualipa/houdini | acapella dirty
Dua Lipa | Houdini | Single
-> Houdini | dualipa/houdini |
Dua Lipa | Houdini | Album Version
-> Houdini | dualipa/houdini |
Fred again.. | Delilah (pull me out of this) | Extended Mix
-> Delilah (pull me out of this) | fredagain/delilahpullmeoutofthis | extended
Tiësto | The Business | Clean
-> The Business | tiesto/thebusiness | clean
Tiesto | The Business (Clean) |
-> The Business | tiesto/thebusiness | clean
TIËSTO | THE BUSINESS | Clean
-> THE BUSINESS | tiesto/thebusiness | clean
Beyoncé | Texas Hold 'Em | Intro - Dirty
-> Texas Hold 'Em | beyonce/texasholdem | intro dirty
Beyonce | Texas Hold Em (Dirty Intro) |
-> Texas Hold Em | beyonce/texasholdem | intro dirty
Bad Bunny | Tití Me Preguntó | Dirty
-> Tití Me Preguntó | badbunny/titimepregunto | dirty
Bad Bunny | Titi Me Pregunto (Dirty) |
-> Titi Me Pregunto | badbunny/titimepregunto | dirty
Doja Cat | Paint The Town Red | Quick Hit
-> Paint The Town Red | dojacat/paintthetownred | quick hit
Doja Cat | Paint The Town Red (Quick Hit Clean) |
-> Paint The Town Red | dojacat/paintthetownred | quick hit clean
# -- DJcity / BPM Supreme / ZipDJ style parentheses
Drake | Nice For What (Clean) |
-> Nice For What | drake/niceforwhat | clean
Drake | Nice For What (Dirty) |
-> Nice For What | drake/niceforwhat | dirty
Drake | Nice For What (Explicit) |
-> Nice For What | drake/niceforwhat | dirty
Drake | Nice For What (Intro - Clean) |
-> Nice For What | drake/niceforwhat | intro clean
Drake | Nice For What (Intro - Dirty) |
-> Nice For What | drake/niceforwhat | intro dirty
Drake | Nice For What (Clean Intro) |
-> Nice For What | drake/niceforwhat | intro clean
Drake | Nice For What (Inst) |
-> Nice For What | drake/niceforwhat | instrumental
Drake | Nice For What (Instrumental) |
-> Nice For What | drake/niceforwhat | instrumental
Drake | Nice For What (Acapella) |
-> Nice For What | drake/niceforwhat | acapella
Drake | Nice For What (Acap - Dirty) |
-> Nice For What | drake/niceforwhat | acapella dirty
Drake | Nice For What (A Cappella) |
-> Nice For What | drake/niceforwhat | acapella
Drake | Nice For What (Main) |
-> Nice For What | drake/niceforwhat |
Drake | Nice For What (Quick Hit - Dirty) |
-> Nice For What | drake/niceforwhat | quick hit dirty
Drake | Nice For What (Short Edit) |
-> Nice For What | drake/niceforwhat | short edit
Drake | Nice For What (Snippet) |
-> Nice For What | drake/niceforwhat | snippet
Drake | Nice For What (Hype Intro - Clean) |
-> Nice For What | drake/niceforwhat | hype intro clean
Drake | Nice For What (Super Clean) |
-> Nice For What | drake/niceforwhat | super clean
Drake | Nice For What (Clean Edit) |
-> Nice For What | drake/niceforwhat | clean
Drake | Nice For What (Radio Edit) |
-> Nice For What | drake/niceforwhat | radio edit
Drake | Nice For What (Intro/Outro - Clean) |
-> Nice For What | drake/niceforwhat | intro outro clean
Drake | Nice For What (Outro) |
-> Nice For What | drake/niceforwhat | outro
Drake | Nice For What (Redrum) |
-> Nice For What | drake/niceforwhat | redrum
Drake | Nice For What (Dirty Redrum) |
-> Nice For What | drake/niceforwhat | redrum dirty
Drake | Nice For What (Clean) (Intro) |
-> Nice For What | drake/niceforwhat | intro clean
Drake | Nice For What [Intro] (Clean) |
-> Nice For What | drake/niceforwhat | intro clean
Drake | Nice For What - Clean |
-> Nice For What | drake/niceforwhat | clean
Drake | Nice For What - Intro - Dirty |
-> Nice For What | drake/niceforwhat | intro dirty
Drake | Nice For What – Extended Mix |
-> Nice For What | drake/niceforwhat | extended
Drake | Nice For What (Extended Mix) |
-> Nice For What | drake/niceforwhat | extended
Drake | Nice For What (Extended) |
-> Nice For What | drake/niceforwhat | extended
Drake | Nice For What (Club Mix) |
-> Nice For What | drake/niceforwhat | club
Drake | Nice For What (Original Mix) |
-> Nice For What | drake/niceforwhat |
Drake | Nice For What (Dub) |
-> Nice For What | drake/niceforwhat | dub
Drake | Nice For What {Clean} |
-> Nice For What | drake/niceforwhat | clean
Drake | Nice For What <Dirty> |
-> Nice For What | drake/niceforwhat | dirty
Drake | Nice For What (128) |
-> Nice For What | drake/niceforwhat |
Drake | Nice For What (Clean) (91 BPM) |
-> Nice For What | drake/niceforwhat | clean
Drake | Nice For What (8A - 91) |
-> Nice For What | drake/niceforwhat |
DRAKE | nice for what (CLEAN) |
-> nice for what | drake/niceforwhat | clean
# -- editors' edits are versions; the editor's name stays in the version
Drake | Nice For What (PeteDown Intro Edit) (Clean) |
-> Nice For What | drake/niceforwhat | petedown intro clean
Drake | Nice For What (DJ Scooter Edit) |
-> Nice For What | drake/niceforwhat | dj scooter edit
Drake | Nice For What (CC Intro) (Dirty) |
-> Nice For What | drake/niceforwhat | cc intro dirty
Drake | Nice For What (CC Redrum) (Clean) |
-> Nice For What | drake/niceforwhat | cc redrum clean
Drake | Nice For What (DMS Intro) |
-> Nice For What | drake/niceforwhat | dms intro
Drake | Nice For What (Jeff Jayz Quick Hit) |
-> Nice For What | drake/niceforwhat | jeff jayz quick hit
Drake | Nice For What (Xtendamix) |
-> Nice For What | drake/niceforwhat | xtendz
Drake | Nice For What (Xtendz - Clean) |
-> Nice For What | drake/niceforwhat | xtendz clean
# -- remixes by someone are other songs
Calvin Harris | Feel So Close (Dillon Francis Remix) |
-> Feel So Close (Dillon Francis Remix) | calvinharris/feelsoclosedillonfrancisremix |
Calvin Harris | Feel So Close (Dillon Francis Remix) (Clean) |
-> Feel So Close (Dillon Francis Remix) | calvinharris/feelsoclosedillonfrancisremix | clean
Calvin Harris | Feel So Close (Dillon Francis Extended Remix) |
-> Feel So Close (Dillon Francis Remix) | calvinharris/feelsoclosedillonfrancisremix | extended
Calvin Harris | Feel So Close - Dillon Francis Remix |
-> Feel So Close - Dillon Francis Remix | calvinharris/feelsoclosedillonfrancisremix |
Calvin Harris | Feel So Close (Nero Remix) [Clean Intro] |
-> Feel So Close (Nero Remix) | calvinharris/feelsocloseneroremix | intro clean
Calvin Harris | Feel So Close (Remix) |
-> Feel So Close | calvinharris/feelsoclose | remix
Calvin Harris | Feel So Close (Club Killers Remix) |
-> Feel So Close (Club Killers Remix) | calvinharris/feelsocloseclubkillersremix |
Calvin Harris | Feel So Close (Kaskade Bootleg) |
-> Feel So Close (Kaskade Bootleg) | calvinharris/feelsoclosekaskadebootleg |
Calvin Harris | Feel So Close (Tiesto VIP Mix) |
-> Feel So Close (Tiesto VIP Mix) | calvinharris/feelsoclosetiestovipmix |
Calvin Harris | Feel So Close (Acoustic) |
-> Feel So Close (Acoustic) | calvinharris/feelsocloseacoustic |
Calvin Harris | Feel So Close (Live) |
-> Feel So Close (Live) | calvinharris/feelsocloselive |
Calvin Harris | Feel So Close (Spanish Version) |
-> Feel So Close (Spanish Version) | calvinharris/feelsoclosespanishversion |
Los Del Río | Macarena (Bayside Boys Mix) |
-> Macarena (Bayside Boys Mix) | losdelrio/macarenabaysideboysmix |
Los Del Rio | Macarena (Bayside Boys Mix) [Clean Intro] |
-> Macarena (Bayside Boys Mix) | losdelrio/macarenabaysideboysmix | intro clean
Daddy Yankee | Gasolina (DJ Buddha Remix) - Dirty |
-> Gasolina (DJ Buddha Remix) | daddyyankee/gasolinadjbuddharemix | dirty
Calvin Harris | Feel So Close (Clean) (Dillon Francis Remix) |
-> Feel So Close (Dillon Francis Remix) | calvinharris/feelsoclosedillonfrancisremix | clean
# -- song words that look like versions stay
The xx | Intro |
-> Intro | xx/intro |
The xx | Intro (Clean) |
-> Intro | xx/intro | clean
Christina Aguilera | Dirrty (Clean) |
-> Dirrty | christinaaguilera/dirrty | clean
Ol' Dirty Bastard | Shimmy Shimmy Ya (Dirty) |
-> Shimmy Shimmy Ya | oldirtybastard/shimmyshimmyya | dirty
Bon Jovi | Livin' On A Prayer (Dirty Money) |
-> Livin' On A Prayer (Dirty Money) | bonjovi/livinonaprayerdirtymoney |
Rosalía | Malamente (Cap.1: Augurio) |
-> Malamente (Cap.1: Augurio) | rosalia/malamentecap1augurio |
Rosalía | Malamente (Cap.1: Augurio) [Dirty Inst] |
-> Malamente (Cap.1: Augurio) | rosalia/malamentecap1augurio | instrumental dirty
The Rolling Stones | (I Can't Get No) Satisfaction |
-> (I Can't Get No) Satisfaction | rollingstones/icantgetnosatisfaction |
Prince | 1999 (Clean) |
-> 1999 | prince/1999 | clean
Prince | Party Like It's 1999 (2019) |
-> Party Like It's 1999 (2019) | prince/partylikeits19992019 |
Mötley Crüe | Kickstart My Heart "Live" |
-> Kickstart My Heart "Live" | motleycrue/kickstartmyheartlive |
Beyoncé ft JAY-Z | Crazy In Love * 2024 |
-> Crazy In Love * 2024 | beyonce/crazyinlove2024 |
Chloë Moriondo | Manta Rays? |
-> Manta Rays? | chloemoriondo/mantarays |
Sinéad O'Connor | Nothing Compares 2 U |
-> Nothing Compares 2 U | sineadoconnor/nothingcompares2u |
AC/DC | Back In Black (Clean) |
-> Back In Black | acdc/backinblack | clean
Guns N' Roses | Sweet Child O' Mine |
-> Sweet Child O' Mine | gunsnroses/sweetchildomine |
P!nk | Get the Party Started (Intro) |
-> Get the Party Started | pink/getthepartystarted | intro
Pink | Get The Party Started [Clean Intro] |
-> Get The Party Started | pink/getthepartystarted | intro clean
Ke$ha | Tik Tok [Dirty] |
-> Tik Tok | kesha/tiktok | dirty
Kesha | TiK ToK (Dirty) |
-> TiK ToK | kesha/tiktok | dirty
A$AP Rocky | Praise The Lord (Da Shine) (Clean) |
-> Praise The Lord (Da Shine) | asaprocky/praisethelorddashine | clean
Motörhead | Ace of Spades |
-> Ace of Spades | motorhead/aceofspades |
Björk | Army of Me (Instrumental) |
-> Army of Me | bjork/armyofme | instrumental
Zé Neto & Cristiano | Notificação Preferida |
-> Notificação Preferida | cristiano&zeneto/notificacaopreferida |
Ñengo Flow ft Jowell & Randy | Qué Calor (Clean) |
-> Qué Calor | nengoflow/quecalor | clean
Bad Bunny & Rosalía | La Noche de Anoche |
-> La Noche de Anoche | badbunny&rosalia/lanochedeanoche |
Rosalía x Bad Bunny | LA NOCHE DE ANOCHE (Dirty) |
-> LA NOCHE DE ANOCHE | badbunny&rosalia/lanochedeanoche | dirty
Sigur Rós | Hoppípolla |
-> Hoppípolla | sigurros/hoppipolla |
Kygo | Firestone (Røyksopp Remix) |
-> Firestone (Røyksopp Remix) | kygo/firestoneroyksoppremix |
Kygo | Firestone (Royksopp Remix) (Clean) |
-> Firestone (Royksopp Remix) | kygo/firestoneroyksoppremix | clean
Die Ärzte | Schrei nach Liebe (Straße) |
-> Schrei nach Liebe (Straße) | diearzte/schreinachliebestrasse |
Die Arzte | Schrei Nach Liebe (Strasse) |
-> Schrei Nach Liebe (Strasse) | diearzte/schreinachliebestrasse |
BTS | Dynamite |
-> Dynamite | bts/dynamite |
防弾少年団 | Dynamite (Clean) |
-> Dynamite | 防弾少年団/dynamite | clean
Кино | Группа крови (Extended) |
-> Группа крови | кино/группакрови | extended
КИНО | ГРУППА КРОВИ |
-> ГРУППА КРОВИ | кино/группакрови |
Αλκίνοος | Ίσως (Clean) |
-> Ίσως | αλκινοοσ/ισωσ | clean
Amr Diab | Tamally Maak |
-> Tamally Maak | amrdiab/tamallymaak |
عمرو دياب | تملي معاك (Clean) |
-> تملي معاك | عمرودياب/تمليمعاك | clean
# -- featured artists in every spelling
Yung Berg f/ Junior | Sexy Lady |
-> Sexy Lady | yungberg/sexylady |
Yung Berg w/ Junior | Sexy Lady |
-> Sexy Lady | yungberg/sexylady |
Yung Berg Ft. Junior | Sexy Lady |
-> Sexy Lady | yungberg/sexylady |
Yung Berg FEAT Junior | Sexy Lady |
-> Sexy Lady | yungberg/sexylady |
Yung Berg (feat. Junior) | Sexy Lady |
-> Sexy Lady | yungberg/sexylady |
Yung Berg | Sexy Lady (feat. Junior) |
-> Sexy Lady (feat. Junior) | yungberg/sexylady |
Yung Berg | Sexy Lady [ft. Junior] [Clean] |
-> Sexy Lady [ft. Junior] | yungberg/sexylady | clean
Yung Berg | Sexy Lady ft. Junior (Dirty) |
-> Sexy Lady ft. Junior | yungberg/sexylady | dirty
Yung Berg | Sexy Lady feat Junior - Clean |
-> Sexy Lady feat Junior | yungberg/sexylady | clean
Yung Berg | Sexy Lady (with Junior) |
-> Sexy Lady (with Junior) | yungberg/sexylady |
Yung Berg | Sexy Lady (Featuring Junior) (Intro) |
-> Sexy Lady (Featuring Junior) | yungberg/sexylady | intro
Calvin Harris with Dua Lipa | One Kiss |
-> One Kiss | calvinharris/onekiss |
Calvin Harris & Dua Lipa | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa & Calvin Harris | One Kiss (Clean) |
-> One Kiss | calvinharris&dualipa/onekiss | clean
Dua Lipa and Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa x Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa X Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa vs. Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa vs Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa + Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa, Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Dua Lipa n Calvin Harris | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Calvin Harris, Dua Lipa ft Someone | One Kiss |
-> One Kiss | calvinharris&dualipa/onekiss |
Wisin y Yandel | Rakata |
-> Rakata | wisin&yandel/rakata |
Wisin & Yandel | Rakata (Dirty) |
-> Rakata | wisin&yandel/rakata | dirty
Simon and Garfunkel | Mrs. Robinson |
-> Mrs. Robinson | garfunkel&simon/mrsrobinson |
Simon & Garfunkel | Mrs Robinson |
-> Mrs Robinson | garfunkel&simon/mrsrobinson |
JAY-Z | Empire State Of Mind |
-> Empire State Of Mind | jayz/empirestateofmind |
Jay Z | Empire State of Mind (Clean) |
-> Empire State of Mind | jayz/empirestateofmind | clean
The Weeknd | Blinding Lights |
-> Blinding Lights | weeknd/blindinglights |
Weeknd | Blinding Lights (Extended) |
-> Blinding Lights | weeknd/blindinglights | extended
Lil Nas X | Old Town Road |
-> Old Town Road | lilnasx/oldtownroad |
Lil Nas X ft Billy Ray Cyrus | Old Town Road (Remix) |
-> Old Town Road | lilnasx/oldtownroad | remix
Salt-N-Pepa | Push It |
-> Push It | saltnpepa/pushit |
Earth, Wind & Fire | September |
-> September | earth&fire&wind/september |
Ty Dolla $ign | Or Nah |
-> Or Nah | tydollasign/ornah |
Ty Dolla Sign | Or Nah (Clean) |
-> Or Nah | tydollasign/ornah | clean
Marvin Gaye & Tammi Terrell | Ain't No Mountain High Enough |
-> Ain't No Mountain High Enough | marvingaye&tammiterrell/aintnomountainhighenough |
Florence + The Machine | Dog Days Are Over |
-> Dog Days Are Over | florence&machine/dogdaysareover |
Florence and the Machine | Dog Days Are Over (Clean) |
-> Dog Days Are Over | florence&machine/dogdaysareover | clean
# -- streaming-style dash annotations and production libraries
Queen | Don't Stop Me Now - 2011 Remaster |
-> Don't Stop Me Now | queen/dontstopmenow |
Queen | Don't Stop Me Now - Live At Wembley |
-> Don't Stop Me Now - Live At Wembley | queen/dontstopmenowliveatwembley |
Billie Eilish | What Was I Made For? - From "Barbie" |
-> What Was I Made For? - From "Barbie" | billieeilish/whatwasimadeforfrombarbie |
Cher | Believe (90s Remix) |
-> Believe (90s Remix) | cher/believe90sremix |
Cher | Believe (80s Version) (Clean) |
-> Believe (80s Version) | cher/believe80sversion | clean
Solenne | Golden Pulse 2 | 30 sec
-> Golden Pulse 2 | solenne/goldenpulse2 | 30 sec
Solenne | Golden Pulse 2 | Underscore
-> Golden Pulse 2 | solenne/goldenpulse2 | underscore
The Tideline | Golden Pulse 2 | Main
-> Golden Pulse 2 | tideline/goldenpulse2 |
!!! | Heart Of Hearts |
-> Heart Of Hearts | !!!/heartofhearts |
# -- "&" and "and" in titles
Dr. Dre | Nuthin' But A G Thang & More |
-> Nuthin' But A G Thang & More | drdre/nuthinbutagthangandmore |
Jeremih | Down On Me & You |
-> Down On Me & You | jeremih/downonmeandyou |
# -- video naming
Usher | Yeah! [Video] - HD - Clean |
-> Yeah! | usher/yeah | clean hd
Usher | Yeah! (Clean Video) (HD) |
-> Yeah! | usher/yeah | clean hd
Usher | Yeah! (Dirty) (4K) |
-> Yeah! | usher/yeah | dirty 4k
Usher | Yeah! (Intro - Clean) (16x9) |
-> Yeah! | usher/yeah | intro clean
Usher | Yeah! (Music Video) |
-> Yeah! | usher/yeah | video
Usher | Yeah! (Official Music Video) - Clean |
-> Yeah! | usher/yeah | clean video
Usher | Yeah! (1080p) (Dirty Intro) |
-> Yeah! | usher/yeah | intro dirty fhd
Usher | Yeah! (Clean) (UHD) |
-> Yeah! | usher/yeah | clean 4k
Usher | Yeah! [Transition 105-128] - HD - Dirty |
-> Yeah! | usher/yeah | transition 105-128 dirty hd
Usher | Yeah! (Trans 128 to 105) (Clean) |
-> Yeah! | usher/yeah | transition 128-105 clean
Usher | Yeah! (105-128 Transition) |
-> Yeah! | usher/yeah | transition 105-128
Usher | Yeah! (Transition) |
-> Yeah! | usher/yeah | transition
Usher | Yeah! (Remastered 2004) |
-> Yeah! | usher/yeah |
Usher | Yeah! (Snippet) (Dirty) |
-> Yeah! | usher/yeah | snippet dirty
"""


def _rows(table: str) -> list[tuple[str, str, str | None, str, str, str]]:
    rows = []
    lines = [line for line in table.strip().splitlines() if not line.startswith("#")]
    for source, expected in zip(lines[::2], lines[1::2], strict=True):
        artist, title, mix = (part.strip() for part in source.split("|"))
        song, key, label = (part.strip() for part in expected.removeprefix("->").split("|"))
        rows.append((artist, title, mix or None, song, key, label))
    return rows


ROWS = _rows(_TABLE)


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) >= 150
    assert len({(artist, title, mix) for artist, title, mix, *_ in ROWS}) == len(ROWS)


@pytest.mark.parametrize(("artist", "title", "mix", "song", "key", "label"), ROWS)
def test_real_world_titles(
    artist: str, title: str, mix: str | None, song: str, key: str, label: str
) -> None:
    parsed = parse(artist, title, mix=mix)
    assert (parsed.song, parsed.key, parsed.version.label) == (song, key, label)
    assert str(parsed.version) == label
    if mix is None:
        assert song_key(artist, title) == key
        assert display_song(title) == song
        assert split_title(title) == (song, parsed.version)


def test_spellings_of_one_song_share_a_key() -> None:
    # Groups of rows above that a DJ would file as the same song.
    keys = {key for _, _, _, _, key, _ in ROWS}
    for key in (
        "yungberg/sexylady",
        "dualipa/houdini",
        "drake/niceforwhat",
        "calvinharris&dualipa/onekiss",
        "kesha/tiktok",
        "badbunny&rosalia/lanochedeanoche",
    ):
        assert key in keys
    assert song_key("Tiësto", "The Business") == song_key("TIESTO", "the business (Clean)")
    assert song_key("Beyoncé ft JAY-Z", "Déjà Vu") == song_key("Beyonce feat. Jay Z", "Deja Vu")


# -- the pool's own fields ----------------------------------------------------------------------


def test_the_title_wins_over_the_advisory_field() -> None:
    # CrateQ's example lists "Wet [Dirty Acc]" with advisory "Clean": the title is the file's own.
    assert parse("Bando Jonez", "Wet [Dirty Acc]", advisory="Clean").version.advisory == "dirty"
    assert parse("Bando Jonez", "Wet [Acc]", advisory="Clean").version.label == "acapella clean"
    assert parse("Bando Jonez", "Wet", advisory="Explicit").version.label == "dirty"
    assert parse("Bando Jonez", "Wet", mix="Clean", advisory="Explicit").version.advisory == "clean"


def test_the_title_wins_over_the_mix_field() -> None:
    assert parse("A", "Song [Clean Intro]", mix="Extended").version.label == "intro clean"
    assert parse("A", "Song [Clean]", mix="Extended").version.label == "extended clean"


def test_quality_and_media_fields() -> None:
    # CrateQ's example: title says qHD, the quality field "HD 1080": the title wins.
    assert parse("A", "Song [Xtendz] - qHD - Clean", quality="HD 1080").version.quality == "qhd"
    assert parse("A", "Song (Clean)", quality="HD 1080").version.label == "clean fhd"
    assert parse("A", "Song", mix="Extended Mix", quality="720 mp4").version.label == "extended hd"
    assert parse("A", "Song", quality="qHD 540").version.label == "qhd"
    assert parse("A", "Song", quality="Full HD 1080").version.label == "fhd"
    assert parse("A", "Song", quality="SD").version.label == "sd"
    assert parse("A", "Song", media="video").version.label == "video"
    assert parse("A", "Song", media="audio", quality="").version.label == ""
    assert parse("A", "Song", quality="mp3 320").version == Version()
    # Audio and video of one mix are different files, so different versions.
    audio = parse("A", "Song (Intro - Clean)", media="audio").version
    video = parse("A", "Song (Intro - Clean)", media="video").version
    assert audio != video and audio.mix == video.mix == "intro"


def test_version_labels_read_back() -> None:
    for *_, label in ROWS:
        assert parse_version(label).label == label
    assert parse_version("Intro - Clean") == Version("intro", "clean")
    assert parse_version("") == Version()
    assert parse_version("super clean").is_clean
    assert not parse_version("dirty").is_clean


# -- names that already carry their version -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mix", "carried"),
    [
        ("Sexy Lady [Xtendz] - qHD - Clean", "Xtendz", True),
        ("First Rhythm [Clean Xtendz]", "Xtendz", True),
        ("First Rhythm [Xtendz] - FHD - Dirty", "Xtendz", True),
        ("Wet [Dirty Acc]", "Acapella", True),
        ("Song [Clean Inst]", "Instrumental", True),
        ("Song [Clean Club Mix]", "Club", True),
        ("Song [Dirty DMS Edit]", "DMS", True),
        ("Lost In The Fire [124-101] - HD - Dirty", "Transition", True),
        ("Song [Clean Intro]", "Intro - Clean", True),
        ("Song [Clean]", "Single", True),  # nothing to add
        ("Song [Clean Intro]", "Extended", False),
        ("Song [Dirty Intro]", "Intro - Clean", False),
        ("Houdini", "Extended Mix", False),
        ("Houdini", "Dillon Francis Remix", False),
        ("Houdini (Dillon Francis Remix)", "Dillon Francis Remix", True),
        ("Sleep Now In The Fire", "From The Battle Of Mexico City", False),
    ],
)
def test_version_in_name(name: str, mix: str, carried: bool) -> None:
    assert version_in_name(name, mix) is carried


def test_same_recording() -> None:
    assert same_recording(218, 221)
    assert same_recording(221.0, 218.0)
    assert not same_recording(218, 222)
    assert same_recording(None, 300)


# -- properties ---------------------------------------------------------------------------------


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# Words of names; the joining words ("x", "n", "and", "ft", …) are separators, not name words.
_JOINING = {"x", "n", "y", "and", "vs", "ft", "feat", "featuring", "with", "the", "×"}
_WORD = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Nd"), max_codepoint=0x4FF),
    min_size=1,
    max_size=8,
).filter(lambda word: _strip_accents(word).casefold() not in _JOINING)
_NAME = st.lists(_WORD, min_size=1, max_size=3).map(" ".join)
_ANNOTATION = st.sampled_from(
    ["", " [Clean]", " (Dirty Intro)", " [Xtendz] - qHD - Clean", " (Extended Mix)", " [124-101]"]
)
_FEAT = st.sampled_from([" ft ", " ft. ", " feat ", " feat. ", " featuring ", " f/ ", " w/ "])


@settings(max_examples=300, deadline=None)
@given(artist=_NAME, title=_NAME, annotation=_ANNOTATION)
def test_key_is_idempotent(artist: str, title: str, annotation: str) -> None:
    parsed = parse(artist, title + annotation)
    # The key of what the key was made of is the same key.
    assert song_key(artist, parsed.song) == parsed.key
    assert song_key(artist, title) == parsed.key


@settings(max_examples=300, deadline=None)
@given(artist=_NAME, title=_NAME, annotation=_ANNOTATION)
def test_key_ignores_case_and_accents(artist: str, title: str, annotation: str) -> None:
    key = song_key(artist, title + annotation)
    assert song_key(artist.upper(), title.upper() + annotation) == key
    assert song_key(artist.lower(), title.swapcase() + annotation) == key
    assert song_key(_strip_accents(artist), _strip_accents(title) + annotation) == key


@settings(max_examples=300, deadline=None)
@given(artist=_NAME, guest=_NAME, title=_NAME, feat=_FEAT, annotation=_ANNOTATION)
def test_key_ignores_featured_artists_in_every_spelling(
    artist: str, guest: str, title: str, feat: str, annotation: str
) -> None:
    key = song_key(artist, title + annotation)
    assert song_key(artist + feat + guest, title + annotation) == key
    assert song_key(artist, f"{title} (feat. {guest}){annotation}") == key
    assert song_key(artist, f"{title} [ft. {guest}]{annotation}") == key


@settings(max_examples=200, deadline=None)
@given(a=_NAME, b=_NAME, title=_NAME, joint=st.sampled_from([" & ", " and ", " x ", " vs ", ", "]))
def test_main_artists_in_any_order(a: str, b: str, title: str, joint: str) -> None:
    assert song_key(f"{a}{joint}{b}", title) == song_key(f"{b} & {a}", title)


# -- every version the simulated catalog writes -------------------------------------------------


def test_every_simulated_version_is_recognised() -> None:
    catalog = Catalog(6_000, seed="songkey")
    keys_by_group: dict[int, set[str]] = {}
    seen_tools: set[str] = set()
    for record in catalog.records():
        parsed = parse(
            record["artist"],
            record["title"],
            mix=record["tool"],
            advisory=record["advisory"],
            quality=record["quality"],
            media="video" if record["video"] else "audio",
        )
        seen_tools.add(record["tool"])
        keys_by_group.setdefault(record["groupId"], set()).add(parsed.key)
        song, from_title = split_title(record["title"])
        assert song and "[" not in song and " - " not in song, record["title"]
        # The title alone names the advisory, and a mix for every tool but "Single".
        assert from_title.advisory == record["advisory"].lower(), record["title"]
        if record["tool"] != "Single":
            assert from_title.mix, record["title"]
        if record["video"]:
            assert from_title.quality, record["title"]
        assert parsed.version.label, record["title"]
    assert {"Xtendz", "Transition", "DMS", "Acapella In", "Single"} <= seen_tools
    assert all(len(keys) == 1 for keys in keys_by_group.values())
    # Different songs keep different keys (the generator's names rarely collide).
    assert len({next(iter(keys)) for keys in keys_by_group.values()}) > 0.9 * len(keys_by_group)


@settings(max_examples=500, deadline=None)
@given(artist=st.text(max_size=40), title=st.text(max_size=60), mix=st.text(max_size=20))
def test_any_text_parses(artist: str, title: str, mix: str) -> None:
    # Pools send anything: no input raises, and a key is always one word.
    parsed = parse(artist, title, mix=mix, advisory=mix, quality=mix)
    assert not any(ch.isspace() for ch in parsed.key)
    assert parsed.key.count("/") >= 1
    assert isinstance(parse_version(parsed.version.label), Version)
    assert isinstance(version_in_name(title, mix), bool)


def test_promo_only_versions_come_from_the_mix_field() -> None:
    sim = PromoOnlySim(tracks=36)
    expected_mix = {
        "Clean": None,
        "Dirty": None,
        "Extended Mix": "extended",
        "Intro - Clean": "intro",
        "Quick Hit": "quick hit",
        "Original Mix": None,
        "From The Battle Of Mexico City": "from the battle of mexico city",
    }
    keys: dict[tuple[str, str], set[str]] = {}
    for track in sim.tracks.values():
        parsed = parse(
            track.artist,
            track.title,
            mix=track.mix,
            advisory="Explicit" if track.explicit else "Clean",
            media="video" if track.kind == "mp4" else "audio",
            quality=track.file_type,
        )
        assert parsed.song == track.title
        assert parsed.version.mix == expected_mix[track.mix], track
        # The mix field's advisory beats the explicit flag; the flag fills in otherwise.
        if track.mix in ("Clean", "Intro - Clean"):
            assert parsed.version.advisory == "clean"
        elif track.mix == "Dirty":
            assert parsed.version.advisory == "dirty"
        else:
            assert parsed.version.advisory == ("dirty" if track.explicit else "clean")
        # "720 mp4" is HD video; "mp3 320" names no quality.
        assert parsed.version.quality == ("hd" if track.kind == "mp4" else None)
        keys.setdefault((track.artist, track.title), set()).add(parsed.key)
    assert all(len(found) == 1 for found in keys.values())
    assert len({key for found in keys.values() for key in found}) == len(keys)


def test_harvest_versions() -> None:
    sim = HarvestSim(albums=6, tracks_per_album=6)
    expected = {"Main": "", "Instrumental": "instrumental", "30 sec": "30 sec"}
    expected["Underscore"] = "underscore"
    seen = set()
    for album in sim.albums:
        for track in album.tracks:
            parsed = parse(track.artist, track.title, mix=track.version)
            assert parsed.version.label == expected[track.version]
            assert parsed.song == track.title
            seen.add(track.version)
    assert seen == set(expected)
