"""What an answer means: status, headers and Content-Range checked before a byte is written.

Pure checks, so each row of a table is one answer; the expectations follow RFC 9110 (206 with a
Content-Range naming exactly the bytes asked for, 416 with `bytes */TOTAL`, a 200 meaning the
Range was ignored) and docs/reliability.md (H2, H3, H4, H7, H8, H9).
"""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from pooldaemon.downloader.answer import (
    Fail,
    FetchError,
    Head,
    Identity,
    check_head,
    check_media_head,
    parse_content_range,
    parse_unsatisfied,
)

# -- parsers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", (0, 99, 1000)),
        ("bytes 900-999/1000", (900, 999, 1000)),
        ("BYTES 1-1/2", (1, 1, 2)),
        ("items 0-99/1000", None),
        ("bytes 0-99/*", None),
        ("bytes */1000", None),
        ("bytes 100-99/1000", None),
        ("bytes 0-1000/1000", None),
        ("bytes 0-99", None),
        ("", None),
        (None, None),
    ],
)
def test_content_range_is_parsed_strictly(
    value: str | None, expected: tuple[int, int, int] | None
) -> None:
    assert parse_content_range(value) == expected


def test_unsatisfied_range_names_the_size() -> None:
    assert parse_unsatisfied("bytes */4096") == 4096
    assert parse_unsatisfied("bytes 0-1/4096") is None
    assert parse_unsatisfied(None) is None


def test_fetch_errors_name_the_server() -> None:
    err = FetchError(Fail.SERVER, "dc03", "HTTP 503")
    assert str(err) == "dc03: HTTP 503"


# -- check_head: one answer per row ---------------------------------------------------------------

#: What is asked in every row unless the row says otherwise: bytes 0-99 of a part not probed yet.
PROBE: dict[str, Any] = {
    "ranged": True,
    "start": 0,
    "end": 99,
    "probe": True,
    "known_size": None,
    "planned_size": None,
}
#: A chunk of a part being assembled at 1000 bytes: bytes 100-199.
CHUNK: dict[str, Any] = {
    "ranged": True,
    "start": 100,
    "end": 199,
    "probe": False,
    "known_size": 1000,
    "planned_size": 1000,
}


def _check(status: int, headers: dict[str, str], length: int | None, asked: dict[str, Any]) -> Head:
    return check_head(status, CIMultiDict(headers), length, server="s1", **asked)


@pytest.mark.parametrize(
    ("status", "headers", "length", "asked", "expected"),
    [
        # A 206 names the size and says ranges work.
        (206, {"Content-Range": "bytes 0-99/1000"}, 100, PROBE, Head(1000, True, Identity(1000))),
        # A file smaller than the first chunk: the server answers with what there is.
        (206, {"Content-Range": "bytes 0-49/50"}, 50, PROBE, Head(50, True, Identity(50))),
        (
            206,
            {"Content-Range": "bytes 100-199/1000", "ETag": '"v1"', "Last-Modified": "Mon"},
            None,
            CHUNK,
            Head(1000, True, Identity(1000, '"v1"', "Mon")),
        ),
        # A 200 is the whole file: the Range was not honoured.
        (200, {}, 1000, PROBE, Head(1000, False, Identity(1000))),
        (200, {"Content-Encoding": "identity"}, 1000, PROBE, Head(1000, False, Identity(1000))),
        # A 200 without Content-Length takes the pool's size, then the size being assembled.
        (200, {}, None, {**PROBE, "planned_size": 700}, Head(700, False, Identity(700))),
        (200, {}, None, {**CHUNK, "planned_size": None}, Head(1000, False, Identity(1000))),
        (200, {"Content-Type": "audio/mpeg"}, 5, PROBE, Head(5, False, Identity(5))),
    ],
)
def test_usable_answers_describe_the_file(
    status: int, headers: dict[str, str], length: int | None, asked: dict[str, Any], expected: Head
) -> None:
    assert _check(status, headers, length, asked) == expected


