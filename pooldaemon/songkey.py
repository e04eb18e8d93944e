"""Song keys and versions: which tracks are the same song, and which version of it each one is.

Pools write the version into the title (``Sexy Lady [Xtendz] - qHD - Clean``, ``Wet [Dirty Acc]``)
and spell artists differently (``ft``, ``feat.``, ``n``, ``&``). This module splits a track into

- its **song**: the title without version annotations, for people (``{song}`` in file names);
- its **key**: the main artists and the song, folded so that spellings of one song agree;
- its **version**: advisory (clean/dirty), mix (extended, intro, acapella, …) and video quality.

Two tracks with equal key and version are duplicates when their lengths agree
(:func:`same_recording`). docs/songs.md states the rules with examples; this module is a leaf
(standard library only), so the rules, the library and the file namer share one copy.

Identity versus version, as a DJ reads a title: a remix *by someone* (``(Dillon Francis Remix)``),
a rework, bootleg, live or acoustic recording is a different song and stays in the key; an
extended, intro, clean or acapella cut — also one credited to a pool editor (``(PeteDown Intro
Edit)``) — is a version of the same song.

One concept in ~700 lines: reading a title into song, key and version. The tokenizer, the
annotation reader and the title splitter are stages of that one reading, sharing its `_Reading`
type and caches; the table of version spellings they read with is `songkey_forms.py`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from pooldaemon.songkey_forms import (
    ADV,
    EDIT,
    IDENTITY_WORDS,
    LONGEST,
    MAIN,
    MIX,
    MIX_ORDER,
    MIX_RANK,
    MIXWORD,
    NEUTRAL,
    QNUM,
    QUAL,
    REMIX,
    TRANS,
    VIDEO,
    VOCAB,
)

__all__ = [
    "LENGTH_TOLERANCE_S",
    "Parsed",
    "Version",
    "display_song",
    "fold",
    "is_version_text",
    "parse",
    "parse_version",
    "same_recording",
    "song_key",
    "split_title",
    "version_in_name",
    "version_phrases",
]

#: Two copies of one song+version are one recording when their lengths differ by at most this.
LENGTH_TOLERANCE_S: Final = 3


@dataclass(frozen=True, slots=True)
class Version:
    """Which version of a song a track is; ``str()`` is the library's version label."""

    mix: str | None = None  # canonical mix words, e.g. "extended", "petedown intro"
    advisory: str | None = None  # "clean", "dirty" or "super clean"
    quality: str | None = None  # video quality: "sd", "qhd", "hd", "fhd", "4k"
    video: bool = False  # a video (always true when quality is set)

    @property
    def label(self) -> str:
        """Mix, advisory, then quality: "intro dirty qhd"; "" for the plain song."""
        parts = [part for part in (self.mix, self.advisory) if part]
        if self.quality:
            parts.append(self.quality)
        elif self.video:
            parts.append("video")
        return " ".join(parts)

    @property
    def is_clean(self) -> bool:
        """True for clean and super clean versions."""
        return self.advisory in ("clean", "super clean")

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class Parsed:
    """A track split into song (for people), key (for matching) and version."""

    song: str
    key: str
    version: Version


# -- folding ----------------------------------------------------------------------------------

