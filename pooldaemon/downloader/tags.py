"""What a file is (magic bytes) and merging pool metadata into its tags with mutagen."""

from __future__ import annotations

import functools
import re
import struct
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pooldaemon.errors import PoolDaemonError

#: Enough to see an ID3 header plus what follows a small one, and two MPEG frames.
SNIFF_BYTES = 8192

#: The metadata keys `write_tags` writes. It also reads "date" (another name for "year"), and
#: "pool" and "id", from which the comment ("<pool> via pooldaemon") and the ref ("<pool>:<id>")
#: are made when "comment" or "ref" is not given.
TAG_FIELDS = (
    "artist",
    "title",
    "mix",
    "genre",
    "bpm",
    "key",
    "year",
    "album",
    "label",
    "comment",
    "ref",
)


@functools.cache
def _mutagen() -> Any:
    """mutagen's classes, imported on the first write: sniffing needs none of them, and the idle
    daemon does not carry them (~1.8 MiB). mutagen's functions carry no annotations; reaching
    them through Any keeps mypy --strict useful for the rest of this module."""
    import mutagen
    import mutagen.aiff
    import mutagen.flac
    import mutagen.id3
    import mutagen.mp4
    import mutagen.wave

    return SimpleNamespace(
        AIFF=mutagen.aiff.AIFF,
        COMM=mutagen.id3.COMM,
        FLAC=mutagen.flac.FLAC,
        Frames=mutagen.id3.Frames,
        ID3=mutagen.id3.ID3,
        ID3NoHeaderError=mutagen.id3.ID3NoHeaderError,
        MP4=mutagen.mp4.MP4,
        MP4FreeForm=mutagen.mp4.MP4FreeForm,
        MutagenError=mutagen.MutagenError,
        TXXX=mutagen.id3.TXXX,
        WAVE=mutagen.wave.WAVE,
    )


_MUTAGEN_NAMES = frozenset({"AIFF", "COMM", "FLAC", "Frames", "ID3", "MP4", "TXXX", "WAVE"})