@pytest.mark.parametrize(
    ("status", "headers", "length", "asked", "kind", "what"),
    [
        (401, {}, None, CHUNK, Fail.TOKEN, "HTTP 401"),
        (403, {}, None, CHUNK, Fail.TOKEN, "HTTP 403"),
        (410, {}, None, CHUNK, Fail.TOKEN, "HTTP 410"),
        (429, {}, None, CHUNK, Fail.RATE, "HTTP 429"),
        (503, {"Retry-After": "7"}, None, CHUNK, Fail.RATE, "HTTP 503"),
        (503, {}, None, CHUNK, Fail.SERVER, "HTTP 503"),
        (500, {}, None, CHUNK, Fail.SERVER, "HTTP 500"),
        (404, {}, None, PROBE, Fail.SERVER, "HTTP 404"),
        # 416 on a probe, or without `bytes */TOTAL`, says nothing usable.
        (
            416,
            {"Content-Range": "bytes */1000"},
            None,
            PROBE,
            Fail.SERVER,
            "HTTP 416 for bytes 0-99",
        ),
        (416, {}, None, CHUNK, Fail.SERVER, "HTTP 416 for bytes 100-199"),
        # 416 naming the size being assembled: our request was wrong, not the file.
        (
            416,
            {"Content-Range": "bytes */1000"},
            None,
            CHUNK,
            Fail.SERVER,
            "HTTP 416 for bytes 100-199 of 1000",
        ),
        # 416 naming another size: the file changed (H4 b).
        (
            416,
            {"Content-Range": "bytes */900"},
            None,
            CHUNK,
            Fail.IDENTITY,
            "HTTP 416, file is now 900 bytes",
        ),
        # Offsets are never counted in decoded bytes (H8).
        (206, {"Content-Encoding": "gzip"}, 100, CHUNK, Fail.SERVER, "gzip-encoded body refused"),
        (200, {"Content-Type": "text/html; charset=utf-8"}, 10, PROBE, Fail.SERVER, "an HTML page"),
        (
            206,
            {"Content-Range": "bytes 0-99/1000"},
            100,
            {**PROBE, "ranged": False},
            Fail.SERVER,
            "206 to a request without Range",
        ),
        (206, {"Content-Range": "bytes 0-99/*"}, 100, PROBE, Fail.SERVER, "206 with Content-Range"),
        (206, {}, 100, PROBE, Fail.SERVER, "206 with Content-Range None"),
        # Other bytes than asked, same size: the server is wrong.
        (
            206,
            {"Content-Range": "bytes 0-99/1000"},
            100,
            CHUNK,
            Fail.SERVER,
            "Content-Range bytes 0-99/1000 for bytes 100-199",
        ),
        # Other bytes than asked, another size: the file changed (H3).
        (
            206,
            {"Content-Range": "bytes 100-150/151"},
            51,
            CHUNK,
            Fail.IDENTITY,
            "file is now 151 bytes",
        ),
        (
            206,
            {"Content-Range": "bytes 100-199/1000"},
            50,
            CHUNK,
            Fail.SERVER,
            "Content-Length 50 for Content-Range bytes 100-199/1000",
        ),
        (200, {}, 0, PROBE, Fail.SERVER, "an empty 200 answer"),
        (200, {}, None, PROBE, Fail.SERVER, "200 without Content-Length"),
    ],
)
def test_unusable_answers_say_what_to_do_next(
    status: int,
    headers: dict[str, str],
    length: int | None,
    asked: dict[str, Any],
    kind: Fail,
    what: str,
) -> None:
    with pytest.raises(FetchError) as caught:
        _check(status, headers, length, asked)
    assert caught.value.kind is kind
    assert caught.value.server == "s1"
    assert caught.value.what.startswith(what)


def test_a_rate_limit_carries_its_retry_after() -> None:
    with pytest.raises(FetchError) as caught:
        _check(429, {"Retry-After": "30"}, None, CHUNK)
    assert caught.value.retry_after == 30.0
    with pytest.raises(FetchError) as caught:
        _check(429, {}, None, CHUNK)
    assert caught.value.retry_after is None


def test_a_changed_file_reports_what_the_server_now_says() -> None:
    with pytest.raises(FetchError) as caught:
        _check(416, {"Content-Range": "bytes */900", "ETag": '"v2"'}, None, CHUNK)
    assert caught.value.identity == Identity(900, '"v2"', None)


@pytest.mark.parametrize(
    ("mine", "ref", "same_server", "differs"),
    [
        (Identity(10, '"a"', "d1"), Identity(10, '"a"', "d1"), True, False),
        (Identity(11), Identity(10), False, True),
        (Identity(10, '"a"'), Identity(10, '"b"'), False, True),
        # A weak ETag promises no bytes: it never tells two files apart.
        (Identity(10, 'W/"a"'), Identity(10, '"b"'), False, False),
        # Mirrors stamp their copies differently; one server changing its date is a change.
        (Identity(10, None, "d1"), Identity(10, None, "d2"), False, False),
        (Identity(10, None, "d1"), Identity(10, None, "d2"), True, True),
    ],
)
def test_identities_differ_by_size_strong_etag_or_one_servers_date(
    mine: Identity, ref: Identity, same_server: bool, differs: bool
) -> None:
    assert (mine.differs(ref, same_server=same_server) is not None) is differs


@pytest.mark.parametrize(
    ("head", "refused"),
    [
        (b"<!DOCTYPE html><html><body>Error</body></html>", "an HTML page"),
        (b'{"error": "expired"}', "an JSON page"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(64), None),
    ],
)
def test_an_error_page_is_never_taken_for_media(head: bytes, refused: str | None) -> None:
    if refused is None:
        check_media_head(head, "s1")
        return
    with pytest.raises(FetchError, match=refused) as caught:
        check_media_head(head, "s1")
    assert caught.value.kind is Fail.SERVER