# Letters NFKD does not decompose into a base letter plus marks.
_LETTERS = str.maketrans(
    {"ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "ı": "i"}
)
# "$" in a word is an S (Ke$ha, A$AP, Ty Dolla $ign); "!" between letters an I (P!nk).
_DOLLAR = re.compile(r"\$(?=[^\W\d_])")
_BANG = re.compile(r"(?<=[^\W\d_])!(?=[^\W\d_])")
_NOT_ALNUM = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Case- and accent-folded text (NFKD without combining marks, casefolded), spaces kept."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold().translate(_LETTERS)


def _squash(folded: str) -> str:
    """Only the letters and digits of folded text: punctuation and spaces vanish.

    Dropping spaces too makes "Jay-Z", "JAY Z" and "Jay Z" one spelling."""
    if "$" in folded:
        folded = _DOLLAR.sub("s", folded)
    if "!" in folded:
        folded = _BANG.sub("i", folded)
    return _NOT_ALNUM.sub("", folded)


def _unspaced(folded: str) -> str:
    """A name made only of punctuation ("!!!") keeps it, without spaces."""
    return "".join(folded.split())


# -- artists ----------------------------------------------------------------------------------

# Everything after the first of these is a featured artist (dropped from the key).
_FEATURING = re.compile(
    r"\s*[(\[]?\s*\b(?:ft|feat|featuring)\b\.?|\s(?:f/|w/)|\swith\s", re.IGNORECASE
)
# Separators between main artists: "A & B", "A x B", "A vs. B", "A n B", "A, B", "A y B", …
_ARTIST_SPLIT = re.compile(r"\s*(?:,|&|\+|×|\s/\s|\s(?:and|n|x|vs|y)\.?(?=\s))\s*", re.IGNORECASE)
_ARTIST_ANY = re.compile(f"{_FEATURING.pattern}|{_ARTIST_SPLIT.pattern}", re.IGNORECASE)
_LEADING_THE = re.compile(r"^the\s+(?=\S)")

_artist_cache: dict[str, str] = {}


def _artists_key(artist: str) -> str:
    """The main artists, folded and sorted: "B & A ft C" and "A and B" give one key."""
    cached = _artist_cache.get(artist)
    if cached is not None:
        return cached
    # Folded first, so "Ń" and "N" split alike.
    folded = fold(artist)
    if _ARTIST_ANY.search(folded) is None:  # one artist, nobody featured: most tracks
        name = folded.strip()
        if name.startswith("the "):
            name = _LEADING_THE.sub("", name)
        key = _squash(name) or _unspaced(name)
        if len(_artist_cache) >= 65_536:
            _artist_cache.clear()
        _artist_cache[artist] = key
        return key
    main = _FEATURING.split(folded, maxsplit=1)[0]
    names = set()
    for name in _ARTIST_SPLIT.split(main):
        name = name.strip()
        if name.startswith("the "):
            name = _LEADING_THE.sub("", name)
        squashed = _squash(name)
        if squashed:
            names.add(squashed)
    if not names:  # an artist made only of punctuation keeps what it has
        names.add(_squash(folded) or _unspaced(folded))
    key = "&".join(sorted(names))
    if len(_artist_cache) >= 65_536:
        _artist_cache.clear()
    _artist_cache[artist] = key
    return key


# "[124-101]", "(Transition 124 to 101)": two BPMs joined by a dash, "to" or ">".
# "30 sec", "15 seconds": a library's cutdown, one "30sec" token.
_TOKEN = re.compile(
    r"(?<!\d)(\d{2,3})\s*(?:-|–|—|>|to)\s*(\d{2,3})(?!\d)"
    r"|(?<!\w)(\d{1,3})\s*(?:sec|secs|second|seconds)\b"
    r"|[^\W_]+"
)
_CUTDOWN = re.compile(r"\d{1,3}sec")
_CAMELOT = re.compile(r"(?:1[0-2]|[1-9])[ab]")
_ASPECT = re.compile(r"\b(16|4)\s*[:x×]\s*(9|3)\b")
_YEAR = re.compile(r"(?:19|20)\d\d")


@dataclass(frozen=True, slots=True)
class _Reading:
    """What one annotation (a bracket group, a dash segment, a mix field) says."""

    kind: int  # _PURE: only version words; _EDITOR: "Name <version words>"; _IDENT: identity
    mix: tuple[str, ...] = ()
    advisory: str | None = None
    quality: str | None = None
    video: bool = False
    editor: str = ""
    identity: str = ""  # the identity words to keep, when version words were taken out of it


_PURE, _EDITOR, _IDENT, _FEAT = range(4)
_GROUP_FEAT = re.compile(r"^\s*(?:ft|feat|featuring|with|f/|w/)\b\.?", re.IGNORECASE)

_reading_cache: dict[tuple[str, bool], _Reading] = {}


def _read(text: str, *, field: bool = False) -> _Reading:
    """Classify an annotation's words; `field`: unknown words are a mix name, not a song's."""
    cache_key = (text, field)
    cached = _reading_cache.get(cache_key)
    if cached is not None:
        return cached
    reading = _read_uncached(text, field)
    if len(_reading_cache) >= 65_536:
        _reading_cache.clear()
    _reading_cache[cache_key] = reading
    return reading


def _tokens(text: str) -> list[str]:
    """Folded words of an annotation; a BPM transition ("124-101") is one "124-101" token."""
    folded = _ASPECT.sub(r"\1x\2", fold(text))
    tokens: list[str] = []
    for match in _TOKEN.finditer(folded):
        low, high, seconds = match.group(1), match.group(2), match.group(3)
        if seconds:
            tokens.append(f"{int(seconds)}sec")
        elif low and 40 <= int(low) <= 250 and 40 <= int(high) <= 250:
            tokens.append(f"{int(low)}-{int(high)}")
        elif low:
            tokens.extend((low, high))
        else:
            tokens.append(match.group(0))
    return tokens


def _read_uncached(text: str, field: bool) -> _Reading:
    if not field and _GROUP_FEAT.match(text):
        return _Reading(_FEAT)
    tokens = _tokens(text)
    has_remaster = any(token.startswith("remaster") for token in tokens)
    # First pass: each word or phrase with its meaning (None: a name's or a song's word).
    items: list[tuple[str, tuple[int, str] | None]] = []
    i, n = 0, len(tokens)
    while i < n:
        word = tokens[i]
        if "-" in word:
            items.append((word, (TRANS, word)))
            i += 1
            continue
        for size in range(min(LONGEST, n - i), 0, -1):
            meaning = VOCAB.get(tuple(tokens[i : i + size]))
            if meaning is not None:
                items.append((" ".join(tokens[i : i + size]), meaning))
                i += size
                break
        else:
            if _CUTDOWN.fullmatch(word):
                meaning = (MIX, f"{word[:-3]} sec")
            elif (word.isdigit() and 40 <= int(word) <= 250) or _CAMELOT.fullmatch(word):
                meaning = (NEUTRAL, "")  # a BPM or a Camelot key: neither song nor version
            elif has_remaster and _YEAR.fullmatch(word):
                meaning = (NEUTRAL, "")
            items.append((word, meaning))
            i += 1
    others = [word for word, meaning in items if meaning is None]
    identity_word = bool(others) and any(
        word in IDENTITY_WORDS if meaning is None else meaning[0] in (REMIX, MIXWORD)
        for word, meaning in items
    )
    real_version = any(
        meaning is not None and meaning[0] not in (NEUTRAL, MAIN, MIXWORD) for _, meaning in items
    )
    ends_in_name = not field and bool(items) and items[-1][1] is None  # "(Dirty Money)"
    if others and (identity_word or not real_version or ends_in_name):
        if field and not identity_word:
            # A mix field's own words ("From The Battle Of Mexico City") name a version.
            return _version([(" ".join(others), (MIX, " ".join(others))), *items], "")
        if not identity_word:
            return _Reading(_IDENT)  # a song's own words: "(Cap.1: Augurio)", "(Dirty Money)"
        # A named remix is identity; version words after its name still name the version:
        # "(Dillon Francis Extended Remix)", but "(Club Killers Remix)" is all name.
        last_name = max(index for index, (_, meaning) in enumerate(items) if meaning is None)
        name = [word for word, _ in items[: last_name + 1]]
        tail = [item for item in items[last_name + 1 :] if item[1] and item[1][0] != NEUTRAL]
        versions = [item for item in tail if item[1] and item[1][0] not in (REMIX, MIXWORD)]
        if not versions:
            return _Reading(_IDENT)
        name += [word for word, meaning in tail if meaning and meaning[0] in (REMIX, MIXWORD)]
        reading = _version(versions, "")
        return _Reading(
            _IDENT,
            reading.mix,
            reading.advisory,
            reading.quality,
            reading.video,
            "",
            " ".join(name),
        )
    return _version(items, " ".join(others))


def _version(items: list[tuple[str, tuple[int, str] | None]], editor: str) -> _Reading:
    """The version the classified words name; `editor` credits a pool editor's cut."""
    mix: list[str] = []
    advisory = quality = qnum = None
    video = has_edit = has_remix = has_trans = False
    for _, meaning in items:
        if meaning is None:
            continue
        kind, value = meaning
        if kind == ADV:
            advisory = advisory or value
        elif kind == MIX and value not in mix:
            mix.append(value)
        elif kind == QUAL:
            quality = quality or value
        elif kind == QNUM:
            qnum = qnum or value
        elif kind == VIDEO:
            video = True
        elif kind == EDIT:
            has_edit = True
        elif kind == REMIX:
            has_remix = True
        elif kind == TRANS:
            has_trans = True
            if value != "transition":
                mix.append(f"transition {value}")
    if has_trans and not any(part.startswith("transition") for part in mix):
        mix.append("transition")
    if has_remix and "remix" not in mix:
        mix.append("remix")
    if has_edit and (editor or not (mix or advisory)):
        mix.append("edit")  # "(DMS Edit)", "(Edit)"; in "(Clean Edit)" it only says "version"
    quality = qnum or quality
    parts = _ordered(mix)
    if editor:
        parts.insert(0, editor)
    kind = _EDITOR if editor else _PURE
    return _Reading(kind, tuple(parts), advisory, quality, video or bool(quality), editor)


def _ordered(mix: list[str]) -> list[str]:
    # Transitions and cutdowns (mix words outside the table) go last: "intro transition 124-101".
    return sorted(mix, key=lambda part: MIX_RANK.get(part, len(MIX_ORDER)))


def _is_mix_word(part: str) -> bool:
    """A mix part from the vocabulary (not an editor's or a mix field's own words)."""
    return part in MIX_RANK or part.startswith("transition") or part.endswith(" sec")


# -- titles -----------------------------------------------------------------------------------

_GROUP = re.compile(r"\[([^\[\]]*)\]|\(([^()]*)\)|\{([^{}]*)\}|<([^<>]*)>")
_DASH = re.compile(r"\s+[-–—]+\s+|\s+[-–—]+$|\s+\|\s+")
_TITLE_FEAT = re.compile(r"\s(?:ft|feat|featuring)\b\.?\s|\s(?:f/|w/)\s?", re.IGNORECASE)
_DASH_OR_FEAT = re.compile(f"{_DASH.pattern}|{_TITLE_FEAT.pattern}", re.IGNORECASE)
_EMPTY_GROUP = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}|<\s*>")
_LOOSE_DASH = re.compile(r"^\s*[-–—|]+\s*|\s*[-–—|]+\s*$")
_AMPERSAND = re.compile(r"\s*&\s*")
_DASHES = frozenset("-–—|")

