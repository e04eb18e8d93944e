"""Made-up artist, title and editor names for the simulated catalog, chosen by bits of a hash."""

from __future__ import annotations

__all__ = ["EDITORS", "SPECIAL", "artist_name", "title_name"]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Aaliyah Andre Bianca Carlos Chris Dana Darius Elena Eric Faith Gabriel Gina Hector Imani "
    "Jada Jamal Jasmine Jay Kayla Kevin Lena Luis Malik Marcus Maya Nadia Nia Omar Priya Quinn "
    "Rico Rosa Sasha Shawn Tasha Teddy Tyrone Vanessa Victor Wes Xavier Yara Zoe Tony Keisha "
    "Miguel Brandon Alicia"
)
_LAST = _words(
    "Banks Brooks Carter Cruz Davis Diaz Ellis Flores Garcia Gordon Grant Hayes Jackson James "
    "Jenkins Johnson Jones King Knight Lewis Lopez Martin Mendez Miller Moore Morales Nash "
    "Owens Parker Perez Price Reed Reyes Rivera Robinson Ross Santos Scott Simmons Stone Torres "
    "Turner Vega Walker Ward Washington Young"
)
_STAGE_PREFIX = ("Lil", "Young", "DJ", "MC", "Big", "Yung")
_STAGE_WORD = _words(
    "Blaze Cash Dolla Flex Ghost Haze Jet Kilo Loco Maze Nova Ocean Prince Rocket Saint "
    "Smoke Sway Tempo Vybz Wave Zeus Kid Chulo Bandz"
)
_TITLE_A = _words(
    "Sexy Lost Golden Midnight Crazy Dirty Electric Lonely Wild Sweet Broken Brand New Fast "
    "Heavy Hot Cold Big Little Last First Real Secret Summer Velvet Neon"
)
_TITLE_N = _words(
    "Lady Fire Love Night City Money Heart Dream Party Rain Feeling Thing Island Groove Rhythm "
    "Motion Diamonds Highway Weekend Window Sunset Paradise Shadow Anthem Signal"
)
_TITLE_V = _words(
    "Move Dance Shake Hold Take Call Drop Ride Run Feel Turn Let Work Bounce Wine Push"
)
_TITLE_T = ("Me", "It", "Up", "Down", "Back", "Slow", "Right", "Tonight", "Away", "Around")
EDITORS = (
    "PeteDown",
    "DJ Scooter",
    "Jeff Jayz",
    "Mixx Master Lee",
    "Krisz",
    "DJ Snake Eyes",
    "Coolmaster Dee",
    "Rob Mendez",
    "Nico Vega",
)

# Songs with accents and punctuation, for search and file-name tests: every 17th song.
SPECIAL: tuple[tuple[str, str], ...] = (
    ("Beyoncé", "Déjà Vu"),
    ("Rosalía", "Malamente (Cap.1: Augurio)"),
    ("Ñengo Flow ft Jowell & Randy", "Qué Calor"),
    ("Sinéad O'Connor", "Nothing Compares 2 U"),
    ("AC/DC", "Back In Black"),
    ("Guns N' Roses", "Sweet Child O' Mine"),
    ("P!nk", "Get the Party Started"),
    ("Ke$ha", "Tik Tok"),
    ("Motörhead", "Ace of Spades"),
    ("Los Del Río", "Macarena (Bayside Boys Mix)"),
    ("Björk", "Army of Me"),
    ("Chloë Moriondo", "Manta Rays?"),
    ("Zé Neto & Cristiano", "Notificação Preferida"),
    ("Mötley Crüe", 'Kickstart My Heart "Live"'),
    ("Beyoncé ft JAY-Z", "Crazy In Love * 2024"),
    ("Bad Bunny & Rosalía", "La Noche de Anoche <Remix>"),
)


def _person(value: int) -> str:
    if value % 5 == 0:
        prefix = _STAGE_PREFIX[(value >> 3) % len(_STAGE_PREFIX)]
        return f"{prefix} {_STAGE_WORD[(value >> 6) % len(_STAGE_WORD)]}"
    return f"{_FIRST[(value >> 3) % len(_FIRST)]} {_LAST[(value >> 9) % len(_LAST)]}"


def artist_name(bits: int) -> str:
    """An artist credit: one person, or two or three joined by ft, & or feat."""
    shape = bits % 20
    main = _person(bits >> 5)
    if shape < 13:
        return main
    other = _person(bits >> 12)
    if shape < 16:
        return f"{main} ft {other}"
    if shape < 18:
        return f"{main} & {other}"
    return f"{main} feat {other} and {_person(bits >> 18)}"


def title_name(bits: int) -> str:
    """A song title in one of four shapes."""
    shape = bits % 4
    adjective = _TITLE_A[(bits >> 2) % len(_TITLE_A)]
    noun = _TITLE_N[(bits >> 7) % len(_TITLE_N)]
    verb = _TITLE_V[(bits >> 12) % len(_TITLE_V)]
    tail = _TITLE_T[(bits >> 17) % len(_TITLE_T)]
    if shape == 0:
        return f"{adjective} {noun}"
    if shape == 1:
        return f"{verb} {tail}"
    if shape == 2:
        return f"{noun} Of The {_TITLE_N[(bits >> 21) % len(_TITLE_N)]}"
    return f"{verb} It {tail}"
