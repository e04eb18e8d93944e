"""Request files: which names are requests, bytes → parsed lines, and the result and errors texts.

Pure functions over bytes and text (no filesystem, no store): `parse_request_file` turns a dropped
file's content into one entry per request line, `build_result` / `result_text` / `errors_text` give
the exact text written beside the file once its requests are submitted. See `pooldaemon.drop` for
how the watcher uses them.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from pooldaemon.errors import BadRequest
from pooldaemon.models import Request
from pooldaemon.refs import parse_line, parse_object

#: docs/interface.md §3: files over 1 MiB are rejected as a whole; one byte more is read to tell.
MAX_FILE_BYTES = 1024 * 1024
EXTENSIONS = (".txt", ".json")
#: docs/interface.md §3: names still being written by browsers and editors are left alone.
IGNORED_ENDINGS = (".tmp", ".part", ".crdownload", "~")
#: Requests per submit() call: one engine transaction each, short enough not to hold the store
#: for long. Part of the idempotency keys (`drop:<sha256>:<first line of the call>`): a changed
#: value would re-key calls replayed after a crash, so leave it be.
SUBMIT_CHUNK = 500
#: Longest line text echoed back in a result or errors file.
TEXT_CAP = 200
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# C0 and C1 controls other than whitespace: many of them mean the file is not text.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What became of one submitted request: a job id, or the reason it was refused."""

    job: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.job is None) == (self.reason is None):
            raise ValueError("a SubmitOutcome has either a job or a reason")


#: `submit(requests, idempotency_key)`: one outcome per request, in order. Raising means "not
#: decided, try again later" (the requests stay recorded and are submitted again).
Submit = Callable[[list[Request], str], Awaitable[list[SubmitOutcome]]]
#: Configured pool name → the request kinds it supports (what `refs.parse_line` takes).
PoolKinds = Callable[[], Mapping[str, Sequence[str]]]


def idempotency_key(sha256: str, line: int) -> str:
    """The key of the submit() call whose first request is on `line` of this content."""
    return f"drop:{sha256}:{line}"