# Piece roles: kept in the song and the key, kept in the song only, dropped from both.
_BASE, _FEATURED, _DROPPED = range(3)


@dataclass(frozen=True, slots=True)
class _Split:
    song: str  # for people
    key_text: str  # song without featured artists, before folding
    title_key: str  # key_text folded: the title's part of the song key
    readings: tuple[_Reading, ...]

    def _with(self, more: list[_Reading]) -> _Split:
        return _Split(self.song, self.key_text, self.title_key, (*self.readings, *more))


_split_cache: dict[str, _Split] = {}


def _split(title: str) -> _Split:
    cached = _split_cache.get(title)
    if cached is not None:
        return cached
    result = _split_uncached(title)
    if len(_split_cache) >= 65_536:
        _split_cache.clear()
    _split_cache[title] = result
    return result


def _split_uncached(title: str) -> _Split:
    # The common shapes first: "Song [Xtendz] - qHD - Clean" loses its version segments from
    # the end, and what is left is usually plain text and bracket groups.
    rest, peeled = title, []
    while True:
        head, dash, segment = rest.rpartition(" - ")
        if not dash or not head.strip() or any(ch in segment for ch in "()[]{}<>"):
            break
        reading = _read(segment)
        if reading.kind not in (_PURE, _EDITOR):
            break
        peeled.append(reading)
        rest = head
    if _DASH_OR_FEAT.search(rest) is None:
        return _split_groups(rest, title, peeled[::-1])
    if peeled:
        return _split_uncached(rest)._with(peeled[::-1])
    # Pieces of the title in order, each with a role; dash separators are pieces too.
    pieces: list[tuple[str, int]] = []
    readings: list[_Reading] = []
    position = 0
    segment_texts: list[list[int]] = [[]]  # per dash segment: indices of its plain-text pieces
    for match in _GROUP.finditer(title):
        _add_text(title[position : match.start()], pieces, segment_texts)
        content = match.group(match.lastindex or 0)
        reading = _read(content)
        if reading.kind == _IDENT:
            pieces.append((_identity_text(match, content, reading), _BASE))
            if reading.mix or reading.advisory or reading.quality or reading.video:
                readings.append(reading)
        elif reading.kind == _FEAT:
            pieces.append((match.group(0), _FEATURED))
        else:
            pieces.append((match.group(0), _DROPPED))
            readings.append(reading)
        position = match.end()
    _add_text(title[position:], pieces, segment_texts)
    # Dash segments after the first: version words ("- qHD - Clean") are dropped.
    for indices in segment_texts[1:]:
        text = " ".join(pieces[index][0] for index in indices if pieces[index][1] == _BASE)
        if not text.strip() or _DASH.fullmatch(text):
            continue
        reading = _read(text)
        if reading.kind in (_PURE, _EDITOR):
            readings.append(reading)
            for index in indices:
                pieces[index] = (pieces[index][0], _DROPPED)
    song = _tidy("".join(text for text, role in pieces if role != _DROPPED))
    if any(role == _FEATURED for _, role in pieces):
        key_text = _tidy("".join(text for text, role in pieces if role == _BASE))
    else:
        key_text = song
    if not song:  # a title made only of version words ("Intro") is its own song
        song = key_text = _tidy(title)
    return _Split(song, key_text, _title_key(key_text), tuple(readings))


