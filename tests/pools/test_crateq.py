"""The CrateQ adapter against the simulated CrateQ (real server, real socket):
docs/pools/crateq.md."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
import pytest
import structlog

from pooldaemon.config import CrateQConfig
from pooldaemon.errors import (
    AccountError,
    AuthError,
    IncompleteAnswer,
    NotFound,
    ProtocolError,
    TransientError,
)
from pooldaemon.models import QueueItem, Request, Track
from pooldaemon.offload import Offload
from pooldaemon.pools.crateq import AUTH_LIFETIME_S, CrateQ
from pooldaemon.pools.crateq_wire import check_envelope, jwt_expiry, parse_length, parse_size
from pooldaemon.pools.http import PoolHttp
from pooldaemon.sim.crateq import CrateQSim
from tests.conftest import no_sleep

RECORDS = 250


@pytest.fixture
async def sim() -> AsyncIterator[CrateQSim]:
    async with CrateQSim(records=RECORDS, seed="adapter") as server:
        yield server


def config_for(sim: CrateQSim, **overrides: Any) -> CrateQConfig:
    return CrateQConfig.model_validate(
        {
            "type": "crateq",
            "base_url": sim.base_url,
            "api_key": sim.api_key,
            "username": sim.username,
            "password": sim.password,
            **overrides,
        }
    )


def make_adapter(
    sim: CrateQSim, session: aiohttp.ClientSession, rows: int = 100, **overrides: Any
) -> CrateQ:
    http = PoolHttp(session, "crateq", sleep=no_sleep, timeout_s=10)
    return CrateQ(
        "crateq", config_for(sim, **overrides), http, clock=sim.clock, rows=rows, sleep=no_sleep
    )


@pytest.fixture
def adapter(sim: CrateQSim, session: aiohttp.ClientSession) -> CrateQ:
    return make_adapter(sim, session)


async def all_pages(adapter: CrateQ, since: float | None = None) -> list[Any]:
    return [page async for page in adapter.catalog(since)]


# -- login and tokens ---------------------------------------------------------------------------


async def test_login_gets_a_jwt_with_its_exp_and_every_call_carries_key_bearer_and_json(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    await adapter.sign_in()
    expires_at = adapter.token_expires_at()
    assert expires_at is not None
    assert abs(expires_at - (sim.clock() + sim.jwt_lifetime_s)) < 5
    assert adapter.user_id == sim.user.user_id
    await adapter.remote_queue()
    await all_pages(adapter)
    entries = sim.log.entries
    assert {e.endpoint for e in entries} == {"Auth/Login", "Content/Queue", "Content/Media"}
    for entry in entries:
        assert entry.query.get("key") == sim.api_key
        assert entry.headers.get("Content-Type", "").startswith("application/json")
    token = adapter.state()["token"]
    for entry in entries:
        if entry.endpoint != "Auth/Login":
            assert entry.headers["Authorization"] == f"Bearer {token}"


async def test_jwt_is_renewed_before_its_exp_with_one_login(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    await adapter.remote_queue()
    assert sim.calls["Auth/Login"] == 1
    sim.advance(sim.jwt_lifetime_s + 1)
    await adapter.remote_queue()
    await adapter.remote_queue()
    assert sim.calls["Auth/Login"] == 2
    # Renewed ahead of exp, so the pool never had to refuse a token.
    assert all(e.headers.get("Authorization") for e in sim.log.for_endpoint("Content/Queue"))
    assert sim.calls["Content/Queue"] == 3


async def test_a_401_renews_the_jwt_once_and_retries_the_same_page(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    """docs/reliability.md T2: the token dies on page 2 of 3; the pass goes on from page 2."""
    await adapter.sign_in()
    sim.faults.unauthorized(count=1, match="Content/Media", skip=1)
    pages = await all_pages(adapter)
    assert [p.page for p in pages] == [1, 2, 3]
    assert sum(len(p.tracks) for p in pages) == RECORDS
    assert sim.calls["Auth/Login"] == 2
    assert [e.query["page"] for e in sim.log.for_endpoint("Content/Media")] == ["1", "2", "2", "3"]


async def test_concurrent_401s_sign_in_once(sim: CrateQSim, adapter: CrateQ) -> None:
    """docs/reliability.md T3 with the real pool server: every token revoked at once."""
    await adapter.sign_in()
    sim.revoke_tokens()
    results = await asyncio.gather(*(adapter.remote_queue() for _ in range(6)))
    assert all(r == [] for r in results)
    assert sim.calls["Auth/Login"] == 2


async def test_refused_after_renewal_is_an_auth_error(sim: CrateQSim, adapter: CrateQ) -> None:
    sim.faults.unauthorized(count=None, match="Content/Queue")
    with pytest.raises(AuthError, match="refused our credentials after renewing"):
        await adapter.remote_queue()
    assert sim.calls["Auth/Login"] == 2  # the first sign-in and one renewal: no loop


@pytest.mark.parametrize("status", ["expired", "suspended", "denied", "pending"])
async def test_account_status_other_than_current_or_active_shows_the_pools_msg(
    sim: CrateQSim, adapter: CrateQ, status: str
) -> None:
    sim.account_status = status
    sim.account_msg = "Your subscription is expired. Please visit crateq.com to renew."
    with pytest.raises(AccountError) as info:
        await adapter.sign_in()
    assert info.value.message == (
        f"crateq: account is {status}: "
        "Your subscription is expired. Please visit crateq.com to renew."
    )
    assert info.value.detail == {"status": status, "msg": sim.account_msg}


async def test_current_status_and_the_crateq_override_are_accepted(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    sim.account_status = "current"
    await make_adapter(sim, session).sign_in()
    other = sim.add_user("dj2", "pw-two-22", status="expired", crateq=True)
    adapter = make_adapter(sim, session, username=other.username, password=other.password)
    await adapter.sign_in()  # docs/pools/crateq.md: crateq overrides the status
    assert adapter.user_id == other.user_id


async def test_wrong_password_and_wrong_key_are_auth_errors(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(AuthError, match=r"sign-in refused.*Invalid username or password"):
        await make_adapter(sim, session, password="wrong-password").sign_in()
    with pytest.raises(AuthError, match=r"sign-in refused.*HTTP 403"):
        await make_adapter(sim, session, api_key="0" * 32).sign_in()
    assert sim.calls["Auth/Login"] == 2  # refusals are not retried


async def test_state_survives_a_restart_without_signing_in_again(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    first = make_adapter(sim, session)
    await first.sign_in()
    state = first.state()
    assert set(state) == {"token", "expires_at", "user_id"}
    second = make_adapter(sim, session)
    second.restore_state(state)
    await second.remote_queue()
    assert sim.calls["Auth/Login"] == 1
    # An expired saved token is dropped: the next call signs in.
    third = make_adapter(sim, session)
    sim.advance(sim.jwt_lifetime_s + 10)
    third.restore_state(state)
    assert third.token_expires_at() is None


def test_jwt_expiry_reads_the_payload_without_verifying() -> None:
    seed_token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE2MjM1NjcwOTYsImlzcyI6Imh0dHBzOi8vYXBp"
        "LmNyYXRlcS5jb20ifQ.ItVwHJGLASLFMFMvp0kd8s4JxkSRmBlknhRpqFhZzDU"
    )
    assert jwt_expiry(seed_token) == 1623567096.0
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None


# -- catalog ------------------------------------------------------------------------------------


async def test_catalog_pages_through_every_record_newest_first(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    pages = await all_pages(adapter)
    assert [(p.page, p.pages, p.total) for p in pages] == [(n, 3, RECORDS) for n in (1, 2, 3)]
    ids = [int(t.id) for p in pages for t in p.tracks]
    assert ids == sim.catalog.select({}, "date", "desc")
    query = sim.log.last("Content/Media")
    assert query is not None
    assert (query.query["sort"], query.query["dir"], query.query["rows"]) == ("date", "desc", "100")
    assert "days" not in query.query


async def test_big_pages_when_the_server_allows_and_its_cap_when_not(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    pages = await all_pages(make_adapter(sim, session, rows=1000))
    assert len(pages) == 1 and len(pages[0].tracks) == RECORDS
    sim.max_rows = 100
    pages = await all_pages(make_adapter(sim, session, rows=1000))
    assert [len(p.tracks) for p in pages] == [100, 100, 50]


async def test_every_documented_field_is_kept_and_normalized(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    pages = await all_pages(adapter)
    tracks = {t.id: t for p in pages for t in p.tracks}
    for media_id in sim.catalog.ids()[:40]:
        truth = sim.catalog[media_id]
        track = tracks[str(media_id)]
        minutes, _, seconds = truth["length"].partition(":")
        assert track.artist == truth["artist"]
        assert track.title == truth["title"]
        assert track.genre == truth["genre"]
        assert track.bpm == truth["bpm"]
        assert track.year == truth["releaseYear"]
        assert track.mix == truth["tool"]
        assert track.editor == (truth["editor"] or None)
        assert track.advisory == truth["advisory"]
        assert track.length_s == int(minutes) * 60 + int(seconds)
        # "75.26 MB" is rounded to 0.01 MiB: within 5 KiB of the real size.
        assert abs((track.size_bytes or 0) - truth["sizeBytes"]) <= 5243
        assert (track.audio, track.video) == (truth["audio"], truth["video"])
        assert track.quality == (truth["quality"] or None)
        assert track.date == truth["date"]
        assert track.source == truth["source"]
        assert track.downloaded is False
        # Every field the pool sent is kept, except the 15-minute `auth` (useless once old).
        assert set(track.raw) == {
            "mediaId",
            "artist",
            "title",
            "genre",
            "bpm",
            "length",
            "size",
            "tool",
            "editor",
            "advisory",
            "releaseYear",
            "quality",
            "preview",
            "date",
            "queueId",
            "downloaded",
            "audio",
            "video",
            "source",
            "img",
        }


def test_field_rules_from_seed_004() -> None:
    assert parse_length("03:38") == 218
    assert parse_length("2:18") == 138
    assert parse_length("1:02:03") == 3723
    assert parse_size("75.26 MB") == round(75.26 * 1024 * 1024)
    assert parse_size("512 KB") == 512 * 1024
    assert parse_size("") is None


async def test_type_drift_is_coerced_and_a_broken_record_is_quarantined(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    """docs/reliability.md M3: "bpm":"134" and "False" are coerced; an unreadable bpm is skipped."""
    ids = sim.catalog.select({}, "date", "desc")
    sim.catalog.update([ids[0]], bpm="134", video="False", audio="true")
    sim.catalog.update([ids[1]], bpm="fast")
    sim.catalog.update([ids[2]], length="three minutes")
    logs = structlog.testing.LogCapture()
    structlog.configure(processors=[logs])
    try:
        pages = await all_pages(adapter)
    finally:
        structlog.reset_defaults()
    tracks = {t.id: t for p in pages for t in p.tracks}
    first = tracks[str(ids[0])]
    assert (first.bpm, first.video, first.audio) == (134, False, True)
    assert str(ids[1]) not in tracks and str(ids[2]) not in tracks
    assert pages[0].quarantined == (str(ids[1]), str(ids[2]))
    assert len(tracks) == RECORDS - 2
    reasons = {
        e["media_id"]: e["reason"] for e in logs.entries if e["event"] == "record quarantined"
    }
    assert reasons == {
        str(ids[1]): "bpm 'fast' is not a whole number",
        str(ids[2]): "length 'three minutes' is not MM:SS",
    }


async def test_incremental_asks_for_whole_days_plus_one(sim: CrateQSim, adapter: CrateQ) -> None:
    since = sim.clock() - 2.5 * 86400
    sim.catalog.update([sim.catalog.ids()[0]], title="Changed Title")
    pages = await all_pages(adapter, since)
    last = sim.log.last("Content/Media")
    assert last is not None and last.query["days"] == "4"
    assert str(sim.catalog.ids()[0]) in {t.id for p in pages for t in p.tracks}


async def test_thousands_separators_are_repaired_when_the_paging_adds_up(
    session: aiohttp.ClientSession,
) -> None:
    """docs/reliability.md M1: `"records":2,500`, `"pages":25` is refused by strict JSON, then
    repaired."""
    async with CrateQSim(records=2500, seed="thousands", thousands=True) as sim:
        adapter = make_adapter(sim, session, rows=100)
        logs = structlog.testing.LogCapture()
        structlog.configure(processors=[logs])
        try:
            pages = await all_pages(adapter)
        finally:
            structlog.reset_defaults()
        assert (pages[0].total, pages[0].pages, len(pages)) == (2500, 25, 25)
        assert sum(len(p.tracks) for p in pages) == 2500
        repaired = [e for e in logs.entries if e["event"] == "repaired"]
        assert len(repaired) == 25 and repaired[0]["records"] == 2500


async def test_repair_is_refused_when_the_numbers_do_not_add_up(adapter: CrateQ) -> None:
    text = '{"records":2,500,"pages":7,"page":1,"data":[{"mediaId":1}]}'
    with pytest.raises(ProtocolError, match="2500 records do not make 7 pages"):
        check_envelope(text, "crateq: Content/Media page 1", 1, 100)


async def test_200_with_empty_list_is_never_data_and_is_retried(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    sim.faults.timeout_empty(count=1, match="Content/Media", skip=1)
    pages = await all_pages(adapter)
    assert sum(len(p.tracks) for p in pages) == RECORDS
    assert sim.calls["Content/Media"] == 4  # page 2 was asked twice
    sim.faults.timeout_empty(count=None, match="Content/Media")
    with pytest.raises(IncompleteAnswer, match=r"timed out \(HTTP 200 with \[\]\)"):
        await all_pages(adapter)


@pytest.mark.parametrize("fault", ["malformed_json", "truncated_json", "empty_body"])
async def test_malformed_bodies_are_errors_naming_the_endpoint(
    sim: CrateQSim, adapter: CrateQ, fault: str
) -> None:
    await adapter.sign_in()
    getattr(sim.faults, fault)(count=None, match="Content/Media")
    with pytest.raises(ProtocolError) as info:
        await all_pages(adapter)
    assert "crateq: Content/Media" in info.value.message
    assert sim.calls["Content/Media"] == adapter.page_attempts


async def test_an_empty_page_in_the_middle_is_incomplete(adapter: CrateQ) -> None:
    text = '{"records":250,"pages":3,"page":2,"data":[]}'
    with pytest.raises(IncompleteAnswer, match="page 2 of 3 is empty"):
        check_envelope(text, "crateq: Content/Media page 2", 2, 100)


async def test_an_explicit_empty_catalog_is_an_answer(
    session: aiohttp.ClientSession,
) -> None:
    async with CrateQSim(records=0, seed="empty") as sim:
        pages = await all_pages(make_adapter(sim, session))
    assert [(p.total, p.tracks) for p in pages] == [(0, [])]


async def test_5xx_with_retry_after_is_retried(sim: CrateQSim, adapter: CrateQ) -> None:
    sim.faults.fail(503, retry_after=2, count=2, match="Content/Media")
    pages = await all_pages(adapter)
    assert sum(len(p.tracks) for p in pages) == RECORDS


# -- lookups ------------------------------------------------------------------------------------


async def test_lookup_tables(sim: CrateQSim, adapter: CrateQ) -> None:
    tables = await adapter.lookups()
    assert set(tables) == {"genres", "genre_categories", "video_qualities", "video_mixes"}
    assert tables["genres"]["174"] == {
        "genreId": 174,
        "title": "4th of July",
        "category": "Holiday",
        "categoryId": 4,
    }
    assert tables["genre_categories"]["2"]["title"] == "EDM"
    assert tables["video_qualities"]["3"]["pixel_height"] == 1080
    assert "Short Edit" in tables["video_mixes"]


async def test_an_empty_lookup_list_is_not_believed(sim: CrateQSim, adapter: CrateQ) -> None:
    sim.faults.timeout_empty(count=None, match="Content/Genres")
    with pytest.raises(IncompleteAnswer, match="Content/Genres answered with an empty list"):
        await adapter.lookups()


# -- queue --------------------------------------------------------------------------------------


async def test_queue_items_carry_their_auth_and_when_it_was_seen(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    ids = sim.catalog.ids()[:3]
    queue_ids = sim.add_to_queue(ids)
    before = sim.clock()
    items = await adapter.remote_queue()
    assert {i.item_id for i in items} == {str(m) for m in ids}
    for item in items:
        assert item.queue_id == str(queue_ids[ids.index(int(item.item_id))])
        assert (
            item.track is not None and item.track.title == sim.catalog[int(item.item_id)]["title"]
        )
        auth = item.extra["auth"]
        assert isinstance(auth, str) and len(auth) == 40
        assert before - 1 <= item.extra["auth_seen"] <= sim.clock()
        assert "auth" not in item.extra["record"]


async def test_queue_add_of_a_queued_track_does_not_toggle_it_away(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    media_id = sim.catalog.ids()[5]
    sim.add_to_queue([media_id])
    message = await adapter.queue_add(str(media_id))
    assert message == f"{media_id} is already in the crateq queue"
    assert sim.calls["Content/UpdateQueue"] == 0
    assert [e["mediaId"] for e in sim.queue_for()] == [media_id]


async def test_queue_add_and_remove_report_what_the_pool_said(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    media_id = sim.catalog.ids()[7]
    assert await adapter.queue_add(str(media_id)) == "Media added to queue."
    assert [e["mediaId"] for e in sim.queue_for()] == [media_id]
    post = sim.log.last("Content/UpdateQueue")
    assert post is not None and post.method == "POST" and post.query["key"] == sim.api_key
    assert await adapter.queue_remove(str(media_id)) == "Media removed from queue."
    assert sim.queue_for() == []
    assert await adapter.queue_remove(str(media_id)) == f"{media_id} is not in the crateq queue"
    assert sim.calls["Content/UpdateQueue"] == 2


async def test_an_add_that_timed_out_after_the_pool_applied_it_is_not_posted_again(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    """docs/reliability.md C6: a second POST would remove the track; the queue is read instead."""
    media_id = sim.catalog.ids()[9]
    sim.faults.fail(503, count=1, match="Content/UpdateQueue", after_apply=True)
    message = await adapter.queue_add(str(media_id))
    assert message == f"{media_id} added to the crateq queue (confirmed by re-reading it)"
    assert sim.calls["Content/UpdateQueue"] == 1
    assert [e["mediaId"] for e in sim.queue_for()] == [media_id]


async def test_an_add_that_failed_before_the_pool_applied_it_says_so(
    sim: CrateQSim, adapter: CrateQ
) -> None:
    media_id = sim.catalog.ids()[9]
    sim.faults.fail(503, count=1, match="Content/UpdateQueue")
    with pytest.raises(TransientError, match="it is not queued, try again later"):
        await adapter.queue_add(str(media_id))
    assert sim.calls["Content/UpdateQueue"] == 1
    assert sim.queue_for() == []


async def test_queue_add_of_an_unknown_track(sim: CrateQSim, adapter: CrateQ) -> None:
    with pytest.raises(NotFound, match="Media not found"):
        await adapter.queue_add("99")
    with pytest.raises(NotFound, match="not a CrateQ mediaId"):
        await adapter.queue_add("abc")


# -- download plans -----------------------------------------------------------------------------


async def fetch(session: aiohttp.ClientSession, plan: Any) -> tuple[int, bytes]:
    source = plan.parts[0].sources[0]
    async with session.get(source.url, headers=source.headers) as resp:
        return resp.status, await resp.read()


async def test_plan_for_a_queued_track_uses_the_queues_fresh_auth(
    sim: CrateQSim, adapter: CrateQ, session: aiohttp.ClientSession
) -> None:
    media_id = sim.catalog.ids()[11]
    sim.add_to_queue([media_id])
    plan = await adapter.plan(Request("crateq", str(media_id)))
    truth = sim.catalog[media_id]
    [part] = plan.parts
    assert (plan.pool, plan.item_id, plan.kind, part.key) == (
        "crateq",
        str(media_id),
        "track",
        "main",
    )
    assert part.extension == ("mp4" if truth["video"] else "mp3")
    assert part.expected_size is None
    [source] = part.sources
    assert source.url.startswith(f"{sim.base_url}/Content/Download/{media_id}?key={sim.api_key}")
    assert source.server == "127.0.0.1"
    assert source.headers["Authorization"].startswith("Bearer ey")
    assert part.expires_at is not None
    assert abs(part.expires_at - (sim.clock() + AUTH_LIFETIME_S)) < 5
    assert plan.meta["artist"] == truth["artist"] and plan.meta["bpm"] == truth["bpm"]
    assert plan.meta["mix"] == truth["tool"] and plan.meta["year"] == truth["releaseYear"]
    assert sim.calls["Content/UpdateQueue"] == 0
    assert await fetch(session, plan) == (200, sim.expected_bytes(media_id))


async def test_plan_reuses_a_known_fresh_auth_without_reading_the_queue(
    sim: CrateQSim, adapter: CrateQ, session: aiohttp.ClientSession
) -> None:
    media_id = sim.catalog.ids()[12]
    sim.add_to_queue([media_id])
    [known] = await adapter.remote_queue()
    reads = sim.calls["Content/Queue"]
    sim.advance(10 * 60)
    plan = await adapter.plan(Request("crateq", str(media_id)), known)
    assert sim.calls["Content/Queue"] == reads
    assert await fetch(session, plan) == (200, sim.expected_bytes(media_id))


async def test_a_stale_known_auth_is_refreshed_from_the_queue(
    sim: CrateQSim, adapter: CrateQ, session: aiohttp.ClientSession
) -> None:
    media_id = sim.catalog.ids()[13]
    sim.add_to_queue([media_id])
    [known] = await adapter.remote_queue()
    sim.advance(14 * 60 + 5)  # docs/interface.md §6: older than 14 minutes is refreshed
    plan = await adapter.plan(Request("crateq", str(media_id)), known)
    assert sim.calls["Content/Queue"] == 2
    url = plan.parts[0].sources[0].url
    assert known.extra["auth"] not in url
    assert url.endswith(f"token={sim.issue_auth(media_id)}")
    assert await fetch(session, plan) == (200, sim.expected_bytes(media_id))


async def test_a_track_not_in_the_queue_is_added_first(
    sim: CrateQSim, adapter: CrateQ, session: aiohttp.ClientSession
) -> None:
    media_id = sim.catalog.ids()[14]
    plan = await adapter.plan(Request("crateq", str(media_id)))
    assert sim.calls["Content/UpdateQueue"] == 1
    assert [e["mediaId"] for e in sim.queue_for()] == [media_id]
    assert await fetch(session, plan) == (200, sim.expected_bytes(media_id))


async def test_renew_plan_gets_a_fresh_auth_after_the_old_one_expired(
    sim: CrateQSim, adapter: CrateQ, session: aiohttp.ClientSession
) -> None:
    """docs/reliability.md T1: the 15-minute `auth` ran out mid-download; re-reading the queue fixes
    it."""
    media_id = sim.catalog.ids()[15]
    sim.add_to_queue([media_id])
    plan = await adapter.plan(Request("crateq", str(media_id)))
    sim.advance(AUTH_LIFETIME_S + 60)
    status, _ = await fetch(session, plan)
    assert status == 403
    renewed = await adapter.renew_plan(plan, "main")
    assert renewed.parts[0].key == "main"
    assert renewed.parts[0].sources[0].url != plan.parts[0].sources[0].url
    assert await fetch(session, renewed) == (200, sim.expected_bytes(media_id))
    assert sim.calls["Content/UpdateQueue"] == 0


async def test_plan_refuses_other_kinds_and_redownload_is_a_plain_download(
    adapter: CrateQ,
) -> None:
    with pytest.raises(NotFound, match="only tracks"):
        await adapter.plan(Request("crateq", "5", kind="playlist"))
    assert "downloaded again" in await adapter.redownload(["5"], "lost")


async def test_plan_from_a_stored_queue_entry_without_a_track(
    sim: CrateQSim, adapter: CrateQ, session: aiohttp.ClientSession
) -> None:
    """What the store keeps (extra only) is enough to plan from."""
    media_id = sim.catalog.ids()[16]
    sim.add_to_queue([media_id])
    [item] = await adapter.remote_queue()
    stored = QueueItem(
        pool="crateq", item_id=item.item_id, queue_id=item.queue_id, extra=item.extra
    )
    plan = await adapter.plan(Request("crateq", str(media_id)), stored)
    assert plan.meta["title"] == sim.catalog[media_id]["title"]
    assert await fetch(session, plan) == (200, sim.expected_bytes(media_id))


# -- pages decoded in a worker process ----------------------------------------------------------


T = TypeVar("T")


class CountingOffload(Offload):
    """A real worker process; notes what the adapter handed it."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[str] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        self.handed.append(fn.__name__)
        return await super().run(fn, *args)


