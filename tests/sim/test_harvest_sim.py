"""The Harvest simulator on its own, spoken to over real sockets with plain aiohttp
(docs/pools/harvest.md)."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import defusedxml.ElementTree as SafeET
import pytest

from pooldaemon.sim.harvest import HarvestSim
from pooldaemon.sim.harvest_library import Package
from pooldaemon.sim.media import aiff_bytes


async def _sim(**kwargs: Any) -> HarvestSim:
    return await HarvestSim(**kwargs).start()


async def _access(sim: HarvestSim, session: aiohttp.ClientSession) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
    }
    async with session.post(sim.auth_url, data=form) as resp:
        assert resp.status == 200
        return str((await resp.json())["access_token"])


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        assert resp.status == 200, await resp.text()
        return json.loads(await resp.read())


async def _chain_json(sim: HarvestSim, session: aiohttp.ClientSession) -> tuple[str, str]:
    """Service token and member token over the JSON wire."""
    access = await _access(sim, session)
    headers = {"Authorization": f"Bearer {access}", "AccessKey": sim.access_key}
    body = await _json(session, "GET", f"{sim.base_url}/getservicetoken", headers=headers)
    service = body["Token"]["Value"]
    member = await _json(
        session,
        "POST",
        f"{sim.base_url}/getmembertoken/{service}",
        json={"UserName": sim.username, "Password": sim.password, "PersistentLogin": True},
    )
    return service, member["MemberToken"]["Value"]


async def test_token_chain_json_with_expiry_in_local_time(session: aiohttp.ClientSession) -> None:
    sim = await _sim(utc_offset_h=-5.0, member_token_lifetime_s=1800)
    try:
        access = await _access(sim, session)
        headers = {"Authorization": f"Bearer {access}", "AccessKey": sim.access_key}
        body = await _json(session, "GET", f"{sim.base_url}/getservicetoken", headers=headers)
        token = body["Token"]
        assert set(token) == {"Value", "Expiry", "UTCOffset"} and token["UTCOffset"] == -5.0
        member = await _json(
            session,
            "POST",
            f"{sim.base_url}/getmembertoken/{token['Value']}",
            json={"UserName": sim.username, "Password": sim.password, "PersistentLogin": True},
        )
        value = member["MemberToken"]["Value"]
        local = datetime.fromisoformat(member["MemberToken"]["Expiry"])
        assert local.tzinfo is None
        # Expiry is wall-clock time at UTC-5: adding 5 hours gives UTC.
        as_utc = (local + timedelta(hours=5)).replace(tzinfo=UTC).timestamp()
        assert abs(as_utc - sim.token_expiry(value)) < 1
        assert member["PersistentLoginToken"] in sim.persistent_tokens
    finally:
        await sim.close()


async def test_oauth_refuses_wrong_secret_and_service_token_needs_the_access_key(
    session: aiohttp.ClientSession,
) -> None:
    sim = await _sim()
    try:
        form = {"grant_type": "client_credentials", "client_id": sim.client_id}
        async with session.post(sim.auth_url, data={**form, "client_secret": "nope"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "invalid_client"
        access = await _access(sim, session)
        headers = {"Authorization": f"Bearer {access}", "AccessKey": "wrong"}
        body = await _json(session, "GET", f"{sim.base_url}/getservicetoken", headers=headers)
        assert body == {"Error": {"Code": 3, "Description": "Invalid AccessKey"}}
        async with session.get(
            f"{sim.base_url}/getservicetoken", headers={"AccessKey": sim.access_key}
        ) as resp:
            assert resp.status == 401
    finally:
        await sim.close()


async def test_xml_wire_is_seed_003_shaped(session: aiohttp.ClientSession) -> None:
    sim = await _sim(wire="xml", wav_size=60_000, part_size_bytes=130_000)
    try:
        access = await _access(sim, session)
        headers = {"Authorization": f"Bearer {access}", "AccessKey": sim.access_key}
        async with session.get(f"{sim.base_url}/GetServiceToken", headers=headers) as resp:
            assert resp.content_type == "application/xml"
            root = SafeET.fromstring(await resp.read())
        assert root.tag == "responseservicetoken"
        service = (root.findtext("token/value") or "").strip()
        body = (
            f"<requestmembertoken><username>{sim.username}</username>"
            f"<password>{sim.password}</password>"
            "<persistentlogin>true</persistentlogin></requestmembertoken>"
        )
        async with session.post(
            f"{sim.base_url}/getmembertoken/{service}",
            data=body,
            headers={"Content-Type": "application/xml"},
        ) as resp:
            member = SafeET.fromstring(await resp.read()).findtext("membertoken/value") or ""
        album = sim.albums[0]
        request = (
            f"<downloadextended><membertoken>{member}</membertoken>"
            f"<downloadtype>album</downloadtype><identifier>{album.id}</identifier>"
            "<format>wav</format><trimstartsecs>0</trimstartsecs><trimendsecs>0</trimendsecs>"
            "<isshare>false</isshare><forceemail>false</forceemail></downloadextended>"
        )
        async with session.post(
            f"{sim.base_url}/getmusicdownload/{service}",
            data=request,
            headers={"Content-Type": "application/xml"},
        ) as resp:
            assert resp.status == 200
            text = await resp.text()
        root = SafeET.fromstring(text)
        assert root.tag == "responsemusicdownload"
        assert root.findtext("requestsent") == "false"
        raw_values = [t.text for t in root.iter("tokenvalue")]
        # docs/pools/harvest.md (docs/reliability.md §0): ElementTree returns '\nda49…\n'.
        assert raw_values and all(
            v and v.startswith("\n") and v.strip() in sim.download_tokens for v in raw_values
        )
        parts = [int(p.text or "") for p in root.iter("part")]
        assert parts == [1, 2]
    finally:
        await sim.close()


async def test_error_on_demand_comes_in_the_envelope_with_http_200(
    session: aiohttp.ClientSession,
) -> None:
    for wire in ("json", "xml"):
        sim = await _sim(wire=wire)
        try:
            access = await _access(sim, session)
            headers = {"Authorization": f"Bearer {access}", "AccessKey": sim.access_key}
            sim.fail_next(14, "getservicetoken")
            async with session.get(f"{sim.base_url}/getservicetoken", headers=headers) as resp:
                assert resp.status == 200
                text = await resp.text()
            if wire == "json":
                assert json.loads(text) == {
                    "Error": {"Code": 14, "Description": "Download limit reached"}
                }
            else:
                root = SafeET.fromstring(text)
                assert root.findtext("error/code") == "14"
                assert root.findtext("error/description") == "Download limit reached"
            # Only once: the next call is served normally.
            async with session.get(f"{sim.base_url}/getservicetoken", headers=headers) as resp:
                assert "Download limit" not in await resp.text()
        finally:
            await sim.close()


async def test_member_tokens_expire_with_the_clock_and_persistent_login_renews(
    session: aiohttp.ClientSession,
) -> None:
    sim = await _sim(member_token_lifetime_s=600)
    try:
        service, member = await _chain_json(sim, session)
        url = f"{sim.base_url}/getfavourites/{member}"
        body = await _json(session, "GET", url)
        assert [t["ID"] for t in body["Tracks"]] == sim.favourite_ids
        sim.advance(601)
        assert await _json(session, "GET", url) == {
            "Error": {"Code": 21, "Description": "Token Expired"}
        }
        assert (await _json(session, "GET", f"{sim.base_url}/getfavourites/nonsense"))["Error"][
            "Code"
        ] == 5
        persistent = sim.persistent_tokens[0]
        renewed = await _json(
            session,
            "POST",
            f"{sim.base_url}/validatepersistentlogintoken/{service}",
            json={"PersistentLoginToken": persistent},
        )
        assert renewed["PersistentLoginToken"] == persistent
        fresh = renewed["MemberToken"]["Value"]
        assert (await _json(session, "GET", f"{sim.base_url}/getfavourites/{fresh}"))["Tracks"]
    finally:
        await sim.close()


async def test_lists_are_paged_with_skip_and_limit(session: aiohttp.ClientSession) -> None:
    sim = await _sim(albums=5)
    try:
        _, member = await _chain_json(sim, session)
        url = f"{sim.base_url}/getlatestalbums/{member}/4"
        first = await _json(session, "GET", url, params={"Skip": 0, "Limit": 3})
        second = await _json(session, "GET", url, params={"skip": 3, "limit": 3})
        ids = [a["ID"] for a in first["Albums"] + second["Albums"]]
        assert first["TotalCount"] == 4 and len(second["Albums"]) == 1
        assert ids == [a.id for a in sim.albums[:4]]
        assert all(len(a["Tracks"]) == 4 for a in first["Albums"])
        playlist = sim.playlists[0]
        body = await _json(
            session,
            "GET",
            f"{sim.base_url}/getmemberplaylist/{member}/{playlist.id}",
            params={"returntracks": "true"},
        )
        assert [t["ID"] for t in body["Playlist"]["Tracks"]] == playlist.track_ids
        lists = await _json(session, "GET", f"{sim.base_url}/getmemberplaylistsnotracks/{member}")
        assert [p["Name"] for p in lists["Playlists"]] == [p.name for p in sim.playlists]
        history = await _json(
            session, "GET", f"{sim.base_url}/getdownloadhistorybymembertoken/{member}"
        )
        assert history["TotalCount"] == len(sim.history) == 2
    finally:
        await sim.close()


async def _download(
    sim: HarvestSim, session: aiohttp.ClientSession, member: str, kind: str, ident: str, fmt: str
) -> Any:
    return await _json(
        session,
        "POST",
        f"{sim.base_url}/getmusicdownload/{member}",
        json={"DownloadType": kind, "Identifier": ident, "Format": fmt, "IsShare": False},
    )


async def test_multi_part_zips_hold_the_truth_and_tokens_expire(
    session: aiohttp.ClientSession,
) -> None:
    sim = await _sim(wav_size=60_000, part_size_bytes=130_000, download_token_lifetime_s=60)
    try:
        _, member = await _chain_json(sim, session)
        album = sim.albums[1]
        body = await _download(sim, session, member, "album", album.id, sim.format_id("wav"))
        tokens = body["DownloadTokens"]
        assert body["RequestSent"] is False and [t["Part"] for t in tokens] == [1, 2]
        package = sim.last_package
        assert isinstance(package, Package) and package.name == album.title
        assert package.entries == sim.expected_entries("album", album.id, "wav")
        seen: dict[str, bytes] = {}
        for token in tokens:
            async with session.get(sim.download_url.format(downloadtoken=token["TokenValue"])) as r:
                assert r.status == 200 and r.content_type == "application/zip"
                data = await r.read()
            assert data == package.parts[token["Part"] - 1]
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                assert archive.testzip() is None
                seen.update({name: archive.read(name) for name in archive.namelist()})
        assert seen == package.entries
        assert all(name.endswith(".wav") for name in seen)
        assert all(data[:4] == b"RIFF" for data in seen.values())
        sim.advance(61)
        async with session.get(sim.download_url.format(downloadtoken=tokens[0]["TokenValue"])) as r:
            assert r.status == 403
        # Asking again gives fresh tokens for the same bytes (resume stays possible).
        again = await _download(sim, session, member, "album", album.id, "wav")
        fresh = again["DownloadTokens"][0]["TokenValue"]
        async with session.get(sim.download_url.format(downloadtoken=fresh)) as r:
            assert await r.read() == package.parts[0]
    finally:
        await sim.close()


async def test_split_changes_on_request_and_email_mode(session: aiohttp.ClientSession) -> None:
    sim = await _sim(wav_size=60_000, part_size_bytes=130_000)
    try:
        _, member = await _chain_json(sim, session)
        album = sim.albums[0]
        first = await _download(sim, session, member, "album", album.id, "wav")
        sim.split_next = 3
        second = await _download(sim, session, member, "album", album.id, "wav")
        third = await _download(sim, session, member, "album", album.id, "wav")
        assert [len(b["DownloadTokens"]) for b in (first, second, third)] == [2, 3, 3]
        sim.send_by_email = True
        assert await _download(sim, session, member, "playlist", sim.playlists[0].id, "mp3") == {
            "RequestSent": True
        }
        assert sim.emails == [("playlist", sim.playlists[0].id)]
        sim.send_by_email = False
        favourites = await _download(sim, session, member, "favourites", "", "mp3")
        assert len(sim.last_package.entries) == len(sim.favourite_ids)  # type: ignore[union-attr]
        assert favourites["DownloadTokens"]
        assert sim.last_package.name == "myfavourites"  # type: ignore[union-attr]
    finally:
        await sim.close()


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("slip", lambda names, infos: "../../escaped.txt" in names),
        ("absolute", lambda names, infos: "/tmp/escaped.txt" in names),
        (
            "symlink",
            lambda names, infos: (
                stat.S_ISLNK(infos["evil-link"].external_attr >> 16) and "evil-link/passwd" in names
            ),
        ),
        (
            "bomb",
            lambda names, infos: (
                infos["bomb.wav"].file_size > 100 * infos["bomb.wav"].compress_size
            ),
        ),
    ],
)
async def test_spoiled_archives(session: aiohttp.ClientSession, kind: str, check: Any) -> None:
    sim = await _sim()
    try:
        _, member = await _chain_json(sim, session)
        sim.next_archive_kind = kind
        track = sim.albums[0].tracks[0]
        await _download(sim, session, member, "track", track.id, "mp3")
        package = sim.last_package
        assert package is not None and package.kind == kind and package.bad_entries
        with zipfile.ZipFile(io.BytesIO(package.parts[0])) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            assert check(set(infos), infos)
        # Sticky for that download: asking again gives the same spoiled package.
        await _download(sim, session, member, "track", track.id, "mp3")
        assert sim.last_package is package
    finally:
        await sim.close()


async def test_corrupt_and_truncated_parts_fail_their_checks(
    session: aiohttp.ClientSession,
) -> None:
    sim = await _sim()
    try:
        _, member = await _chain_json(sim, session)
        sim.next_archive_kind = "corrupt"
        await _download(sim, session, member, "album", sim.albums[0].id, "mp3")
        corrupt = sim.last_package
        assert corrupt is not None
        with zipfile.ZipFile(io.BytesIO(corrupt.parts[0])) as archive:
            assert archive.testzip() == corrupt.bad_entries[0]
        sim.next_archive_kind = "truncated"
        await _download(sim, session, member, "album", sim.albums[1].id, "mp3")
        truncated = sim.last_package
        assert truncated is not None
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(truncated.parts[0]))
    finally:
        await sim.close()


async def test_unknown_format_and_item_are_errors_in_the_envelope(
    session: aiohttp.ClientSession,
) -> None:
    sim = await _sim()
    try:
        _, member = await _chain_json(sim, session)
        bad_format = await _download(sim, session, member, "track", sim.favourite_ids[0], "ogg")
        assert bad_format["Error"]["Code"] == 8
        missing = await _download(sim, session, member, "album", "0000000000000000", "mp3")
        assert missing["Error"] == {"Code": 9, "Description": "Album not found"}
    finally:
        await sim.close()


def test_aiff_bytes_are_an_aiff_file_of_the_size_asked() -> None:
    for size in (1000, 1001):
        data = aiff_bytes("seed", size)
        assert len(data) == size
        assert data[:4] == b"FORM" and data[8:12] == b"AIFF" and data[12:16] == b"COMM"
        assert int.from_bytes(data[4:8], "big") == size - 8