def _split_groups(title: str, whole: str, peeled: list[_Reading]) -> _Split:
    """_split_uncached for the common title: bracket groups only, no dashes, no "feat".

    `whole` is the title before `peeled` (the readings of its dash segments) were taken off."""
    song: list[str] = []
    key: list[str] = []
    readings: list[_Reading] = []
    featured = False
    position = 0
    for match in _GROUP.finditer(title):
        text = title[position : match.start()]
        song.append(text)
        key.append(text)
        content = match.group(match.lastindex or 0)
        reading = _read(content)
        if reading.kind == _IDENT:
            text = _identity_text(match, content, reading)
            song.append(text)
            key.append(text)
            if reading.mix or reading.advisory or reading.quality or reading.video:
                readings.append(reading)
        elif reading.kind == _FEAT:
            song.append(match.group(0))
            featured = True
        else:
            readings.append(reading)
        position = match.end()
    song.append(title[position:])
    key.append(title[position:])
    song_text = _tidy("".join(song))
    key_text = _tidy("".join(key)) if featured else song_text
    if not song_text:
        song_text = key_text = _tidy(whole)
    return _Split(song_text, key_text, _title_key(key_text), (*readings, *peeled))


def _identity_text(match: re.Match[str], content: str, reading: _Reading) -> str:
    """An identity group as the song shows it: as written, less any version words in it."""
    if not reading.identity:
        return match.group(0)
    whole = match.group(0)
    return f" {whole[0]}{_identity_case(content, reading)}{whole[-1]}"