def submit_chunks(lines: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The parsed requests of a content in the calls they are submitted in.

    Derived only from the recorded lines and SUBMIT_CHUNK, so a replay after a crash makes the
    same calls with the same keys.
    """
    requests = [entry for entry in lines if "request" in entry]
    return [requests[i : i + SUBMIT_CHUNK] for i in range(0, len(requests), SUBMIT_CHUNK)]


def is_request_name(name: str) -> bool:
    """docs/interface.md §3: `*.txt` and `*.json` (any case); dotfiles and partial downloads are
    not."""
    lower = name.lower()
    return (
        not name.startswith(".")
        and lower.endswith(EXTENSIONS)
        and not lower.endswith(IGNORED_ENDINGS)
    )


# --- reading and parsing -------------------------------------------------------------------


class FileProblem(Exception):
    """The file is rejected as a whole; the message says why, for the errors file."""


def decode_request_file(data: bytes) -> str:
    """Bytes → text, or FileProblem for binary, UTF-16/32 and other non-UTF-8 content."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileProblem("UTF-32 text (it starts with a UTF-32 byte-order mark); save it as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileProblem("UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8")
    if b"\x00" in data:
        if _looks_utf16(data):
            raise FileProblem("UTF-16 text without a byte-order mark; save it as UTF-8")
        raise FileProblem("binary data (it contains NUL bytes), not a text file of requests")
    if data.startswith(codecs.BOM_UTF8):
        # Windows editors add it; the rest is UTF-8 all the same.
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        if _mostly_binary(data):
            raise FileProblem(
                "binary data (mostly non-text bytes), not a text file of requests"
            ) from None
        line = data.count(b"\n", 0, err.start) + 1
        raise FileProblem(
            f"not UTF-8: byte 0x{data[err.start]:02X} on line {line} is not valid UTF-8 "
            "(Latin-1 or Windows-1252 text?); save it as UTF-8"
        ) from None
    controls = len(_CONTROLS.findall(text))
    if controls * 20 > len(text):
        raise FileProblem("binary data (mostly non-text characters), not a text file of requests")
    return text


def _looks_utf16(data: bytes) -> bool:
    half = len(data) // 2
    if half < 2:
        return False
    even, odd = data[0::2].count(0), data[1::2].count(0)
    return (odd >= 0.4 * half and even <= 0.05 * half) or (
        even >= 0.4 * half and odd <= 0.05 * half
    )


def _mostly_binary(data: bytes) -> bool:
    # Control bytes mark binary data; many high bytes alone are just another 8-bit charset.
    sample = data[:4096]
    controls = sum(1 for b in sample if b < 0x09 or 0x0E <= b < 0x20 or b == 0x7F)
    return controls * 10 > len(sample)


def parse_request_file(
    name: str, data: bytes, pools: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """Every request line of a dropped file, parsed or with its reason; FileProblem if none.

    Entries are `{"line", "text", "request": {…}}` or `{"line", "text", "reason"}`; "line" is
    1-based (the position in the list for `.json`).
    """
    if not data:
        raise FileProblem("the file is empty: no requests")
    text = decode_request_file(data)
    if name.lower().endswith(".json"):
        return _parse_json(text, pools)
    entries: list[dict[str, Any]] = []
    for number, raw in enumerate(_LINE_BREAK.split(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entries.append(_entry(number, line, partial(parse_line, line, pools)))
    if not entries:
        raise FileProblem("no requests: only blank lines and comments")
    return entries


def _entry(number: int, text: str, parse: Callable[[], Request]) -> dict[str, Any]:
    try:
        request = parse()
    except BadRequest as err:
        return {"line": number, "text": cap_text(text), "reason": err.message}
    return {"line": number, "text": cap_text(text), "request": asdict(request)}


class _DuplicateKeys:
    """A JSON object that names a key twice (Python's json would silently keep the last)."""

    def __init__(self, obj: dict[str, Any], key: str) -> None:
        self.obj = obj
        self.key = key


def _object_pairs(pairs: list[tuple[str, Any]]) -> Any:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            return _DuplicateKeys(obj, key)
        seen.add(key)
    return obj  # pragma: no cover - unreachable: a shorter dict means a repeated key


def _no_constant(name: str) -> Any:
    # docs/reliability.md §0: Python's json takes NaN and Infinity without complaint; JSON does not.
    raise ValueError(f"{name} is not a JSON value")


def _parse_json(text: str, pools: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    try:
        value = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise FileProblem(f"not valid JSON: {err}{_json_hint(text, err.pos)}") from None
    except ValueError as err:
        raise FileProblem(f"not valid JSON: {err}") from None
    except RecursionError:
        raise FileProblem("not valid JSON for requests: nested too deeply") from None
    if not isinstance(value, list):
        raise FileProblem(
            'a .json request file holds a list of objects such as [{"pool": "crateq", '
            f'"id": "570291"}}]; this one holds {_json_kind(value)}'
        )
    if not value:
        raise FileProblem("the list is empty: no requests")
    entries: list[dict[str, Any]] = []
    for number, item in enumerate(value, start=1):
        if isinstance(item, _DuplicateKeys):
            shown = json.dumps(item.obj, ensure_ascii=False)
            entries.append(
                {"line": number, "text": cap_text(shown), "reason": f"key {item.key!r} given twice"}
            )
            continue
        shown = json.dumps(_plain(item), ensure_ascii=False)
        entries.append(_entry(number, shown, partial(parse_object, item, pools)))
    return entries


def _json_hint(text: str, pos: int) -> str:
    """Name the usual culprit when the parser stopped right at it (docs/reliability.md F1)."""
    here = text[pos : pos + 2]
    if here.startswith(("//", "/*", "#")):
        return " (JSON allows no comments)"
    if here[:1] in ("]", "}") and text[:pos].rstrip().endswith(","):
        return " (JSON allows no trailing commas)"
    return ""


def _plain(value: Any) -> Any:
    """JSON value with any duplicate-key marker nested inside turned back into its dict."""
    if isinstance(value, _DuplicateKeys):
        return _plain(value.obj)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, dict | _DuplicateKeys):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def cap_text(text: str) -> str:
    return text if len(text) <= TEXT_CAP else text[: TEXT_CAP - 1] + "…"


def printable(text: str) -> str:
    """Text safe to show in an errors file: control characters and stray bytes escaped."""
    return _UNPRINTABLE.sub(
        lambda m: (
            f"\\x{ord(m.group()) - 0xDC00:02x}"
            if 0xDC80 <= ord(m.group()) <= 0xDCFF
            else f"\\x{ord(m.group()):02x}"
            if ord(m.group()) < 0x100
            else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )


def build_result(
    lines: list[dict[str, Any]], outcomes: Mapping[int, SubmitOutcome]
) -> dict[str, Any]:
    """docs/interface.md §3 result: accepted lines with their job, rejected lines with the
    reason."""
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for entry in lines:
        if "request" in entry:
            outcome = outcomes[entry["line"]]
            if outcome.job is not None:
                ref = Request(**entry["request"]).ref
                accepted.append({"line": entry["line"], "ref": ref, "job": outcome.job})
                continue
            reason = outcome.reason
        else:
            reason = entry["reason"]
        rejected.append({"line": entry["line"], "text": entry["text"], "reason": reason})
    return {"accepted": accepted, "rejected": rejected}


def result_text(result: Mapping[str, Any]) -> str:
    """The exact content of NAME.result.json."""
    doc = {"accepted": result["accepted"], "rejected": result["rejected"]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def errors_text(name: str, problem: str | None, rejected: Sequence[Mapping[str, Any]] = ()) -> str:
    """The exact content of NAME.errors.txt: the whole-file problem, or each rejected line."""
    shown = printable(name)
    if problem is not None:
        head = f"{shown}: not used, nothing was queued: {problem}"
    else:
        head = f"{shown}: no valid request in this file, nothing was queued."
    lines = [head, "The file was moved here unchanged.", ""]
    for entry in rejected:
        lines.append(f"line {entry['line']}: {printable(entry['reason'])}")
        lines.append(f"    {printable(entry['text'])}")
    return "\n".join(lines).rstrip("\n") + "\n"
