"""The CrateQ simulator, spoken to with plain aiohttp as docs/pools/crateq.md and docs/interface.md
§6 describe."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from pooldaemon.sim.catalog import MIXES, Catalog, format_size
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.crateq_wire import API_FIELDS, QUEUE_FIELDS
from pooldaemon.sim.faults import CONTENT_RANGE_VARIANTS
from pooldaemon.sim.media import write_media

ANCHOR = date(2026, 1, 15)


@pytest.fixture
async def sim() -> AsyncIterator[CrateQSim]:
    async with CrateQSim(records=250, seed="test") as running:
        yield running


async def login(sim: CrateQSim, session: aiohttp.ClientSession) -> str:
    async with session.post(
        f"{sim.base_url}/Auth/Login",
        params={"key": sim.api_key},
        data={"username": sim.username, "password": sim.password},
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    token: str = body[0]["token"]
    return token


async def call(
    sim: CrateQSim,
    session: aiohttp.ClientSession,
    endpoint: str,
    token: str | None,
    *,
    method: str = "GET",
    key: bool = True,
    **params: Any,
) -> tuple[int, bytes]:
    query = {name: str(value) for name, value in params.items()}
    if key:
        query["key"] = sim.api_key
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(
        method, f"{sim.base_url}/{endpoint}", params=query, headers=headers
    ) as resp:
        return resp.status, await resp.read()


async def media_page(
    sim: CrateQSim, session: aiohttp.ClientSession, token: str, **params: Any
) -> dict[str, Any]:
    status, body = await call(sim, session, "Content/Media", token, **params)
    assert status == 200, body
    page: dict[str, Any] = json.loads(body)
    return page


async def fetch(
    session: aiohttp.ClientSession, url: str, token: str, **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    async with session.get(url, headers={"Authorization": f"Bearer {token}", **headers}) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


async def first_track(
    sim: CrateQSim, session: aiohttp.ClientSession, token: str
) -> tuple[int, str, bytes]:
    item = (await media_page(sim, session, token, rows=1))["data"][0]
    return item["mediaId"], item["auth"], sim.expected_bytes(item["mediaId"])


def claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


# -- catalog truth --------------------------------------------------------------------------------


def test_catalog_is_deterministic_and_sized() -> None:
    one = list(Catalog(400, "seed-a", anchor=ANCHOR).records())
    two = list(Catalog(400, "seed-a", anchor=ANCHOR).records())
    other = list(Catalog(400, "seed-b", anchor=ANCHOR).records())
    assert one == two
    assert len(one) == 400
    assert [r["artist"] for r in one] != [r["artist"] for r in other]
    ids = [r["mediaId"] for r in one]
    assert ids == sorted(ids) and len(set(ids)) == 400
    dates = [r["date"] for r in one]
    assert dates == sorted(dates) and dates[-1] == ANCHOR.isoformat()


def test_catalog_fields_are_realistic() -> None:
    records = list(Catalog(1000, "fields", anchor=ANCHOR).records())
    for r in records:
        assert 60 <= r["bpm"] <= 180
        assert 1970 <= r["releaseYear"] <= int(r["date"][:4])
        assert r["tool"] in MIXES
        assert r["advisory"] in ("Clean", "Dirty")
        assert r["source"] in ("smashvidz", "lnrp", "dms")
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"])
        assert re.fullmatch(r"\d{1,2}:\d{2}", r["length"])
        assert r["size"] == format_size(r["sizeBytes"]) and r["size"].endswith(" MB")
        assert "?token=" in r["preview"]
        if r["video"]:
            assert r["quality"] in ("SD", "qHD 540", "HD 720", "Full HD 1080", "")
            assert r["img"].startswith("/images/") and r["kind"] == "mp4"
        else:
            assert (r["quality"], r["img"], r["kind"]) == ("", "", "mp3")
    artists = {r["artist"] for r in records}
    assert {"Beyoncé", "Rosalía", "AC/DC"} <= artists
    assert any(a.startswith("Ñengo") for a in artists)
    assert any(" ft " in a for a in artists) and any(" & " in a for a in artists)
    assert any(r["editor"] == "" for r in records) and any(r["editor"] for r in records)
    assert {r["advisory"] for r in records} == {"Clean", "Dirty"}
    assert {r["video"] for r in records} == {True, False}


def test_full_size_catalog_is_lazy() -> None:
    catalog = Catalog(174_420, "big", anchor=ANCHOR)
    assert len(catalog) == 174_420
    newest = catalog.select({})[:3]
    assert [catalog[i]["date"] for i in newest] == [ANCHOR.isoformat()] * 3


def test_catalog_mutation_and_filters() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    catalog = Catalog(300, "mut", anchor=date(2026, 2, 1), clock=lambda: now)
    old = catalog.ids()[0]
    catalog.update([old], title="Renamed")
    assert catalog[old]["title"] == "Renamed"
    assert catalog.updated_at(old) == now
    assert catalog.select({"days": "0"}) == [old]
    added = catalog.add(2)
    assert catalog.select({})[:2] == added[::-1]
    assert all(catalog[i]["date"] == "2026-03-01" for i in added)
    catalog.remove([old])
    assert old not in catalog and catalog.get(old) is None
    assert set(catalog.select({"days": "0"})) == set(added)

    truth = list(catalog.records())
    assert catalog.select({"bpm": "90-100"}, "mediaId", "asc") == [
        r["mediaId"] for r in truth if 90 <= r["bpm"] <= 100
    ]
    wanted = {"Intro", "Short Edit"}
    assert set(catalog.select({"mix": "intro, Short Edit"})) == {
        r["mediaId"] for r in truth if r["tool"] in wanted
    }
    assert set(catalog.select({"keywords": "BEYONCE"})) == {
        r["mediaId"] for r in truth if "Beyoncé" in r["artist"]
    }
    with pytest.raises(ValueError, match="bpm"):
        catalog.select({"bpm": "fast"})


# -- login and tokens -----------------------------------------------------------------------------


async def test_login_answers_an_array_with_a_jwt(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"{sim.base_url}/Auth/Login",
        params={"key": sim.api_key},
        json={"username": sim.username, "password": sim.password, "originator": "lnrp"},
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert isinstance(body, list) and len(body) == 1
    answer = body[0]
    assert set(answer) == {"userId", "msg", "status", "country", "crateq", "originator", "token"}
    assert (answer["userId"], answer["status"], answer["originator"]) == (12345, "active", "lnrp")
    header = json.loads(base64.urlsafe_b64decode(answer["token"].split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims(answer["token"])["exp"] == pytest.approx(sim.clock() + 3600, abs=5)
    assert sim.calls["Auth/Login"] == 1


async def test_login_errors_and_account_status(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/Auth/Login"
    async with session.post(url, params={"key": sim.api_key}, data={"username": "x"}) as resp:
        assert resp.status == 500
        assert await resp.json() == {
            "status": 500,
            "message": "Username and Password are required.",
        }
    form = {"username": sim.username, "password": "wrong"}
    async with session.post(url, params={"key": sim.api_key}, data=form) as resp:
        assert resp.status == 401
    form = {"username": sim.username, "password": sim.password}
    async with session.post(url, data=form) as resp:
        assert resp.status == 403
        assert (await resp.json())["status"] == 403
    sim.account_status = "expired"
    sim.account_msg = "Your subscription is expired."
    async with session.post(url, params={"key": sim.api_key}, data=form) as resp:
        answer = (await resp.json())[0]
    assert (answer["status"], answer["msg"], answer["token"]) == (
        "expired",
        "Your subscription is expired.",
        "",
    )


async def test_key_and_jwt_are_required(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    token = await login(sim, session)
    status, body = await call(sim, session, "Content/Media", token, key=False)
    assert status == 403 and json.loads(body)["status"] == 403
    status, body = await call(sim, session, "Content/Media", None)
    assert status == 401
    assert json.loads(body) == {
        "status": 401,
        "message": "Authorization has been denied for this request.",
    }
    status, _ = await call(sim, session, "Content/Media", token[:-4] + "AAAA")
    assert status == 401
    assert (await call(sim, session, "Content/Media", token))[0] == 200


async def test_jwt_expires_by_the_sim_clock_and_can_be_revoked(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    token = await login(sim, session)
    sim.advance(3_601)
    async with session.get(
        f"{sim.base_url}/Content/Queue",
        params={"key": sim.api_key},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 401
        assert (await resp.json())["message"] == "Token expired."
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    fresh = await login(sim, session)
    assert (await call(sim, session, "Content/Queue", fresh))[0] == 200
    sim.revoke_tokens()
    assert (await call(sim, session, "Content/Queue", fresh))[0] == 401


# -- catalog endpoint -----------------------------------------------------------------------------


async def test_paging_covers_the_catalog_newest_first(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    token = await login(sim, session)
    first = await media_page(sim, session, token)
    assert (first["records"], first["pages"], first["page"]) == (250, 3, 1)
    assert (first["message"], first["sort"], first["dir"]) == ("0-100", "date", "desc")
    assert len(first["data"]) == 100
    assert list(first["data"][0]) == list(API_FIELDS)
    seen = [item["mediaId"] for item in first["data"]]
    for page in (2, 3):
        body = await media_page(sim, session, token, page=page, rows=100)
        seen += [item["mediaId"] for item in body["data"]]
    assert body["message"] == "200-250" and len(body["data"]) == 50
    assert seen == sorted(sim.catalog.ids(), reverse=True)
    beyond = await media_page(sim, session, token, page=9, rows=100)
    assert beyond["data"] == [] and beyond["pages"] == math.ceil(250 / 100)
    by_rows = await media_page(sim, session, token, rows=7)
    assert by_rows["pages"] == math.ceil(250 / 7)
    item = by_rows["data"][0]
    truth = sim.catalog[item["mediaId"]]
    assert {k: item[k] for k in ("artist", "title", "bpm", "size", "date", "preview")} == {
        k: truth[k] for k in ("artist", "title", "bpm", "size", "date", "preview")
    }
    assert item["preview"].startswith(sim.base_url)
    assert re.fullmatch(r"[0-9a-f]{40}", item["auth"])


async def test_days_filter_follows_updates_and_the_clock(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    token = await login(sim, session)
    oldest = sim.catalog.ids()[0]
    sim.catalog.update([oldest], bpm=101)
    added = sim.catalog.add(2)
    today = sim.catalog.today()
    expected = [
        i
        for i in sorted(sim.catalog.ids(), reverse=True)
        if datetime.fromtimestamp(sim.catalog.updated_at(i), UTC).date()
        >= today - timedelta(days=1)
    ]
    body = await media_page(sim, session, token, days=1, rows=1000)
    assert [item["mediaId"] for item in body["data"]] == expected
    assert oldest in expected and set(added) <= set(expected)
    assert body["records"] < 250
    sim.advance(10 * 86_400)
    token = await login(sim, session)
    assert (await media_page(sim, session, token, days=1))["records"] == 0


async def test_filters_and_bad_parameters(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    token = await login(sim, session)
    truth = list(sim.catalog.records())
    body = await media_page(sim, session, token, bpm="90-100", advisory="Dirty", rows=1000)
    assert {item["mediaId"] for item in body["data"]} == {
        r["mediaId"] for r in truth if 90 <= r["bpm"] <= 100 and r["advisory"] == "Dirty"
    }
    body = await media_page(sim, session, token, keywords="rosalia", rows=1000)
    assert body["records"] > 0 and all("Rosalía" in item["artist"] for item in body["data"])
    body = await media_page(sim, session, token, sort="bpm", dir="asc", rows=1000)
    assert [item["bpm"] for item in body["data"]] == sorted(r["bpm"] for r in truth)
    status, payload = await call(sim, session, "Content/Media", token, releaseYear="20x0")
    assert status == 400 and "releaseYear" in json.loads(payload)["message"]


async def test_thousands_separators_match_the_seed(session: aiohttp.ClientSession) -> None:
    async with CrateQSim(records=174_420, seed="seed004", thousands=True) as big:
        token = await login(big, session)
        status, body = await call(big, session, "Content/Media", token)
        assert status == 200
        text = body.decode()
        assert text.startswith(
            '{"records":174,420,"message":"0-100","pages":1,745,"page":1,'
            '"sort":"date","dir":"desc","data":[{"mediaId":'
        )
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        big.thousands = False
        page = json.loads((await call(big, session, "Content/Media", token))[1])
        assert (page["records"], page["pages"]) == (174_420, 1_745)


async def test_reference_lists(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    token = await login(sim, session)
    genres = json.loads((await call(sim, session, "Content/Genres", token))[1])
    assert set(genres[0]) == {"genreId", "title", "category", "categoryId"}
    titles = [g["title"] for g in genres]
    assert titles == sorted(titles, key=str.casefold) and "Hip-Hop > East" in titles
    latin = json.loads((await call(sim, session, "Content/Genres", token, categoryId="5"))[1])
    assert latin and all(g["category"] == "Latin" for g in latin)
    hip = json.loads((await call(sim, session, "Content/Genres", token, title="hip-hop"))[1])
    assert {g["title"] for g in hip} >= {"Hip-Hop", "Hip-Hop > East"}
    categories = json.loads((await call(sim, session, "Content/GenreCategories", token))[1])
    assert categories[0] == {"categoryId": 1, "title": "Country"}
    qualities = json.loads((await call(sim, session, "Content/VideoQualities", token))[1])
    assert qualities[0] == {"qualityId": 0, "title": "SD", "pixel_height": 360, "pixel_width": 640}
    assert [q["pixel_height"] for q in qualities] == [360, 540, 720, 1080]
    mixes = json.loads((await call(sim, session, "Content/VideoMixes", token))[1])
    assert mixes == sorted(MIXES) and "Acapella In" in mixes


# -- queue ----------------------------------------------------------------------------------------


async def test_update_queue_toggles(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    token = await login(sim, session)
    media_id = sim.catalog.ids()[10]
    form: dict[str, Any] = {"queueId": 0, "mediaId": media_id, "userId": 12345, "source": "lnrp"}
    status, body = await call(sim, session, "Content/UpdateQueue", token, method="POST", **form)
    added = json.loads(body)
    assert status == 200 and added[0]["message"] == "Media added to queue."
    queue = json.loads((await call(sim, session, "Content/Queue", token))[1])
    assert (queue["records"], queue["sort"], queue["message"]) == (1, "queueDate", "0-1")
    item = queue["data"][0]
    assert list(item) == list(QUEUE_FIELDS)
    assert (item["mediaId"], item["queueId"]) == (media_id, added[0]["id"])
    assert item["queueDate"] == sim.catalog.today().isoformat()
    listed = await media_page(sim, session, token, rows=1000)
    assert {i["mediaId"]: i["queueId"] for i in listed["data"]}[media_id] == added[0]["id"]

    # docs/pools/crateq.md: adding a track that is already queued removes it.
    status, body = await call(sim, session, "Content/UpdateQueue", token, method="POST", **form)
    assert json.loads(body) == [{"id": added[0]["id"], "message": "Media removed from queue."}]
    assert sim.queue_for() == []

    queue_ids = sim.add_to_queue([media_id, sim.catalog.ids()[11]])
    assert [e["queueId"] for e in sim.queue_for()] == queue_ids[::-1]
    status, body = await call(
        sim, session, "Content/UpdateQueue", token, method="POST", queueId=queue_ids[1]
    )
    assert json.loads(body)[0]["message"] == "Media removed from queue."
    assert [e["mediaId"] for e in sim.queue_for()] == [media_id]
    status, body = await call(
        sim, session, "Content/UpdateQueue", token, method="POST", mediaId=1, userId=12345
    )
    assert status == 404


async def test_queues_are_per_user(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    other = sim.add_user("other@example.com", "pw2", user_id=777)
    sim.add_to_queue([sim.catalog.ids()[0]], user="other@example.com")
    token = await login(sim, session)
    assert json.loads((await call(sim, session, "Content/Queue", token))[1])["records"] == 0
    assert [e["mediaId"] for e in sim.queue_for(other)] == [sim.catalog.ids()[0]]


# -- downloads ------------------------------------------------------------------------------------


async def test_download_with_auth_valid_for_fifteen_minutes(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    token = await login(sim, session)
    sim.add_to_queue([sim.catalog.ids()[5]])
    item = json.loads((await call(sim, session, "Content/Queue", token))[1])["data"][0]
    media_id, auth = item["mediaId"], item["auth"]
    url = sim.download_url(media_id, auth)
    status, headers, body = await fetch(session, url, token, **{"Accept-Encoding": "identity"})
    assert status == 200 and body == sim.expected_bytes(media_id)
    assert headers["Content-Type"] == "audio/mpeg" or headers["Content-Type"] == "video/mp4"
    assert hashlib.sha256(body).hexdigest() == sim.sha256(media_id)
    assert item["size"] == format_size(len(body))
    logged = sim.log.last("Content/Download")
    assert logged is not None and logged.headers["Accept-Encoding"] == "identity"
    assert sim.calls["Content/Download"] == 1
    assert media_id in sim.downloaded_by()
    listed = json.loads((await call(sim, session, "Content/Queue", token))[1])["data"][0]
    assert listed["downloaded"] is True

    sim.advance(14 * 60)
    assert (await fetch(session, url, token))[0] == 200
    sim.advance(61 + 1)
    status, _, body = await fetch(session, url, token)
    assert status == 403 and json.loads(body)["message"] == "Download token expired."
    other = sim.download_url(sim.catalog.ids()[6], auth)
    status, _, body = await fetch(session, other, token)
    assert status == 403 and json.loads(body)["message"] == "Invalid download token."
    status, _, _ = await fetch(session, url.replace(sim.api_key, "nope"), token)
    assert status == 403
    fresh = sim.issue_auth(media_id)
    assert (await fetch(session, sim.download_url(media_id, fresh), ""))[0] == 401


async def test_ranges_head_and_416(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    token = await login(sim, session)
    media_id, auth, expected = await first_track(sim, session, token)
    url = sim.download_url(media_id, auth)
    total = len(expected)
    status, headers, body = await fetch(session, url, token, Range="bytes=100-199")
    assert (status, headers["Content-Range"], body) == (
        206,
        f"bytes 100-199/{total}",
        expected[100:200],
    )
    etag = headers["ETag"]
    status, headers, body = await fetch(session, url, token, Range="bytes=-50")
    assert (status, body) == (206, expected[-50:])
    status, headers, body = await fetch(session, url, token, Range=f"bytes={total - 10}-")
    assert headers["Content-Range"] == f"bytes {total - 10}-{total - 1}/{total}"
    status, headers, body = await fetch(session, url, token, Range=f"bytes={total}-")
    assert (status, headers["Content-Range"]) == (416, f"bytes */{total}")
    status, headers, body = await fetch(
        session, url, token, Range="bytes=0-9", **{"If-Range": '"stale"'}
    )
    assert (status, body) == (200, expected)
    status, headers, body = await fetch(
        session, url, token, Range="bytes=0-9", **{"If-Range": etag}
    )
    assert (status, body) == (206, expected[:10])
    async with session.head(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(total)
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert await resp.read() == b""


async def test_large_file_reassembled_from_ranges(
    sim: CrateQSim, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = await login(sim, session)
    media_id = sim.catalog.ids()[-1]
    sim.set_media_size(media_id, 3_000_000)
    item = (await media_page(sim, session, token, rows=1))["data"][0]
    assert (item["mediaId"], item["size"]) == (media_id, "2.86 MB")
    url = sim.download_url(media_id, item["auth"])
    parts = []
    for start in range(0, 3_000_000, 1_048_576):
        end = min(start + 1_048_576, 3_000_000) - 1
        status, _, body = await fetch(session, url, token, Range=f"bytes={start}-{end}")
        assert status == 206
        parts.append(body)
    assert hashlib.sha256(b"".join(parts)).hexdigest() == sim.sha256(media_id)

    path = write_media(tmp_path / "clip.mp4", "mp4", "disk", 2_000_003)
    sim.set_media_file(media_id, path)
    assert sim.catalog[media_id]["sizeBytes"] == 2_000_003
    status, _, body = await fetch(session, url, token, Range="bytes=1999990-")
    assert (status, body) == (206, path.read_bytes()[1_999_990:])


async def test_extra_download_host_shares_tokens_not_faults(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    token = await login(sim, session)
    media_id, auth, expected = await first_track(sim, session, token)
    mirror = await sim.add_download_host()
    sim.faults.fail(503, count=None, match="Content/Download")
    status, _, body = await fetch(session, sim.download_url(media_id, auth, mirror), token)
    assert (status, body) == (200, expected)
    assert mirror.log.calls["Content/Download"] == 1
    assert (await fetch(session, sim.download_url(media_id, auth), token))[0] == 503
    mirror.faults.different_bytes()
    status, _, body = await fetch(session, sim.download_url(media_id, auth, mirror), token)
    assert status == 200 and len(body) == len(expected) and body != expected


# -- faults ---------------------------------------------------------------------------------------


async def test_status_faults_with_retry_after_then_recover(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    token = await login(sim, session)
    sim.faults.fail(503, retry_after=7, match="Content/Media")
    async with session.get(
        f"{sim.base_url}/Content/Media",
        params={"key": sim.api_key},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (503, "7")
        assert (await resp.json())["status"] == 503
    assert (await call(sim, session, "Content/Media", token))[0] == 200
    sim.faults.rate_limit(retry_after="Wed, 21 Oct 2026 07:28:00 GMT", count=2)
    assert (await call(sim, session, "Content/Queue", token))[0] == 429
    assert (await call(sim, session, "Content/Genres", token))[0] == 429
    assert (await call(sim, session, "Content/Genres", token))[0] == 200
    sim.faults.unauthorized(match="Content/Queue", skip=1)
    assert (await call(sim, session, "Content/Queue", token))[0] == 200
    assert (await call(sim, session, "Content/Queue", token))[0] == 401
    assert (await call(sim, session, "Content/Queue", token))[0] == 200


async def test_api_body_faults(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    token = await login(sim, session)
    sim.faults.timeout_empty(match="Content/Media")
    assert await call(sim, session, "Content/Media", token) == (200, b"[]")
    sim.faults.empty_body(match="Content/Media")
    assert await call(sim, session, "Content/Media", token) == (200, b"")
    for switch in (sim.faults.malformed_json, sim.faults.truncated_json):
        switch(match="Content/Media")
        status, body = await call(sim, session, "Content/Media", token)
        assert status == 200 and body.startswith(b'{"records":250,')
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
    # No count: aiohttp retries once on a reused connection the server closed.
    sim.faults.drop(None, match="Content/Genres")
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(sim, session, "Content/Genres", token)
    sim.faults.clear("drop")
    assert (await call(sim, session, "Content/Genres", token))[0] == 200


async def test_update_queue_applied_but_failed_then_retry_removes(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    # docs/reliability.md §0: a retried toggle undoes the add the server already made.
    token = await login(sim, session)
    media_id = sim.catalog.ids()[3]
    sim.faults.fail(500, match="Content/UpdateQueue", after_apply=True)
    status, _ = await call(
        sim, session, "Content/UpdateQueue", token, method="POST", mediaId=media_id
    )
    assert status == 500
    assert [e["mediaId"] for e in sim.queue_for()] == [media_id]
    status, body = await call(
        sim, session, "Content/UpdateQueue", token, method="POST", mediaId=media_id
    )
    assert json.loads(body)[0]["message"] == "Media removed from queue."


async def test_connection_faults_on_download(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    token = await login(sim, session)
    media_id, auth, expected = await first_track(sim, session, token)
    url = sim.download_url(media_id, auth)
    headers = {"Authorization": f"Bearer {token}"}

    sim.faults.drop(after_bytes=1000, count=1, match="Content/Download")
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url, headers=headers) as resp:
            assert resp.headers["Content-Length"] == str(len(expected))
            async for piece in resp.content.iter_any():
                received += piece
    assert bytes(received) == expected[:1000]

    sim.faults.stall(after_bytes=500, count=1, match="Content/Download")
    async with session.get(url, headers=headers) as resp:
        assert await resp.content.readexactly(500) == expected[:500]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await resp.content.read(1)
        sim.faults.release_stalls()
        assert await resp.read() == expected[500:]

    sim.faults.trickle(200, count=1, match="Content/Download")
    async with session.get(url, headers={**headers, "Range": "bytes=0-4999"}) as resp:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await resp.read()  # 5,000 bytes at 200 bytes/s cannot arrive this soon
    sim.faults.throttle_bps = 500
    async with session.get(url, headers={**headers, "Range": "bytes=0-4999"}) as resp:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await resp.read()  # the benchmark throttle paces every response the same way
    sim.faults.clear()
    assert (await fetch(session, url, token))[2] == expected


async def test_body_faults_on_download(sim: CrateQSim, session: aiohttp.ClientSession) -> None:
    token = await login(sim, session)
    media_id, auth, expected = await first_track(sim, session, token)
    url = sim.download_url(media_id, auth)
    ranged = {"Range": "bytes=100-199"}
    faults = sim.faults

    faults.ignore_range(count=1)
    status, headers, body = await fetch(session, url, token, **ranged)
    assert (status, body, headers["Accept-Ranges"]) == (200, expected, "bytes")

    faults.html_200(count=1)
    status, headers, body = await fetch(session, url, token)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body.startswith(b"<!DOCTYPE html>")

    faults.empty_200(count=1)
    assert (await fetch(session, url, token))[::2] == (200, b"")

    faults.overlong_body(extra=10, count=1)
    status, headers, body = await fetch(session, url, token, **ranged)
    assert (status, headers["Content-Range"]) == (206, f"bytes 100-199/{len(expected)}")
    assert body == expected[100:210]

    faults.gzip_ranged(count=1)
    async with session.get(
        url, headers={"Authorization": f"Bearer {token}", **ranged}, auto_decompress=False
    ) as resp:
        assert (resp.status, resp.headers["Content-Encoding"]) == (206, "gzip")
        assert gzip.decompress(await resp.read()) == expected[100:200]

    faults.different_bytes(count=1)
    status, headers, body = await fetch(session, url, token)
    clean_etag = (await fetch(session, url, token))[1]["ETag"]
    assert len(body) == len(expected) and body != expected and headers["ETag"] != clean_etag

    faults.redirect("http://elsewhere.invalid/file.mp3", count=1)
    async with session.get(
        url, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
    ) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, "http://elsewhere.invalid/file.mp3")

    faults.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert (await fetch(session, url, token))[::2] == (200, b"hello")


@pytest.mark.parametrize("variant", CONTENT_RANGE_VARIANTS)
async def test_wrong_content_range_variants(
    sim: CrateQSim, session: aiohttp.ClientSession, variant: str
) -> None:
    token = await login(sim, session)
    media_id, auth, expected = await first_track(sim, session, token)
    total = len(expected)
    sim.faults.bad_content_range(variant, count=1)
    status, headers, body = await fetch(
        session, sim.download_url(media_id, auth), token, Range="bytes=100-199"
    )
    assert status == 206
    claimed = headers.get("Content-Range")
    assert {
        "shifted_start": claimed == f"bytes 99-199/{total}" and body == expected[99:200],
        "end_past_request": claimed == f"bytes 100-1199/{total}" and body == expected[100:1200],
        "wrong_total": claimed == f"bytes 100-199/{total + 1}" and body == expected[100:200],
        "missing": claimed is None and body == expected[100:200],
        "other_unit": claimed == f"items 100-199/{total}",
    }[variant]