def _add_text(text: str, pieces: list[tuple[str, int]], segments: list[list[int]]) -> None:
    """Append plain title text, split at dash separators, and a featured tail as featured."""
    if not text:
        return
    position = 0
    for match in _DASH.finditer(text):
        _add_plain(text[position : match.start()], pieces, segments)
        segments.append([])
        pieces.append((match.group(0), _BASE))
        segments[-1].append(len(pieces) - 1)
        position = match.end()
    _add_plain(text[position:], pieces, segments)


def _add_plain(text: str, pieces: list[tuple[str, int]], segments: list[list[int]]) -> None:
    if not text:
        return
    featured = _TITLE_FEAT.search(text) if len(segments) == 1 else None
    if featured is not None:
        pieces.append((text[: featured.start()], _BASE))
        segments[-1].append(len(pieces) - 1)
        pieces.append((text[featured.start() :], _FEATURED))
        return
    pieces.append((text, _BASE))
    segments[-1].append(len(pieces) - 1)


def _identity_case(content: str, reading: _Reading) -> str:
    """The identity words of a group in their original spelling (version words taken out)."""
    wanted = reading.identity.split()
    words = content.split()
    kept = [word for word in words if _squash(fold(word)) in wanted]
    return " ".join(kept) if kept else content


def _tidy(text: str) -> str:
    if "()" in text or "[]" in text or "( " in text or "[ " in text or "{" in text or "<" in text:
        text = _EMPTY_GROUP.sub("", text)
    text = " ".join(text.split())
    if text[:1] in _DASHES or text[-1:] in _DASHES:
        text = _LOOSE_DASH.sub("", text).strip()
    return text