def __getattr__(name: str) -> Any:
    """mutagen's classes as attributes of this module (`tags.ID3`), imported when first asked."""
    if name in _MUTAGEN_NAMES:
        return getattr(_mutagen(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TagError(PoolDaemonError):
    """A file that sniffs as taggable media could not be read or written by mutagen."""

    code = "tags"


# --- What is this file? -----------------------------------------------------------------------

# MPEG audio Layer III tables, by the header's 2-bit version field (3 = MPEG-1, 2 = MPEG-2,
# 0 = MPEG-2.5; 1 is reserved).
_L3_KBPS = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MARKUP = re.compile(r"<[!?a-z]")

_EXPECTED: dict[str, frozenset[str]] = {
    "mp3": frozenset({"mp3"}),
    "m4a": frozenset({"mp4"}),
    "mp4": frozenset({"mp4"}),
    "m4v": frozenset({"mp4"}),
    "mov": frozenset({"mp4"}),
    "wav": frozenset({"wav"}),
    "aif": frozenset({"aiff"}),
    "aiff": frozenset({"aiff"}),
    "aifc": frozenset({"aiff"}),
    "flac": frozenset({"flac"}),
    "zip": frozenset({"zip"}),
}


def sniff_media(head: bytes) -> str | None:
    """Name the content from its first bytes (docs/reliability.md H9): mp3, wav, aiff, flac,
    mp4, zip, html (any markup, so an error page) or json; None when nothing matches."""
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"fLaC":
        return "flac"
    # "moov", "mdat" and "wide" first: QuickTime files older than the ftyp box.
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide"):
        return "mp4"
    # Local header, empty archive, or the marker that starts a spanned set (unzip refuses that).
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:3] == b"ID3":
        return _after_id3(head)
    if _mpeg_frame_length(head, 0) is not None:
        return "mp3" if _mpeg_frames_agree(head) else None
    text = _text_start(head)
    if _MARKUP.match(text):
        return "html"
    if text[:1] in ("{", "["):
        return "json"
    return None


def expected_kinds(ext: str) -> set[str]:
    """The sniffed kinds acceptable for a file with extension `ext` (empty when unknown)."""
    return set(_EXPECTED.get(ext.lower().lstrip("."), frozenset()))


def _after_id3(head: bytes) -> str:
    """An ID3v2 tag starts MP3s, but some taggers put one in front of FLAC too."""
    if len(head) >= 10:
        size = 10 + _syncsafe(head[6:10]) + (10 if head[5] & 0x10 else 0)
        if head[size : size + 4] == b"fLaC":
            return "flac"
    return "mp3"


def _syncsafe(data: bytes) -> int:
    """ID3's 28-bit integer stored 7 bits per byte."""
    value = 0
    for byte in data:
        value = (value << 7) | (byte & 0x7F)
    return value


def _mpeg_frame_length(head: bytes, pos: int) -> int | None:
    """The length of the MPEG Layer III frame whose header starts at `pos`, or None."""
    if pos + 4 > len(head) or head[pos] != 0xFF or head[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[pos + 1] >> 3) & 3, (head[pos + 1] >> 1) & 3
    bitrate_index, rate_index = head[pos + 2] >> 4, (head[pos + 2] >> 2) & 3
    # Layer bits 01 = Layer III. Bitrate 0 ("free") and 15, rate 3 and version 1 are invalid;
    # refusing them keeps random bytes starting with 0xFF from passing as MP3.
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _L3_KBPS[version][bitrate_index] * 1000
    rate = _SAMPLE_RATES[version][rate_index]
    padding = (head[pos + 2] >> 1) & 1
    return (144 if version == 3 else 72) * bitrate // rate + padding


def _mpeg_frames_agree(head: bytes) -> bool:
    """When the head holds the next frame's header too, it must be one."""
    length = _mpeg_frame_length(head, 0)
    assert length is not None
    return len(head) < length + 4 or _mpeg_frame_length(head, length) is not None


def _text_start(head: bytes) -> str:
    """The start of `head` as lower-case text without a BOM or leading whitespace."""
    if head.startswith(b"\xef\xbb\xbf"):
        text = head[3:512].decode("utf-8", "replace")
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head[:512].decode("utf-16", "replace")
    else:
        text = head[:512].decode("latin-1")
    return text.lstrip().lower()


# --- Writing tags -----------------------------------------------------------------------------

# docs/formats.md "Tags" has this mapping as a table, with where each name comes from.
# Mix goes in its own field, never into the title: the title stays what the pool calls the
# track, and ID3 TIT3 ("subtitle/description refinement") is the frame for "Extended Mix".
# "year" is held as TDRC here; saving as ID3v2.3 turns it into TYER (+ TDAT for a full date).
_ID3_FRAMES = {
    "artist": "TPE1",
    "title": "TIT2",
    "mix": "TIT3",
    "genre": "TCON",
    "bpm": "TBPM",
    "key": "TKEY",
    "year": "TDRC",
    "album": "TALB",
    "label": "TPUB",
}
#: The TXXX description holding the track's ref.
REF_TXXX = "POOLDAEMON_REF"
#: ID3v2.4 frames with no ID3v2.3 counterpart that we keep anyway when a tag becomes v2.3 (as
#: iTunes and Picard do for the sort orders): a file's values are never dropped by our save.
#: TDRC, TDOR, TIPL and TMCL are not here: update_to_v23 converts them to TYER/TDAT, TORY, IPLS.
_V24_KEPT: tuple[str, ...] = ("ASPI", "EQU2", "RVA2", "SEEK", "SIGN", "TDEN", "TDRL", "TDTG")
_V24_KEPT += ("TMOO", "TPRO", "TSOA", "TSOP", "TSOT", "TSST")
# The first name is the one written; any of them holding a value counts as "already tagged".
_VORBIS_KEYS = {
    "artist": ("ARTIST",),
    "title": ("TITLE",),
    "mix": ("SUBTITLE",),
    "genre": ("GENRE",),
    "bpm": ("BPM",),
    "key": ("INITIALKEY", "KEY"),
    "year": ("DATE",),
    "album": ("ALBUM",),
    "label": ("LABEL", "ORGANIZATION"),
    "comment": ("COMMENT",),
    "ref": ("POOLDAEMON_REF",),
}
# MP4 has no standard atom for key or label: DJ software and taggers (Mixed In Key, Traktor,
# Mixxx, Picard) use these iTunes freeform atoms; the ref gets a freeform atom of our own.
_MP4_KEYS = {
    "artist": ("©ART",),
    "title": ("©nam",),
    "mix": ("----:com.apple.iTunes:SUBTITLE",),
    "genre": ("©gen", "gnre"),
    "bpm": ("tmpo",),
    "key": ("----:com.apple.iTunes:initialkey", "----:com.apple.iTunes:INITIALKEY"),
    "year": ("©day",),
    "album": ("©alb",),
    "label": ("----:com.apple.iTunes:LABEL", "----:com.apple.iTunes:label"),
    "comment": ("©cmt",),
    "ref": ("----:com.pooldaemon:ref",),
}
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


def write_tags(path: Path, meta: Mapping[str, object]) -> bool:
    """Merge `meta` (keys from TAG_FIELDS, plus "pool", "id" and "date") into the tags of the
    file at `path`, in place.

    Keys: artist, title, mix, genre, bpm (rounded to a whole number), key (initial key as the
    pool spells it, e.g. "Am" or "8A"), year (or "date"; YYYY[-MM[-DD]]), album (the release),
    label, comment (default: one naming "pool"), ref (default: "pool:id"). Missing or empty keys
    are skipped. MP3, WAV and AIFF get ID3v2.3 whenever something is written (an existing v2.4
    tag is converted then, and only then); MP4 gets iTunes atoms; FLAC Vorbis comments.

    A tag that already has a non-empty value is kept: the pool's file knows better than its
    catalog row. Returns False, changing nothing, when the content (sniffed, not guessed from the
    name) is not taggable media; raises TagError when mutagen cannot parse a media file.
    """
    values = _clean_values(meta)
    with open(path, "rb") as fh:
        kind = sniff_media(fh.read(SNIFF_BYTES))
    writer = _WRITERS.get(kind or "")
    if writer is None:
        return False
    try:
        writer(path, values)
    except (_mutagen().MutagenError, struct.error, ValueError, EOFError) as err:
        why = str(err) or type(err).__name__
        raise TagError(f"cannot tag {path.name}: the {kind} file looks corrupt ({why})") from err
    return True


def _clean_values(meta: Mapping[str, object]) -> dict[str, str]:
    """Non-empty, single-line text per field; bpm as a whole number, year as YYYY[-MM[-DD]];
    comment and ref filled from "pool" and "id" when not given."""
    values: dict[str, str] = {}
    for field in (*TAG_FIELDS, "pool", "id"):
        raw = meta.get(field)
        if field == "year" and raw in (None, ""):
            raw = meta.get("date")
        if raw is None:
            continue
        text = _one_line(str(raw))
        if field == "bpm":
            text = _clean_bpm(text)
        elif field == "year":
            match = _DATE.match(text)
            text = match.group(0) if match else ""
        if text:
            values[field] = text
    pool = values.pop("pool", "")
    item_id = values.pop("id", "")
    if pool:
        values.setdefault("comment", f"{pool} via pooldaemon")
        if item_id:
            values.setdefault("ref", f"{pool}:{item_id}")
    return values


def _one_line(text: str) -> str:
    """Control characters become spaces; runs of whitespace one space."""
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return " ".join(text.split())


def _clean_bpm(text: str) -> str:
    """'127.6' → '128'; nonsense → ''."""
    try:
        bpm = round(float(text))
    except (ValueError, OverflowError):
        return ""
    return str(bpm) if 0 < bpm < 1000 else ""


def _present(existing: Iterable[object]) -> bool:
    """Whether a tag's values hold anything worth keeping."""
    for value in existing:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value:
                return True
        elif str(value).strip():
            return True
    return False


def _merge_id3(tags: Any, values: Mapping[str, str]) -> bool:
    """Fill missing ID3 frames; return whether anything changed."""
    m = _mutagen()
    changed = False
    for field, frame_id in _ID3_FRAMES.items():
        if field in values and not any(_present(f.text) for f in tags.getall(frame_id)):
            tags.setall(frame_id, [m.Frames[frame_id](encoding=3, text=[values[field]])])
            changed = True
    comments = [f for f in tags.getall("COMM") if f.desc == ""]
    if "comment" in values and not any(_present(f.text) for f in comments):
        tags.delall("COMM::eng")
        tags.add(m.COMM(encoding=3, lang="eng", desc="", text=[values["comment"]]))
        changed = True
    refs = tags.getall(f"TXXX:{REF_TXXX}")
    if "ref" in values and not any(_present(f.text) for f in refs):
        tags.setall(f"TXXX:{REF_TXXX}", [m.TXXX(encoding=3, desc=REF_TXXX, text=[values["ref"]])])
        changed = True
    return changed


def _to_v23(tags: Any) -> None:
    """Make `tags` an ID3v2.3 tag, the version rekordbox, Serato and CDJs all read.

    mutagen's save(v2_version=3) only changes the frame encoding (UTF-8 becomes UTF-16, which
    v2.3 has); update_to_v23 converts the frames (TDRC to TYER/TDAT …) but drops v2.4-only ones,
    so those are set aside and put back: readers skip frames they do not know."""
    kept = [frame for frame_id in _V24_KEPT for frame in tags.getall(frame_id)]
    tags.update_to_v23()
    for frame in kept:
        tags.add(frame)


def _tag_mp3(path: Path, values: Mapping[str, str]) -> None:
    """ID3v2.3 at the start of an MPEG file."""
    m = _mutagen()
    try:
        tags = m.ID3(path)
    except m.ID3NoHeaderError:
        tags = m.ID3()
    if _merge_id3(tags, values):
        _to_v23(tags)
        tags.save(path, v2_version=3)


def _tag_iff(path: Path, values: Mapping[str, str], cls: Any) -> None:
    """An ID3v2.3 tag in an `id3 ` chunk (WAV, RIFF) or `ID3 ` chunk (AIFF, FORM)."""
    audio = cls(path)
    if audio.tags is None:
        audio.add_tags()
    if _merge_id3(audio.tags, values):
        _to_v23(audio.tags)
        audio.save(v2_version=3)


def _tag_flac(path: Path, values: Mapping[str, str]) -> None:
    """Vorbis comments."""
    audio = _mutagen().FLAC(path)
    if audio.tags is None:
        audio.add_tags()
    changed = False
    for field, keys in _VORBIS_KEYS.items():
        if field in values and not any(_present(audio.tags.get(k, [])) for k in keys):
            audio.tags[keys[0]] = [values[field]]
            changed = True
    if changed:
        audio.save()


def _tag_mp4(path: Path, values: Mapping[str, str]) -> None:
    """iTunes-style atoms; fields without a standard atom go into freeform (`----`) atoms."""
    audio = _mutagen().MP4(path)
    if audio.tags is None:
        audio.add_tags()
    changed = False
    for field, keys in _MP4_KEYS.items():
        if field not in values or any(_present(audio.tags.get(k, [])) for k in keys):
            continue
        value = values[field]
        if field == "bpm":
            audio.tags["tmpo"] = [int(value)]
        elif keys[0].startswith("----:"):
            audio.tags[keys[0]] = [_mutagen().MP4FreeForm(value.encode())]
        else:
            audio.tags[keys[0]] = [value]
        changed = True
    if changed:
        audio.save()


_WRITERS: dict[str, Callable[[Path, Mapping[str, str]], None]] = {
    "mp3": _tag_mp3,
    "wav": lambda path, values: _tag_iff(path, values, _mutagen().WAVE),
    "aiff": lambda path, values: _tag_iff(path, values, _mutagen().AIFF),
    "flac": _tag_flac,
    "mp4": _tag_mp4,
}