def comparable(pages: list[Any]) -> list[Any]:
    def raw(track: Track) -> dict[str, Any]:
        return {k: v for k, v in track.raw.items() if k != "preview"}  # signed per answer

    return [
        (p.page, p.pages, p.total, p.quarantined, list(p.tracks), [raw(t) for t in p.tracks])
        for p in pages
    ]


async def test_pages_decoded_in_a_worker_process_are_the_pages_decoded_here(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    ids = sim.catalog.select({}, "date", "desc")
    sim.catalog.update([ids[130]], bpm="fast")  # page 6 of 10: quarantined in the worker
    sim.catalog.update([ids[131]], bpm="134", video="False")  # coerced in the worker
    here = comparable(await all_pages(make_adapter(sim, session, rows=25)))
    adapter = make_adapter(sim, session, rows=25)
    adapter.offload_after = 1
    offload = CountingOffload()
    logs = structlog.testing.LogCapture()
    structlog.configure(processors=[logs])
    try:
        assert await offload.start("pooldaemon.pools.crateq")
        pages = [page async for page in adapter.catalog(None, offload)]
        assert await offload.start("pooldaemon.pools.crateq")  # it never failed
    finally:
        structlog.reset_defaults()
        await offload.close()
    assert offload.handed == ["decode_media_page"] * 9  # pages 2-10; page 1 said how many
    assert comparable(pages) == here
    assert sum(len(p.tracks) for p in pages) == RECORDS - 1
    quarantined = [e for e in logs.entries if e["event"] == "record quarantined"]
    assert [(e["media_id"], e["reason"]) for e in quarantined] == [
        (str(ids[130]), "bpm 'fast' is not a whole number")
    ]


async def test_a_malformed_page_decoded_in_the_worker_is_asked_for_again(
    sim: CrateQSim, session: aiohttp.ClientSession
) -> None:
    adapter = make_adapter(sim, session, rows=25)
    adapter.offload_after = 1
    offload = Offload()
    sim.faults.malformed_json(count=1, match="Content/Media", skip=4)
    try:
        assert await offload.start("pooldaemon.pools.crateq")
        pages = [page async for page in adapter.catalog(None, offload)]
    finally:
        await offload.close()
    assert [p.page for p in pages] == list(range(1, 11))
    assert [e.query["page"] for e in sim.log.for_endpoint("Content/Media")].count("5") == 2
    sim.faults.malformed_json(count=None, match="Content/Media", skip=1)
    offload = Offload()
    try:
        assert await offload.start("pooldaemon.pools.crateq")
        with pytest.raises(ProtocolError) as info:
            _ = [page async for page in adapter.catalog(None, offload)]
        assert info.value.message.startswith("crateq: Content/Media page 2: ")
    finally:
        await offload.close()