# -- public API -------------------------------------------------------------------------------


def _merge(
    readings: tuple[_Reading, ...],
    field: _Reading | None,
    advisory_field: str | None = None,
    quality_field: _Reading | None = None,
) -> Version:
    """One Version from the title's annotations, then the pool's mix field.

    The title is the more specific source (it is what the editor wrote on this file), so its
    mix, advisory and quality win; the mix field fills in what the title does not say, then
    the advisory and quality fields."""
    mix: list[str] = []
    advisory = quality = None
    video = False
    for reading in readings:
        for part in reading.mix:
            if part not in mix:
                mix.append(part)
        advisory = advisory or reading.advisory
        quality = quality or reading.quality
        video = video or reading.video
    if field is not None:
        if not mix:
            mix.extend(field.mix)
        advisory = advisory or field.advisory
        quality = quality or field.quality
        video = video or field.video
    advisory = advisory or advisory_field
    if quality_field is not None:
        quality = quality or quality_field.quality
        video = video or quality_field.video
    if not mix:
        return Version(None, advisory, quality, video or quality is not None)
    editor = [part for part in mix if not _is_mix_word(part)]
    plain = _ordered([part for part in mix if part not in editor])
    if "edit" in plain and (len(plain) > 1 or (advisory and not editor)):
        plain.remove("edit")
    text = " ".join([*editor, *plain]) or None
    return Version(text, advisory, quality, video or quality is not None)


def split_title(title: str) -> tuple[str, Version]:
    """The song (title without version annotations) and the version the title names."""
    split = _split(title)
    return split.song, _merge(split.readings, None)


def display_song(title: str) -> str:
    """The title without version annotations, as people read it (the ``{song}`` field)."""
    return _split(title).song


def _title_key(text: str) -> str:
    folded = fold(text)
    if "&" in folded:
        folded = _AMPERSAND.sub(" and ", folded)
    return _squash(folded) or _unspaced(folded)


def song_key(artist: str, title: str) -> str:
    """The song's identity: main artists (sorted, featured dropped) "/" the song, folded.

    "Beyoncé ft JAY-Z" / "Crazy In Love [Clean Intro]" → ``beyonce/crazyinlove``. Letters and
    digits of every script are kept, case- and accent-folded; punctuation and spaces vanish;
    "&" in a title reads "and"; a leading "The" of an artist is dropped."""
    return f"{_artists_key(artist)}/{_split(title).title_key}"


