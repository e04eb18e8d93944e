"""The Harvest adapter against the Harvest simulator on real sockets (docs/pools/harvest.md,
docs/interface.md §6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import mutagen.id3
import pytest

from pooldaemon.config import DaemonConfig, HarvestConfig
from pooldaemon.downloader.engine import Engine
from pooldaemon.errors import AccountError, AuthError, IncompleteAnswer, ProtocolError
from pooldaemon.events import EventBus
from pooldaemon.models import DownloadPlan, Request
from pooldaemon.pools import ADAPTERS
from pooldaemon.pools.base import Capability
from pooldaemon.pools.harvest import HarvestAdapter, HarvestBlocked
from pooldaemon.pools.harvest_wire import as_list, decode, error_of, parse_expiry, parse_offset
from pooldaemon.pools.http import PoolHttp
from pooldaemon.sim.harvest import HarvestSim
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store.db import Store
from tests.conftest import eventually, library_files
from tests.readers import after_id3

Pair = tuple[HarvestSim, HarvestAdapter]
Factory = Callable[..., Awaitable[Pair]]


@pytest.fixture
async def harvest(session: aiohttp.ClientSession) -> AsyncIterator[Factory]:
    """`await harvest(wire=…, sim={…}, **config)` → a started simulator and an adapter on it."""
    started: list[HarvestSim] = []

    async def make(
        wire: str = "json",
        sim: dict[str, Any] | None = None,
        adapter: dict[str, Any] | None = None,
        **config: Any,
    ) -> Pair:
        server = await HarvestSim(wire=wire, **(sim or {})).start()  # type: ignore[arg-type]
        started.append(server)
        return server, make_adapter(server, session, adapter, **config)

    yield make
    for server in started:
        await server.close()


def make_adapter(
    sim: HarvestSim,
    session: aiohttp.ClientSession,
    adapter: dict[str, Any] | None = None,
    **config: Any,
) -> HarvestAdapter:
    table = sim.config(**config)
    return HarvestAdapter(
        "harvest",
        HarvestConfig.model_validate(table),
        PoolHttp(session, "harvest", backoff_s=0.01),
        clock=sim.clock,
        **(adapter or {}),
    )


async def fetch(session: aiohttp.ClientSession, plan: DownloadPlan, key: str) -> tuple[int, bytes]:
    part = next(p for p in plan.parts if p.key == key)
    async with session.get(part.sources[0].url) as resp:
        return resp.status, await resp.read()


# -- tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "offset", "style"),
    [
        ("json", 10.0, "iso"),
        ("xml", -5.0, "iso"),
        ("json", 5.5, "iso"),
        ("xml", 5.5, "iso"),
        ("json", -5.0, "netdate"),
        ("xml", 10.0, "zoned"),
    ],
)
async def test_token_chain_converts_expiry_from_utc_offset(
    harvest: Factory, wire: str, offset: float, style: str
) -> None:
    sim, adapter = await harvest(wire, sim={"utc_offset_h": offset, "expiry_style": style})
    await adapter.sign_in()
    service, member = sim.service_tokens[-1], sim.member_tokens[-1]
    state = adapter.state()
    assert state["service_token"] == service and state["member_token"] == member
    # Seconds are cut in the local time the pool writes; nothing else may differ.
    assert abs(state["member_expires_at"] - sim.token_expiry(member)) < 1
    assert abs(state["service_expires_at"] - sim.token_expiry(service)) < 1
    assert adapter.token_expires_at() == state["member_expires_at"]
    assert state["persistent_login_token"] == sim.persistent_tokens[-1]
    oauth = sim.log.last("oauth2/token")
    service_call = sim.log.last("getservicetoken")
    assert oauth is not None and service_call is not None
    assert service_call.headers["AccessKey"] == sim.access_key
    assert service_call.headers["Authorization"].startswith("Bearer ")


def test_expiry_conversion_table() -> None:
    # 2024-05-01 10:00 wall-clock at UTC+10 is 00:00 UTC; at UTC-5 it is 15:00 UTC.
    midnight = 1714521600.0
    assert parse_expiry("2024-05-01T10:00:00", 10.0) == midnight
    assert parse_expiry("2024-05-01 10:00:00", parse_offset("+10")) == midnight
    assert parse_expiry("2024-04-30T19:00:00", parse_offset("-5")) == midnight
    assert parse_expiry("2024-05-01T05:30:00", parse_offset("5.5")) == midnight
    assert parse_expiry("2024-05-01T05:30:00", parse_offset("+05:30")) == midnight
    assert parse_expiry("/Date(1714521600000+1000)/", 10.0) == midnight
    assert parse_expiry("2024-05-01T10:00:00+10:00", -5.0) == midnight
    for bad in ("15", "soon", True):
        with pytest.raises(ProtocolError):
            parse_offset(bad)


def test_both_wires_normalize_to_one_shape() -> None:
    as_json = decode(
        '{"Error": null, "Tracks": [{"ID": "a1", "DisplayTitle": "One"}], "TotalCount": 1}',
        "json",
        "t",
    )
    as_xml = decode(
        '<?xml version="1.0"?>\n<responsefavourites xmlns:i="http://www.w3.org/2001/'
        'XMLSchema-instance"><error i:nil="true"/><tracks>\n  <track>\n<id>a1</id>'
        "<displaytitle>One</displaytitle></track>\n</tracks><totalcount>1</totalcount>"
        "</responsefavourites>",
        "xml",
        "t",
    )
    assert error_of(as_json) is None and error_of(as_xml) is None
    assert as_list(as_json["tracks"], "track") == [{"id": "a1", "displaytitle": "One"}]
    assert as_list(as_xml["tracks"], "track") == [{"id": "a1", "displaytitle": "One"}]
    # The older API put fields in attributes (<track id="…" name="…"/>).
    old = decode(
        '<responsetracks><tracks><track id="a1" name="One"/><track id="b2"/>'
        "</tracks></responsetracks>",
        "xml",
        "t",
    )
    assert as_list(old["tracks"], "track") == [{"id": "a1", "name": "One"}, {"id": "b2"}]
    assert error_of(
        decode("<error><code>5</code><description>Invalid Token</description></error>", "xml", "t")
    ) == (5, "Invalid Token")
    assert error_of(decode('{"Error": {"Code": 0, "Description": ""}}', "json", "t")) is None
    with pytest.raises(ProtocolError, match="differing only in case"):
        decode('{"ID": "a", "Id": "b"}', "json", "t")
    with pytest.raises(ProtocolError, match="JSON object"):
        decode("[1, 2]", "json", "t")


async def test_member_token_is_renewed_with_the_persistent_login_token(harvest: Factory) -> None:
    sim, adapter = await harvest(sim={"member_token_lifetime_s": 900})
    await adapter.favourites()
    first = sim.member_tokens[-1]
    sim.advance(900)  # the member token is now past its expiry
    await adapter.favourites()
    assert sim.log.calls["getmembertoken"] == 1
    assert sim.log.calls["validatepersistentlogintoken"] == 1
    assert sim.log.calls["oauth2/token"] == 1  # the service token still lives
    last = sim.log.last("getfavourites")
    assert last is not None and first not in last.path and sim.member_tokens[-1] in last.path


async def test_renew_ahead_of_expiry_uses_no_password(harvest: Factory) -> None:
    sim, adapter = await harvest("xml")
    await adapter.sign_in()
    before = adapter.token_expires_at()
    sim.advance(600)
    await adapter.renew()
    assert sim.log.calls["getmembertoken"] == 1
    assert sim.log.calls["validatepersistentlogintoken"] == 1
    after = adapter.token_expires_at()
    assert before is not None and after is not None and after > before + 500


async def test_state_survives_a_restart(harvest: Factory, session: aiohttp.ClientSession) -> None:
    sim, adapter = await harvest(sim={"member_token_lifetime_s": 600})
    await adapter.favourites()
    saved = adapter.state()
    sim.advance(3600)  # the member token died while we were down; the service token lives
    restarted = make_adapter(sim, session)
    restarted.restore_state(saved)
    assert [t["id"] for t in await restarted.favourites()] == sim.favourite_ids
    assert sim.log.calls["oauth2/token"] == 1
    assert sim.log.calls["getmembertoken"] == 1
    assert sim.log.calls["validatepersistentlogintoken"] == 1


async def test_revoked_persistent_login_falls_back_to_the_password(harvest: Factory) -> None:
    sim, adapter = await harvest()
    await adapter.sign_in()
    sim.revoke_persistent_tokens()
    sim.expire_member_tokens()
    await adapter.favourites()
    assert sim.log.calls["validatepersistentlogintoken"] == 1
    assert sim.log.calls["getmembertoken"] == 2
    assert adapter.state()["persistent_login_token"] == sim.persistent_tokens[-1]


async def test_configured_service_token_is_used_and_never_renewed(
    harvest: Factory, session: aiohttp.ClientSession
) -> None:
    sim, _ = await harvest()
    token = sim.issue_service_token()
    adapter = make_adapter(
        sim, session, client_id=None, client_secret=None, access_key=None, service_token=token
    )
    assert len(await adapter.playlists()) == len(sim.playlists)
    assert sim.log.calls["oauth2/token"] == 0 and sim.log.calls["getservicetoken"] == 0
    assert "service_token" not in adapter.state()
    sim.expire_service_tokens()
    sim.expire_member_tokens()
    with pytest.raises(AuthError, match="configured service_token was refused"):
        await adapter.favourites()


async def test_wrong_password_and_wrong_client_secret_are_auth_errors(
    harvest: Factory, session: aiohttp.ClientSession
) -> None:
    sim, _ = await harvest()
    with pytest.raises(AuthError, match=r"sign-in refused.*Invalid username or password"):
        await make_adapter(sim, session, password="wrong password").sign_in()
    with pytest.raises(AuthError, match="client credentials refused"):
        await make_adapter(sim, session, client_secret="wrong").sign_in()


# -- the error envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize("wire", ["json", "xml"])
@pytest.mark.parametrize("code", [5, 21])
async def test_token_codes_renew_and_retry_once(harvest: Factory, wire: str, code: int) -> None:
    sim, adapter = await harvest(wire)
    await adapter.sign_in()
    sim.fail_next(code, "getfavourites")
    assert [t["id"] for t in await adapter.favourites()] == sim.favourite_ids
    assert sim.log.calls["getfavourites"] == 2
    assert sim.log.calls["validatepersistentlogintoken"] == 1


async def test_http_401_is_a_refused_token_too(harvest: Factory) -> None:
    sim, adapter = await harvest()
    await adapter.sign_in()
    sim.faults.unauthorized(match="getfavourites")
    assert [t["id"] for t in await adapter.favourites()] == sim.favourite_ids
    assert sim.log.calls["validatepersistentlogintoken"] == 1


async def test_many_callers_refused_at_once_renew_once(harvest: Factory) -> None:
    sim, adapter = await harvest()
    await adapter.sign_in()
    sim.revoke_member_tokens()  # every call with the old token now gets code 5
    results = await asyncio.gather(
        adapter.favourites(), adapter.playlists(), adapter.latest_albums(), adapter.favourites()
    )
    assert [len(r) for r in results] == [5, 2, 8, 5]
    assert sim.log.calls["validatepersistentlogintoken"] == 1  # docs/reliability.md T3
    assert sim.log.calls["getmembertoken"] == 1


async def test_token_code_twice_is_an_auth_error(harvest: Factory) -> None:
    sim, adapter = await harvest()
    sim.fail_next(5, "getlatestalbums", count=2)
    with pytest.raises(AuthError, match=r"refused again after renewing.*Harvest error 5: Invalid"):
        await adapter.latest_albums()
    assert sim.log.calls["getlatestalbums"] == 2


async def test_service_token_refusal_renews_the_service_token(harvest: Factory) -> None:
    sim, adapter = await harvest()
    await adapter.sign_in()
    sim.fail_next(21, "getserviceinfo")
    info = await adapter.service_info()
    assert info.download_url == sim.download_url
    assert sim.log.calls["getservicetoken"] == 2
    assert sim.log.calls["validatepersistentlogintoken"] == 0


@pytest.mark.parametrize("wire", ["json", "xml"])
@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (12, "downloads not allowed"),
        (13, "downloads not allowed"),
        (14, "download limit reached"),
        (18, "downloads not allowed"),
    ],
)
async def test_account_codes_block_downloads_with_the_reason(
    harvest: Factory, wire: str, code: int, reason: str
) -> None:
    sim, adapter = await harvest(wire)
    sim.fail_next(code, "getmusicdownload")
    with pytest.raises(HarvestBlocked) as caught:
        await adapter.plan(Request("harvest", sim.albums[0].id, "album"))
    err = caught.value
    assert isinstance(err, AccountError) and err.blocked is True
    assert err.reason == reason and err.harvest_code == code
    assert reason in err.message and f"Harvest error {code}" in err.message
    assert sim.log.calls["getmusicdownload"] == 1  # final: not retried


@pytest.mark.parametrize("wire", ["json", "xml"])
async def test_other_codes_are_protocol_errors_with_the_description(
    harvest: Factory, wire: str
) -> None:
    sim, adapter = await harvest(wire)
    sim.fail_next(77, "getmemberplaylistsnotracks", description="Service temporarily odd")
    with pytest.raises(ProtocolError, match="Harvest error 77: Service temporarily odd"):
        await adapter.playlists()
    with pytest.raises(ProtocolError, match="Harvest error 9: Playlist not found"):
        await adapter.playlist("0123456789abcdef")


async def test_xml_with_a_dtd_or_entities_is_refused(harvest: Factory) -> None:
    sim, adapter = await harvest("xml")
    await adapter.sign_in()
    sim.override_next(
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY big "aaaaaaaaaa">]>'
        "<responsefavourites><tracks>&big;</tracks></responsefavourites>",
        "getfavourites",
    )
    with pytest.raises(ProtocolError, match="DTD or entities refused"):
        await adapter.favourites()


@pytest.mark.parametrize("wire", ["json", "xml"])
async def test_an_html_page_is_refused(harvest: Factory, wire: str) -> None:
    sim, adapter = await harvest(wire)
    await adapter.sign_in()
    sim.override_next(
        "<!DOCTYPE html><html><body>Maintenance</body></html>",
        "getfavourites",
        content_type="text/html",
    )
    with pytest.raises(ProtocolError, match="HTML page"):
        await adapter.favourites()


async def test_empty_and_wrong_wire_answers_are_refused(harvest: Factory) -> None:
    sim, adapter = await harvest()
    await adapter.sign_in()
    sim.override_next("", "getfavourites")
    with pytest.raises(IncompleteAnswer):
        await adapter.favourites()
    sim.override_next("<responsefavourites><tracks/></responsefavourites>", "getfavourites")
    with pytest.raises(ProtocolError, match="expected JSON"):
        await adapter.favourites()


# -- polled lists, queue and catalog --------------------------------------------------------------


@pytest.mark.parametrize("wire", ["json", "xml"])
async def test_every_list_endpoint_pages_through(harvest: Factory, wire: str) -> None:
    sim, adapter = await harvest(
        wire, sim={"albums": 5, "favourites": 5, "history": 3}, adapter={"page_size": 2}
    )
    assert [t["id"] for t in await adapter.favourites()] == sim.favourite_ids
    assert [p["id"] for p in await adapter.playlists()] == [p.id for p in sim.playlists]
    name, tracks = await adapter.playlist(sim.playlists[1].id)
    assert name == sim.playlists[1].name
    assert [t["id"] for t in tracks] == sim.playlists[1].track_ids
    albums = await adapter.latest_albums()
    assert [a["id"] for a in albums] == [a.id for a in sim.albums]
    assert len(await adapter.download_history()) == 3
    skips = [
        (e.query.get("Skip"), e.query.get("Limit")) for e in sim.log.for_endpoint("getfavourites")
    ]
    assert skips == [("0", "2"), ("2", "2"), ("4", "2")]
    assert all(
        e.query.get("returntracks") == "true" for e in sim.log.for_endpoint("getmemberplaylist")
    )
    assert sim.log.last("getlatestalbums").path.endswith("/25")  # type: ignore[union-attr]


async def test_a_server_ignoring_skip_is_caught(harvest: Factory) -> None:
    sim, adapter = await harvest(adapter={"page_size": 2})
    await adapter.sign_in()
    page = '{"Tracks": [{"ID": "aaaa000000000001"}, {"ID": "aaaa000000000002"}]}'
    sim.override_next(page, "getfavourites")
    sim.override_next(page, "getfavourites")
    with pytest.raises(ProtocolError, match="same page came back"):
        await adapter.favourites()


async def test_remote_queue_follows_auto_download_from(
    harvest: Factory, session: aiohttp.ClientSession
) -> None:
    sim, _ = await harvest(sim={"albums": 3})
    playlist = sim.playlists[0]
    adapter = make_adapter(
        sim, session, auto_download_from=["favourites", f"playlist:{playlist.id}", "latest"]
    )
    items = await adapter.remote_queue()
    tracks = [i for i in items if i.kind == "track"]
    albums = [i for i in items if i.kind == "album"]
    expected = list(dict.fromkeys(sim.favourite_ids + playlist.track_ids))
    assert [i.item_id for i in tracks] == expected
    assert [i.item_id for i in albums] == [a.id for a in sim.albums]
    assert albums[0].extra["name"] == sim.albums[0].title
    assert albums[0].track is not None and albums[0].track.title == sim.albums[0].title
    both = set(sim.favourite_ids) & set(playlist.track_ids)
    for item in tracks:
        sources = item.extra["sources"]
        assert ("favourites" in sources) == (item.item_id in sim.favourite_ids)
        assert (f"playlist:{playlist.id}" in sources) == (item.item_id in playlist.track_ids)
        assert (len(sources) == 2) == (item.item_id in both)
    fav = tracks[0].track
    truth = sim.tracks[tracks[0].item_id]
    assert fav is not None and (fav.artist, fav.title, fav.bpm) == (
        truth.artist,
        truth.title,
        truth.bpm,
    )
    # A new favourite and a new album show up on the next read.
    new_track = next(t for t in sim.tracks if t not in expected)
    sim.add_favourite(new_track)
    album = sim.add_album()
    again = {(i.kind, i.item_id) for i in await adapter.remote_queue()}
    assert ("track", new_track) in again and ("album", album.id) in again


async def test_a_stale_playlist_in_the_config_is_named(
    harvest: Factory, session: aiohttp.ClientSession
) -> None:
    sim, _ = await harvest()
    adapter = make_adapter(sim, session, auto_download_from=["playlist:0000000000000000"])
    with pytest.raises(ProtocolError, match='auto_download_from "playlist:0000000000000000"'):
        await adapter.remote_queue()


@pytest.mark.parametrize("wire", ["json", "xml"])
async def test_catalog_mirrors_albums_playlists_favourites_and_history(
    harvest: Factory, wire: str
) -> None:
    sim, adapter = await harvest(wire, sim={"albums": 4}, adapter={"catalog_page_size": 5})
    pages = [page async for page in adapter.catalog()]
    tracks = [t for page in pages for t in page.tracks]
    assert len({t.id for t in tracks}) == len(tracks) == pages[0].total
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))
    assert all(p.pages == len(pages) and p.total == len(tracks) for p in pages)
    expected = {t.id for a in sim.albums for t in a.tracks}
    expected |= {i for p in sim.playlists for i in p.track_ids} | set(sim.favourite_ids)
    expected |= {h["Track"]["ID"] for h in sim.history}
    assert {t.id for t in tracks} == expected
    by_id = {t.id: t for t in tracks}
    history = {h["Track"]["ID"] for h in sim.history}
    assert {i for i, t in by_id.items() if t.downloaded} == history
    truth = sim.albums[0].tracks[1]
    got = by_id[truth.id]
    assert (got.artist, got.title, got.genre, got.bpm, got.length_s, got.mix) == (
        truth.artist,
        truth.title,
        truth.genre,
        truth.bpm,
        truth.length_s,
        truth.version,
    )
    assert got.year == int(truth.release_date[:4]) and got.date == truth.release_date
    assert got.source == truth.library and got.audio is True and got.video is False
    assert adapter.supports(Capability.CATALOG) and not adapter.supports(Capability.INCREMENTAL)


async def test_catalog_refuses_an_empty_album_list(harvest: Factory) -> None:
    _, adapter = await harvest(sim={"albums": 0, "playlists": 0, "favourites": 0, "history": 0})
    with pytest.raises(IncompleteAnswer, match="no albums"):
        _ = [page async for page in adapter.catalog()]


# -- download plans -------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", ["json", "xml"])
async def test_plan_for_an_album_is_a_multi_part_zip_set(
    harvest: Factory, session: aiohttp.ClientSession, wire: str
) -> None:
    sim, adapter = await harvest(
        wire, sim={"wav_size": 60_000, "part_size_bytes": 130_000}, format="wav"
    )
    album = sim.albums[2]
    plan = await adapter.plan(Request("harvest", album.id, "album"))
    package = sim.last_package
    assert package is not None
    assert plan.archive and not plan.sent_by_email
    assert (plan.pool, plan.kind, plan.item_id, plan.name) == (
        "harvest",
        "album",
        album.id,
        album.title,
    )
    assert [p.key for p in plan.parts] == ["1", "2"] and len(package.parts) == 2
    assert all(p.extension == "zip" for p in plan.parts)
    now = sim.clock()
    assert all(p.expires_at is not None and now < p.expires_at <= now + 300 for p in plan.parts)
    # docs/pools/harvest.md: tokenvalue has newlines around it; the URL holds the bare token.
    for part in plan.parts:
        url = part.sources[0].url
        token = url.rsplit("/", 1)[1]
        assert token in sim.download_tokens and url == sim.download_url.replace(
            "{downloadtoken}", token
        )
        status, data = await fetch(session, plan, part.key)
        assert status == 200 and data == package.parts[int(part.key) - 1]
    sent = sim.download_requests[-1]
    assert sent["format"] == sim.format_id("wav")
    assert sent["downloadtype"] == "album" and sent["identifier"] == album.id
    call = sim.log.last("getmusicdownload")
    assert call is not None
    if wire == "xml":
        # docs/pools/harvest.md's XML form: service token in the path, member token in the body.
        assert sent["membertoken"] == sim.member_tokens[-1]
        assert call.path.endswith(sim.service_tokens[-1])
    else:
        assert "membertoken" not in sent and call.path.endswith(sim.member_tokens[-1])
        assert sent["trimstartsecs"] == 0 and sent["isshare"] is False
        assert sent["forceemail"] is False and sent["includeversions"] is False


@pytest.mark.parametrize(
    ("fmt", "ext", "expect"),
    [("mp3", "mp3", "best"), ("aiff", "aif", "best"), ("raw-id", "mp3", "given")],
)
async def test_format_maps_to_the_listed_id(
    harvest: Factory, session: aiohttp.ClientSession, fmt: str, ext: str, expect: str
) -> None:
    sim, _ = await harvest()
    low = next(f for f in sim.formats if f["FileExtension"] == "mp3" and f["Bitrate"] == 128)
    wanted = str(low["ID"]) if fmt == "raw-id" else fmt
    adapter = make_adapter(sim, session, format=wanted)
    await adapter.plan(Request("harvest", sim.favourite_ids[0]))
    sent = sim.download_requests[-1]["format"]
    best = max(
        (f for f in sim.formats if f["FileExtension"] == ext), key=lambda f: int(f["Bitrate"])
    )
    assert sent == (best["ID"] if expect == "best" else wanted)
    entries = sim.last_package.entries  # type: ignore[union-attr]
    assert all(name.endswith(f".{ext}") for name in entries)


async def test_plan_names_follow_the_seed(harvest: Factory) -> None:
    sim, adapter = await harvest()
    playlist = sim.playlists[1]
    track = sim.favourite_ids[0]
    favourites = await adapter.plan(Request("harvest", None, "favourites"))
    assert favourites.name == "myfavourites" and favourites.item_id == ""
    assert sim.download_requests[-1]["identifier"] == ""
    assert (await adapter.plan(Request("harvest", track))).name == track
    # A playlist's name is looked up when no poll has seen it yet.
    assert (await adapter.plan(Request("harvest", playlist.id, "playlist"))).name == playlist.name
    assert sim.download_requests[-1]["downloadfilename"] == playlist.name


async def test_request_sent_by_email_is_not_a_failure(harvest: Factory) -> None:
    sim, adapter = await harvest("xml")
    sim.send_by_email = True
    plan = await adapter.plan(Request("harvest", sim.albums[0].id, "album"))
    assert plan.sent_by_email and plan.parts == [] and plan.archive
    assert sim.emails == [("album", sim.albums[0].id)]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda pairs: [pairs[0], pairs[2]], "part 2 missing"),
        (lambda pairs: [pairs[0], (pairs[1][0], 1), pairs[2]], "part 1 is listed twice"),
        (lambda pairs: [(pairs[0][0], 0), pairs[1], pairs[2]], "not 1 or more"),
        (lambda pairs: [(pairs[0][0], 1), (pairs[0][0], 2), pairs[2]], "share one download token"),
        (lambda pairs: [(" ", 1), pairs[1], pairs[2]], "empty or malformed"),
    ],
)
async def test_parts_must_make_a_set(harvest: Factory, mangle: Any, message: str) -> None:
    sim, adapter = await harvest(sim={"part_size_bytes": 30_000})
    sim.mangle_parts_next = mangle
    with pytest.raises(ProtocolError, match=message):
        await adapter.plan(Request("harvest", sim.playlists[0].id, "playlist"))


@pytest.mark.parametrize("wire", ["json", "xml"])
async def test_parts_out_of_order_are_sorted(
    harvest: Factory, session: aiohttp.ClientSession, wire: str
) -> None:
    sim, adapter = await harvest(wire, sim={"part_size_bytes": 30_000})
    sim.mangle_parts_next = lambda pairs: list(reversed(pairs))
    plan = await adapter.plan(Request("harvest", sim.playlists[0].id, "playlist"))
    package = sim.last_package
    assert package is not None and len(package.parts) == 3
    assert [p.key for p in plan.parts] == ["1", "2", "3"]
    for part in plan.parts:
        status, data = await fetch(session, plan, part.key)
        assert status == 200 and data == package.parts[int(part.key) - 1]


async def test_token_expiring_between_parts_gets_a_fresh_one(
    harvest: Factory, session: aiohttp.ClientSession
) -> None:
    sim, adapter = await harvest(
        sim={"wav_size": 60_000, "part_size_bytes": 130_000, "download_token_lifetime_s": 90},
        format="wav",
    )
    plan = await adapter.plan(Request("harvest", sim.albums[0].id, "album"))
    package = sim.last_package
    assert package is not None
    status, first = await fetch(session, plan, "1")
    assert status == 200 and first == package.parts[0]
    sim.advance(91)
    status, _ = await fetch(session, plan, "2")
    assert status == 403
    renewed = await adapter.renew_plan(plan, "2")
    assert [p.key for p in renewed.parts] == ["1", "2"]
    assert renewed.context["package"] == plan.context["package"]
    assert renewed.name == plan.name and renewed.item_id == plan.item_id
    status, second = await fetch(session, renewed, "2")
    assert status == 200 and second == package.parts[1]
    assert sim.log.calls["getmusicdownload"] == 2


async def test_a_different_split_on_renewal_is_a_new_package(harvest: Factory) -> None:
    sim, adapter = await harvest(sim={"wav_size": 60_000, "part_size_bytes": 130_000}, format="wav")
    plan = await adapter.plan(Request("harvest", sim.albums[0].id, "album"))
    assert len(plan.parts) == 2
    sim.split_next = 3
    renewed = await adapter.renew_plan(plan, "2")
    assert [p.key for p in renewed.parts] == ["1", "2", "3"]
    assert renewed.context["package"] != plan.context["package"]
    assert renewed.context["part_count"] == 3


def test_registered_and_declared() -> None:
    assert ADAPTERS["harvest"] is HarvestAdapter
    assert HarvestAdapter.kinds == ("track", "playlist", "album", "favourites")
    assert not {Capability.REDOWNLOAD, Capability.QUEUE_EDIT} & HarvestAdapter.capabilities
    assert HarvestAdapter.catalog_window is True


async def test_redownload_is_a_plain_download_again(harvest: Factory) -> None:
    sim, adapter = await harvest()
    said = await adapter.redownload([sim.favourite_ids[0]], "lost")
    assert "no redownload request" in said
    assert not sim.log.entries  # nothing was asked of the pool


# -- end to end through the download engine -------------------------------------------------------


class Stack:
    """The engine with only the Harvest adapter, on a store in tmp_path."""

    def __init__(self, store: Store, engine: Engine, library: Path) -> None:
        self.store, self.engine, self.library = store, engine, library

    async def get(self, kind: str, item: str | None) -> int:
        job, _ = await self.engine.submit(Request("harvest", item, kind), "request")
        return int(job["id"])

    async def wait(self, job_id: int, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await store_jobs.get_job(self.store, job_id)
            if job["state"] in ("done", "failed", "paused", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']}: {job['error']}")
            await asyncio.sleep(0.02)

    def files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.library).as_posix(): p.read_bytes()
            for p in library_files(self.library)
        }


@pytest.fixture
async def stack_factory(
    tmp_path: Path, session: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    made: list[tuple[Engine, Store]] = []

    async def make(adapter: HarvestAdapter, **settings: Any) -> Stack:
        library = tmp_path / "library"
        library.mkdir(exist_ok=True)
        store = await Store.open(tmp_path / "state" / "state.db")
        config = DaemonConfig.model_validate({"download_dir": str(library)}).model_copy(
            update={
                "min_free_space_bytes": 0,
                "write_tags": False,
                "stall_timeout_s": 5.0,
                **settings,
            }
        )
        engine = Engine(
            store,
            session,
            {"harvest": adapter},
            config,
            EventBus(),
            retry_backoff_s=0.05,
            retry_backoff_max_s=0.2,
            server_cooldown_s=0.05,
        )
        await engine.start()
        made.append((engine, store))
        return Stack(store, engine, library)

    yield make
    for engine, store in made:
        await engine.stop(5.0)
        await store.close()


async def test_engine_downloads_and_extracts_a_three_part_set(
    harvest: Factory, stack_factory: Callable[[HarvestAdapter], Awaitable[Stack]]
) -> None:
    sim, adapter = await harvest(
        "xml", sim={"wav_size": 60_000, "part_size_bytes": 100_000, "albums": 2}, format="wav"
    )
    album = sim.add_album(tracks=3)
    stack = await stack_factory(adapter)
    job = await stack.wait(await stack.get("album", album.id))
    assert job["state"] == "done", job["error"]
    package = sim.last_package
    assert package is not None and len(package.parts) == 3
    assert sum(sim.download.completed[key] for key in package.media_keys) == 3
    files = stack.files()
    assert files == {
        f"harvest/{album.title}/{name}": data for name, data in package.entries.items()
    }
    # The parts go once the job is recorded done (a crash in between only leaves a leftover).
    work = stack.library / ".pooldaemon" / f"job-{job['id']}"
    await eventually(lambda: not work.exists())


async def test_engine_renews_a_token_that_expired_between_parts(
    harvest: Factory, stack_factory: Callable[..., Awaitable[Stack]]
) -> None:
    sim, adapter = await harvest(
        sim={"wav_size": 60_000, "part_size_bytes": 130_000, "download_token_lifetime_s": 60},
        format="wav",
    )
    album = sim.albums[0]
    # Learn the package's part keys (the same bytes are served for every request of it).
    await adapter.plan(Request("harvest", album.id, "album"))
    package = sim.last_package
    assert package is not None and len(package.parts) == 2
    second = package.media_keys[1]
    # Part 2 stops after 1000 bytes until released, then its connection drops.
    sim.download.faults.stall(after_bytes=1000, count=1, match=second)
    sim.download.faults.drop(after_bytes=1000, count=1, match=second)
    # The stall lasts until the test releases it: the engine's stall timeout must not end it
    # first (5 s of a loaded machine between the part starting and the release would).
    stack = await stack_factory(adapter, stall_timeout_s=120.0)
    job_id = await stack.get("album", album.id)
    deadline = time.monotonic() + 20

    def part_two_started() -> bool:
        tokens = sim.download_tokens  # ours (2), then the job's: its part 2 is the 4th
        return len(tokens) >= 4 and any(
            e.path.endswith(tokens[3]) for e in sim.download.log.entries
        )

    while sim.download.completed[package.media_keys[0]] < 1 or not part_two_started():
        assert time.monotonic() < deadline, "the job's parts never started"
        await asyncio.sleep(0.02)
    sim.advance(61)  # every token handed out so far has expired
    sim.download.faults.release_stalls()
    job = await stack.wait(job_id)
    assert job["state"] == "done", job["error"]
    assert sim.log.calls["getmusicdownload"] == 3  # ours above, the job's, and one renewal
    # Part 2 was finished with a token from the renewal, never with the expired one.
    renewed = sim.download_tokens[4:]
    last = sim.download.log.entries[-1]
    assert len(renewed) == 2 and any(last.path.endswith(t) for t in renewed)
    assert sim.download.completed[package.media_keys[1]] >= 1
    assert stack.files() == {
        f"harvest/{album.title}/{name}": data for name, data in package.entries.items()
    }


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("slip", "escaped"), ("bomb", "bomb.wav"), ("symlink", "evil-link"), ("corrupt", "CRC")],
)
async def test_engine_refuses_spoiled_archives_and_keeps_them(
    harvest: Factory,
    stack_factory: Callable[[HarvestAdapter], Awaitable[Stack]],
    kind: str,
    reason: str,
) -> None:
    sim, adapter = await harvest()
    sim.next_archive_kind = kind
    stack = await stack_factory(adapter)
    job = await stack.wait(await stack.get("album", sim.albums[0].id))
    package = sim.last_package
    assert package is not None and package.kind == kind
    assert job["state"] == "failed" and job["error"].startswith("rejected archive")
    assert reason in job["error"]
    assert stack.files() == {}
    kept = sorted((stack.library / ".pooldaemon" / f"job-{job['id']}").glob("part-*"))
    assert [p.read_bytes() for p in kept] == package.parts
    assert not (stack.library.parent / "escaped.txt").exists()


# -- single tracks land like any other pool's (docs/interface.md §9) ------------------------------


async def test_a_single_track_is_named_by_the_template_and_tagged(
    harvest: Factory, stack_factory: Callable[..., Awaitable[Stack]]
) -> None:
    sim, adapter = await harvest()
    track = next(t for t in sim.tracks.values() if t.version == "Instrumental")
    async for _ in adapter.catalog():  # the lists name the track, as a sync would
        pass
    stack = await stack_factory(adapter, write_tags=True)
    job = await stack.wait(await stack.get("track", track.id))
    assert job["state"] == "done", job["error"]
    package = sim.last_package
    assert package is not None and len(package.entries) == 1
    (served,) = package.entries.values()
    # "{pool}/{genre}/{artist} - {title} ({mix})", the genre sanitized ("Pop / Rock").
    genre = track.genre.replace("/", "_")
    expected = f"harvest/{genre}/{track.artist} - {track.title} (Instrumental).mp3"
    files = stack.files()
    assert list(files) == [expected]
    assert job["path"] == str(stack.library / expected)
    assert after_id3(files[expected]) == after_id3(served)
    tags = mutagen.id3.ID3(stack.library / expected)
    assert tags.version == (2, 3, 0)
    assert tags["TPE1"].text == [track.artist]
    assert tags["TIT2"].text == [track.title]
    assert tags["TCON"].text == [track.genre]
    assert tags["TBPM"].text == [str(track.bpm)]
    assert tags["TIT3"].text == ["Instrumental"]
    assert tags["TXXX:POOLDAEMON_REF"].text == [f"harvest:{track.id}"]
    assert [c.text for c in tags.getall("COMM")] == [["harvest via pooldaemon"]]


async def test_a_single_track_unknown_to_the_lists_is_named_from_its_file(
    harvest: Factory, stack_factory: Callable[..., Awaitable[Stack]]
) -> None:
    sim, adapter = await harvest()
    track = sim.tracks[sim.favourite_ids[0]]
    stack = await stack_factory(adapter)  # write_tags = false: the bytes as served
    job = await stack.wait(await stack.get("track", track.id))
    assert job["state"] == "done", job["error"]
    package = sim.last_package
    assert package is not None
    (served,) = package.entries.values()
    assert stack.files() == {
        f"harvest/Unknown Genre/{track.artist} - {track.title}.mp3": served,
    }


async def test_an_album_of_one_track_is_still_a_folder(
    harvest: Factory, stack_factory: Callable[..., Awaitable[Stack]]
) -> None:
    sim, adapter = await harvest()
    album = sim.add_album(tracks=1)
    stack = await stack_factory(adapter, write_tags=True)
    job = await stack.wait(await stack.get("album", album.id))
    assert job["state"] == "done", job["error"]
    package = sim.last_package
    assert package is not None
    assert stack.files() == {
        f"harvest/{album.title}/{name}": data for name, data in package.entries.items()
    }