_quality_cache: dict[tuple[str | None, str | None], _Reading | None] = {}


def _quality_reading(quality: str | None, media: str | None) -> _Reading | None:
    if not quality and media != "video":
        return None
    cached = _quality_cache.get((quality, media))
    if cached is None:
        reading = _read(quality, field=True) if quality else _Reading(_PURE)
        video = media == "video" or bool(reading.quality)
        cached = _Reading(_PURE, (), None, reading.quality, video)
        if len(_quality_cache) < 4096:  # a pool has a handful of these
            _quality_cache[(quality, media)] = cached
    return cached


def _advisory_value(advisory: str | None) -> str | None:
    if not advisory:
        return None
    return _read(advisory, field=True).advisory


def parse(
    artist: str,
    title: str,
    *,
    mix: str | None = None,
    advisory: str | None = None,
    media: str | None = None,
    quality: str | None = None,
) -> Parsed:
    """Song, key and version of a track from its artist, title and the pool's own fields.

    `mix` is the pool's mix/tool field ("Extended", "Intro - Clean", "Dillon Francis Remix"),
    `advisory` "Clean"/"Dirty"/"Explicit", `media` "audio"/"video", `quality` the pool's video
    quality ("qHD 540", "HD 1080", "720 mp4"). What the title says wins over the fields."""
    split = _split(title)
    song, title_key = split.song, split.title_key
    field = _read(mix, field=True) if mix and mix.strip() else None
    if field is not None and field.kind == _IDENT:
        named = _tidy(mix or "")
        named_key = _title_key(named)
        if named_key not in title_key:
            song = f"{song} ({named})"
            title_key = f"{title_key}{named_key}"
    version = _merge(
        split.readings, field, _advisory_value(advisory), _quality_reading(quality, media)
    )
    return Parsed(song, f"{_artists_key(artist)}/{title_key}", version)


def parse_version(label: str) -> Version:
    """A Version from a label or a pool's mix text ("intro dirty qhd", "Intro - Clean").

    Labels read back to their Version, except when an editor's name ends in the first word of
    a version phrase ("super" before "clean", "hype" before "intro"): then the phrase wins."""
    if not label.strip():
        return Version()
    return _merge((), _read(label, field=True))


def is_version_text(text: str) -> bool:
    """Whether `text` is made only of version words ("Extended", "Intro - Clean", "124-101")."""
    return bool(text.strip()) and _read(text).kind == _PURE


def version_phrases() -> tuple[str, ...]:
    """Every version phrase the vocabulary knows, folded ("extended mix", "quick hit")."""
    return tuple(" ".join(phrase) for phrase in VOCAB)


def version_in_name(name: str, mix: str) -> bool:
    """Whether `name` already carries `mix`, so a template must not append it again.

    True when every version word the mix names is in the name's own annotations
    (``Sexy Lady [Xtendz] - qHD - Clean`` carries ``Xtendz``), or the mix text appears in it."""
    if not mix.strip():
        return True
    wanted = _read(mix, field=True)
    folded_name = _squash(fold(name))
    if _squash(fold(mix)) in folded_name:
        return True
    if wanted.kind == _IDENT:
        return False
    have = _merge(_split(name).readings, None)
    have_mix = set((have.mix or "").split())
    if not (wanted.mix or wanted.advisory or wanted.quality):
        return True  # "Single", "Main", "Original Mix": the plain song, nothing to add
    return (
        all(set(part.split()) <= have_mix for part in wanted.mix)
        and (wanted.advisory is None or wanted.advisory == have.advisory)
        and (wanted.quality is None or wanted.quality == have.quality)
    )


def same_recording(a_length_s: float | None, b_length_s: float | None) -> bool:
    """Whether two lengths can be one recording: within 3 s, or either unknown."""
    if a_length_s is None or b_length_s is None:
        return True
    return abs(a_length_s - b_length_s) <= LENGTH_TOLERANCE_S
