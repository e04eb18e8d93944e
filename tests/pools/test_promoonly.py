"""The Promo Only adapter against the simulator: tokens, the queue, plans, success, redownload."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pooldaemon.config import DaemonConfig, PromoOnlyConfig, load_config
from pooldaemon.downloader.engine import Engine
from pooldaemon.errors import (
    AccountError,
    AuthError,
    BadRequest,
    Conflict,
    NotFound,
    TransientError,
    Unsupported,
)
from pooldaemon.events import EventBus
from pooldaemon.models import OutboxCall, Request
from pooldaemon.outbox import Outbox
from pooldaemon.pools import ADAPTERS, build_adapter
from pooldaemon.pools.base import Capability
from pooldaemon.pools.http import PoolHttp
from pooldaemon.pools.promoonly import SUCCESS_ACTION, PromoOnlyAdapter
from pooldaemon.pools.promoonly_wire import TOKEN_LIFETIME_S
from pooldaemon.pools.promoonly_wire import file_extension as _extension
from pooldaemon.pools.promoonly_wire import token_expiry as _expiry
from pooldaemon.sim.promoonly import PromoOnlySim
from pooldaemon.store.db import Store

SEED_TRACK = "374210"  # docs/pools/promoonly.md §2's example: "720 mp4"
MP3_TRACK = "374211"  # "mp3 320"

Factory = Callable[..., PromoOnlyAdapter]


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def sim() -> AsyncIterator[PromoOnlySim]:
    async with PromoOnlySim() as running:
        yield running


def make_config(sim: PromoOnlySim, *, fixed: bool = False, **extra: Any) -> PromoOnlyConfig:
    data: dict[str, Any] = {
        "type": "promoonly",
        "base_url": sim.base_url,
        "download_url": sim.download_url,
        **extra,
    }
    if fixed:
        data.setdefault("user_id", sim.user_id)
        data.setdefault("token", sim.token)
    else:
        data.setdefault("email", sim.email)
        data.setdefault("password", sim.password)
    return PromoOnlyConfig.model_validate(data)


@pytest.fixture
def adapter_for(sim: PromoOnlySim, session: aiohttp.ClientSession) -> Factory:
    def make(*, timeout_s: float = 10.0, fixed: bool = False, **extra: Any) -> PromoOnlyAdapter:
        http = PoolHttp(session, "promoonly", timeout_s=timeout_s, attempts=3, sleep=_no_sleep)
        return PromoOnlyAdapter(
            "promoonly", make_config(sim, fixed=fixed, **extra), http, clock=sim.clock
        )

    return make


@pytest.fixture
def adapter(adapter_for: Factory) -> PromoOnlyAdapter:
    return adapter_for()


def bearer_of(sim: PromoOnlySim, endpoint: str) -> tuple[str, str]:
    """(userid, token) from the Authorization header of the last call to `endpoint`."""
    entry = sim.log.last(endpoint)
    assert entry is not None
    scheme, _, value = entry.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    user_id, _, token = base64.b64decode(value).decode().partition(":")
    return user_id, token


# -- tokens ---------------------------------------------------------------------------------------


async def test_sign_in_then_bearer_on_every_call(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    assert await adapter.remote_queue() == []
    assert sim.signins == 1
    user_id, token = bearer_of(sim, "queue_list")
    assert user_id == "1" and len(token) == 32
    expires = adapter.token_expires_at()
    assert expires is not None and expires == pytest.approx(sim.clock() + 300, abs=2)


async def test_expired_token_is_renewed_not_signed_in_again(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    await adapter.sign_in()
    _, first = await adapter.remote_queue(), bearer_of(sim, "queue_list")
    sim.advance(TOKEN_LIFETIME_S + 1)
    await adapter.remote_queue()
    assert (sim.signins, sim.renewals) == (1, 1)
    assert bearer_of(sim, "queue_list") != first
    # Renewed ahead of expiry: the call was never refused, so it went out once.
    assert sim.log.calls["queue_list"] == 2


async def test_token_is_renewed_ahead_of_expiry(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    await adapter.sign_in()
    sim.advance(TOKEN_LIFETIME_S - 30)  # still valid, but inside the renewal margin
    await adapter.remote_queue()
    assert (sim.signins, sim.renewals, sim.log.calls["queue_list"]) == (1, 1, 1)


async def test_concurrent_callers_share_one_renewal(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    await adapter.sign_in()
    sim.advance(TOKEN_LIFETIME_S + 5)
    results = await asyncio.gather(*(adapter.remote_queue() for _ in range(10)))
    assert results == [[]] * 10
    assert (sim.signins, sim.renewals) == (1, 1)


async def test_concurrent_401s_share_one_renewal(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    await adapter.sign_in()
    sim.faults.unauthorized(count=8, match="queue_list")  # docs/reliability.md T3
    await asyncio.gather(*(adapter.remote_queue() for _ in range(8)))
    assert (sim.signins, sim.renewals) == (1, 1)


async def test_401_renews_once_then_the_call_goes_through(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.add_to_queue([SEED_TRACK])
    sim.faults.unauthorized(match="queue_list")
    items = await adapter.remote_queue()
    assert [item.item_id for item in items] == [SEED_TRACK]
    assert (sim.signins, sim.renewals) == (1, 1)


async def test_refused_renewal_falls_back_to_sign_in(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    await adapter.sign_in()
    sim.revoke_api_key()
    sim.advance(TOKEN_LIFETIME_S + 1)
    await adapter.remote_queue()
    assert (sim.signins, sim.renewals) == (2, 0)
    await adapter.renew()  # the scheduler's renewal: the new API key works
    assert (sim.signins, sim.renewals) == (2, 1)


async def test_wrong_password_is_a_clear_auth_error(
    sim: PromoOnlySim, adapter_for: Factory
) -> None:
    adapter = adapter_for(password="canary-secret-7731")
    with pytest.raises(
        AuthError, match=r"sign-in refused for dj@example\.com: Invalid email"
    ) as caught:
        await adapter.remote_queue()
    assert "canary-secret-7731" not in str(caught.value)
    assert adapter.state() == {} and sim.signins == 0


async def test_fixed_token_is_used_without_sign_in(sim: PromoOnlySim, adapter_for: Factory) -> None:
    adapter = adapter_for(fixed=True)
    await adapter.sign_in()  # nothing to fetch
    await adapter.renew()  # nothing to renew
    assert await adapter.remote_queue() == []
    assert bearer_of(sim, "queue_list") == ("1", sim.token)
    assert adapter.token_expires_at() is None and adapter.state() == {}
    assert (sim.signins, sim.renewals) == (0, 0)


async def test_fixed_token_rejected_is_a_clear_error(
    sim: PromoOnlySim, adapter_for: Factory
) -> None:
    adapter = adapter_for(fixed=True)
    sim.revoke(sim.token)
    with pytest.raises(AuthError, match="token rejected") as caught:
        await adapter.remote_queue()
    assert "user_id 1" in caught.value.message
    assert sim.token not in caught.value.message
    assert (sim.signins, sim.renewals, sim.log.calls["queue_list"]) == (0, 0, 1)


async def test_state_survives_a_restart_so_renewal_needs_no_sign_in(
    sim: PromoOnlySim, adapter_for: Factory
) -> None:
    first = adapter_for()
    await first.sign_in()
    state = first.state()
    assert state == {
        "email": sim.email,
        "userid": 1,
        "api_key": sim.api_key,
        "api_secret": sim.api_secret,
    }
    second = adapter_for()
    second.restore_state(state)
    await second.remote_queue()
    assert (sim.signins, sim.renewals) == (1, 1)
    # A config now naming another account ignores the saved key and signs in.
    third = adapter_for(email="other@example.com")
    third.restore_state(state)
    assert third.state() == {}


# -- the queue ------------------------------------------------------------------------------------


async def test_remote_queue_items(sim: PromoOnlySim, adapter: PromoOnlyAdapter) -> None:
    sim.add_to_queue([SEED_TRACK, MP3_TRACK])
    items = {item.item_id: item for item in await adapter.remote_queue()}
    assert set(items) == {SEED_TRACK, MP3_TRACK}
    seed = items[SEED_TRACK]
    assert seed.kind == "track" and seed.queue_id is not None
    assert seed.queued_at is not None and seed.queued_at.endswith("Z")
    assert seed.extra["dl_token"] == sim.queue_entries()[0]["dl_token"]
    assert seed.extra["servers"] == sim.hosts
    track = seed.track
    assert track is not None
    assert (track.artist, track.title, track.genre, track.bpm) == (
        "Rage Against The Machine",
        "Sleep Now In The Fire",
        "Rock",
        134,
    )
    # docs/pools/promoonly.md §2 quirks: "content_warn": "False" and "explicit": 0 mean clean.
    assert track.advisory == "Clean" and track.year == 2020 and track.length_s == 215
    assert (track.audio, track.video, track.quality) == (True, True, "720 mp4")
    assert "dl_token" not in track.raw  # a credential stays out of the mirror
    mp3 = items[MP3_TRACK].track
    assert mp3 is not None and (mp3.audio, mp3.video) == (True, False)


async def test_a_track_listed_twice_is_one_item(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.add_to_queue([SEED_TRACK, SEED_TRACK])
    items = await adapter.remote_queue()
    assert len(items) == 1
    assert items[0].extra["dl_token"] == sim.queue_entries()[1]["dl_token"]  # the newest


async def test_queue_add_and_remove(sim: PromoOnlySim, adapter: PromoOnlyAdapter) -> None:
    said = await adapter.queue_add(SEED_TRACK)
    assert said == "promoonly:374210: Track successfully queued for download."
    assert await adapter.queue_add(SEED_TRACK) == "promoonly:374210 is already in the queue"
    assert sim.queue_calls[int(SEED_TRACK)] == 1 and sim.queued(SEED_TRACK) == 1
    assert await adapter.queue_remove(SEED_TRACK) == (
        "promoonly:374210: Track removed from download queue."
    )
    assert sim.queued(SEED_TRACK) == 0
    assert await adapter.queue_remove(SEED_TRACK) == "promoonly:374210 was not in the queue"
    with pytest.raises(BadRequest, match="numbers"):
        await adapter.queue_add("../etc")


async def test_queue_path_falls_back_on_404(adapter_for: Factory) -> None:
    async with PromoOnlySim(queue_paths=("alt",)) as sim, aiohttp.ClientSession() as session:
        http = PoolHttp(session, "promoonly", sleep=_no_sleep)
        adapter = PromoOnlyAdapter("promoonly", make_config(sim), http, clock=sim.clock)
        await adapter.queue_add(SEED_TRACK)
        await adapter.queue_add(MP3_TRACK)
        paths = [entry.path for entry in sim.log.for_endpoint("queue")]
        # The seed's path is tried once; the other path is remembered after it worked.
        assert paths == [
            "/downloads/queue/374210",
            "/download/queue/374210",
            "/download/queue/374211",
        ]
        assert sim.queue_calls == {374210: 1, 374211: 1}


async def test_unknown_track_tries_both_paths_then_not_found(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    with pytest.raises(NotFound, match="track 999 not found: Track not found"):
        await adapter.plan(Request("promoonly", "999"))
    assert sim.log.calls["queue"] == 2


async def test_restricted_track_is_an_account_error(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.restricted.add(int(MP3_TRACK))
    with pytest.raises(AccountError, match="not part of your subscription"):
        await adapter.plan(Request("promoonly", MP3_TRACK))


# -- the side-effecting GET (docs/reliability.md §0, C6)
# --------------------------------------------------


async def test_lost_answer_after_queueing_reads_the_queue_instead(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.faults.drop(after_bytes=None, count=1, match="queue", after_apply=True)
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    assert sim.queue_calls[int(SEED_TRACK)] == 1 and sim.queued(SEED_TRACK) == 1
    assert plan.context["dl_token"] == sim.queue_entries()[0]["dl_token"]


async def test_queue_timeout_after_queueing_is_not_repeated(
    sim: PromoOnlySim, adapter_for: Factory
) -> None:
    adapter = adapter_for(timeout_s=0.3)
    sim.faults.stall(after_bytes=None, count=1, match="queue", after_apply=True)
    plan = await adapter.plan(Request("promoonly", MP3_TRACK))
    assert sim.queue_calls[int(MP3_TRACK)] == 1 and sim.queued(MP3_TRACK) == 1
    assert plan.context["dl_token"] == sim.queue_entries()[0]["dl_token"]


async def test_restart_after_queueing_finds_the_entry(
    sim: PromoOnlySim, adapter_for: Factory
) -> None:
    # docs/reliability.md C6: the daemon died after the queue GET, before it stored the plan.
    await adapter_for().plan(Request("promoonly", SEED_TRACK))
    restarted = adapter_for()
    plan = await restarted.plan(Request("promoonly", SEED_TRACK))
    assert sim.queue_calls[int(SEED_TRACK)] == 1 and sim.queued(SEED_TRACK) == 1
    assert plan.context["dl_token"] == sim.queue_entries()[0]["dl_token"]


async def test_server_error_after_queueing_uses_the_entry(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.faults.fail(503, count=1, match="queue", after_apply=True)
    assert await adapter.queue_add(SEED_TRACK) == "promoonly:374210: queued for download"
    assert sim.queue_calls[int(SEED_TRACK)] == 1 and sim.queued(SEED_TRACK) == 1


async def test_failure_before_queueing_is_left_to_a_later_retry(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.faults.fail(503, count=1, match="queue")
    with pytest.raises(TransientError, match="not in the queue, so it will be asked for again"):
        await adapter.plan(Request("promoonly", SEED_TRACK))
    assert sim.queue_calls[int(SEED_TRACK)] == 0
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    assert sim.queue_calls[int(SEED_TRACK)] == 1 and sim.queued(SEED_TRACK) == 1
    assert plan.context["dl_token"] == sim.queue_entries()[0]["dl_token"]


async def test_concurrent_plans_queue_a_track_once(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    plans = await asyncio.gather(
        *(adapter.plan(Request("promoonly", SEED_TRACK)) for _ in range(4))
    )
    assert sim.queue_calls[int(SEED_TRACK)] == 1 and sim.queued(SEED_TRACK) == 1
    assert len({plan.context["dl_token"] for plan in plans}) == 1


async def test_track_queued_on_the_website_is_not_queued_again(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    entry = sim.add_to_queue([SEED_TRACK])[0]
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    assert plan.context["dl_token"] == entry["dl_token"]
    assert sim.queue_calls[int(SEED_TRACK)] == 0
    found = await adapter.find_in_queue(SEED_TRACK)
    assert found is not None and found.extra["dl_token"] == entry["dl_token"]
    assert await adapter.find_in_queue(MP3_TRACK) is None


async def test_known_queue_item_plans_without_queue_calls(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.add_to_queue([MP3_TRACK])
    [item] = await adapter.remote_queue()
    before = sim.log.calls["queue_list"]
    plan = await adapter.plan(Request("promoonly", MP3_TRACK), known=item)
    assert plan.context["dl_token"] == item.extra["dl_token"]
    assert sim.log.calls["queue_list"] == before and sim.log.calls["queue"] == 0


# -- plans ----------------------------------------------------------------------------------------


async def test_plan_shape(sim: PromoOnlySim, adapter: PromoOnlyAdapter) -> None:
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    dl_token = sim.queue_entries()[0]["dl_token"]
    assert (plan.pool, plan.item_id, plan.kind, plan.archive) == (
        "promoonly",
        SEED_TRACK,
        "track",
        False,
    )
    [part] = plan.parts
    assert part.key == "main" and part.extension == "mp4"
    assert [source.server for source in part.sources] == sim.hosts
    assert [source.url for source in part.sources] == [
        f"http://{host}/pool/v5/download/{dl_token}" for host in sim.hosts
    ]
    _, token = bearer_of(sim, "server")
    expected = base64.b64encode(f"1:{token}".encode()).decode()
    assert all(s.headers == {"Authorization": f"Bearer {expected}"} for s in part.sources)
    assert part.expires_at == adapter.token_expires_at()
    assert plan.meta == {
        "id": SEED_TRACK,
        "artist": "Rage Against The Machine",
        "title": "Sleep Now In The Fire",
        "genre": "Rock",
        "bpm": 134,
        "mix": "From The Battle Of Mexico City",
        "year": 2020,
        "advisory": "Clean",
        "quality": "720 mp4",
        "source": "Hits HD (4-16-2020)",
        "label": "Epic",
        "length_s": 215,
    }
    assert plan.context["trackid"] == 374210 and plan.context["dl_token"] == dl_token
    assert plan.context["server_ids"] == {host: 7 + i for i, host in enumerate(sim.hosts)}
    mp3 = await adapter.plan(Request("promoonly", MP3_TRACK))
    assert mp3.parts[0].extension == "mp3"


async def test_plan_sources_serve_the_media(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter, session: aiohttp.ClientSession
) -> None:
    plan = await adapter.plan(Request("promoonly", MP3_TRACK))
    expected = sim.media.get(MP3_TRACK)
    size = len(expected)
    pieces = []
    sources = plan.parts[0].sources
    for index, source in enumerate(sources):  # one third from each server
        start, end = size * index // 3, size * (index + 1) // 3 - 1
        headers = {**source.headers, "Range": f"bytes={start}-{end}"}
        async with session.get(source.url, headers=headers) as resp:
            assert resp.status == 206
            pieces.append(await resp.read())
    assert b"".join(pieces) == expected


async def test_renew_plan_refreshes_servers_for_failover(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.announce([0, 1])
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    assert [s.server for s in plan.parts[0].sources] == sim.hosts[:2]
    sim.announce([2])  # dc03 and ny01 gone, sl02 answers
    renewals = sim.renewals
    renewed = await adapter.renew_plan(plan, "main")
    assert [s.server for s in renewed.parts[0].sources] == [sim.hosts[2]]
    assert renewed.context["server_ids"] == {sim.hosts[2]: 9}
    assert renewed.context["dl_token"] == plan.context["dl_token"]
    assert renewed.parts[0].key == "main"
    # The header the servers refused is replaced, and nothing was queued again.
    assert sim.renewals == renewals + 1
    assert renewed.parts[0].sources[0].headers != plan.parts[0].sources[0].headers
    assert sim.queue_calls[int(SEED_TRACK)] == 1


async def test_renew_plan_picks_up_a_reissued_dl_token(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    plan = await adapter.plan(Request("promoonly", MP3_TRACK))
    fresh = sim.expire_dl_token(MP3_TRACK)
    renewed = await adapter.renew_plan(plan)
    assert renewed.context["dl_token"] == fresh
    assert all(source.url.endswith(f"/{fresh}") for source in renewed.parts[0].sources)
    assert sim.queue_calls[int(MP3_TRACK)] == 1 and not sim.redownloads


async def test_renew_plan_queues_a_track_gone_from_the_queue_once(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.add_to_queue([SEED_TRACK])
    [item] = await adapter.remote_queue()
    plan = await adapter.plan(Request("promoonly", SEED_TRACK), known=item)
    await adapter.queue_remove(SEED_TRACK)  # gone from the website's queue meanwhile
    renewed = await adapter.renew_plan(plan)
    assert sim.queue_calls[int(SEED_TRACK)] == 1 and sim.queued(SEED_TRACK) == 1
    assert renewed.context["dl_token"] == sim.queue_entries()[0]["dl_token"]
    assert renewed.context["dl_token"] != plan.context["dl_token"]


async def test_renew_plan_with_a_fixed_token_does_not_sign_in(
    sim: PromoOnlySim, adapter_for: Factory
) -> None:
    adapter = adapter_for(fixed=True)
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    renewed = await adapter.renew_plan(plan)
    assert renewed.parts[0].sources == plan.parts[0].sources
    assert (sim.signins, sim.renewals) == (0, 0)


async def test_plan_without_the_server_list_uses_the_queue_answer(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.faults.fail(503, count=None, match="server")
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    assert [s.server for s in plan.parts[0].sources] == sim.hosts
    assert plan.context["server_ids"] == {}
    [call] = adapter.after_download(plan)
    assert call.payload["serverid"] is None
    sim.faults.clear()
    await adapter.deliver(call)  # the id is looked up now
    assert [s["serverid"] for s in sim.successes] == [7]


# -- after the download ---------------------------------------------------------------------------


async def test_success_is_owed_and_delivered_once(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    plan.context["served_by"] = sim.hosts[1]  # the engine names the server that delivered
    [call] = adapter.after_download(plan)
    assert call == OutboxCall(
        "promoonly",
        SUCCESS_ACTION,
        {
            "trackid": 374210,
            "serverid": 8,
            "dl_token": plan.context["dl_token"],
            "server": sim.hosts[1],
        },
    )
    await adapter.deliver(call)
    await adapter.deliver(call)  # replayed after a crash: acknowledged, not doubled
    assert sim.successes == [
        {"userid": 1, "trackid": 374210, "serverid": 8, "dl_token": plan.context["dl_token"]}
    ]
    assert sim.queued(SEED_TRACK) == 0
    entry = sim.log.last("success")
    assert entry is not None and entry.headers["Authorization"].startswith("Bearer ")


async def test_success_for_a_bad_token_is_a_final_error(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    call = OutboxCall(
        "promoonly", SUCCESS_ACTION, {"trackid": 374210, "serverid": 7, "dl_token": "a" * 32}
    )
    with pytest.raises(Exception, match="Invalid download token") as caught:
        await adapter.deliver(call)
    assert not isinstance(caught.value, TransientError)
    with pytest.raises(Unsupported):
        await adapter.deliver(OutboxCall("promoonly", "other", {}))


async def test_success_transient_failure_is_retryable(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    [call] = adapter.after_download(plan)
    sim.faults.fail(503, count=None, match="success")
    with pytest.raises(TransientError):
        await adapter.deliver(call)
    sim.faults.clear()
    await adapter.deliver(call)
    assert len(sim.successes) == 1


async def test_redownload(sim: PromoOnlySim, adapter: PromoOnlyAdapter) -> None:
    with pytest.raises(BadRequest, match="written reason"):
        await adapter.redownload([SEED_TRACK], "  ")
    assert sim.log.calls["redownload"] == 0
    with pytest.raises(Conflict, match="Only previously downloaded tracks"):
        await adapter.redownload([SEED_TRACK], "hard drive crashed")

    plan = await adapter.plan(Request("promoonly", SEED_TRACK))
    for call in adapter.after_download(plan):
        await adapter.deliver(call)
    said = await adapter.redownload([SEED_TRACK, MP3_TRACK], "hard drive crashed")
    assert said == "1 of 2 track(s) requeued for download"
    assert sim.redownloads == [
        {"trackids": [374210], "reason": "hard drive crashed", "requeued": 1}
    ]
    entry = sim.log.last("redownload")
    assert entry is not None
    # The requeued track is found in the queue: no second queue GET.
    again = await adapter.plan(Request("promoonly", SEED_TRACK, redownload=True))
    assert again.context["dl_token"] != plan.context["dl_token"]
    assert sim.queue_calls[int(SEED_TRACK)] == 1


async def test_redownload_is_not_retried_on_a_lost_answer(
    sim: PromoOnlySim, adapter: PromoOnlyAdapter
) -> None:
    sim.mark_downloaded([SEED_TRACK])
    sim.faults.fail(503, count=1, match="redownload", after_apply=True)
    with pytest.raises(TransientError):
        await adapter.redownload([SEED_TRACK], "corrupt file")
    assert sim.log.calls["redownload"] == 1 and len(sim.redownloads) == 1


# -- what the adapter declares --------------------------------------------------------------------


@pytest.mark.parametrize("fixed_token", [False, True])
async def test_sim_config_builds_a_working_adapter(
    sim: PromoOnlySim, session: aiohttp.ClientSession, tmp_path: Path, fixed_token: bool
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[daemon]\ndownload_dir = "{tmp_path}"\n\n' + sim.config_toml(fixed_token=fixed_token)
    )
    path.chmod(0o600)
    cfg = load_config(path, env={})
    assert ADAPTERS["promoonly"] is PromoOnlyAdapter
    adapter = build_adapter("promoonly", cfg.pools["promoonly"], PoolHttp(session, "promoonly"))
    sim.add_to_queue([MP3_TRACK])
    plan = await adapter.plan(Request("promoonly", MP3_TRACK))
    assert plan.parts[0].sources[0].url.startswith(f"http://{sim.hosts[0]}/pool/v5/download/")
    assert sim.signins == (0 if fixed_token else 1)


def test_capabilities_are_honest(adapter: PromoOnlyAdapter) -> None:
    assert adapter.supports(Capability.QUEUE) and adapter.supports(Capability.QUEUE_EDIT)
    assert adapter.supports(Capability.REDOWNLOAD) and adapter.supports(Capability.OUTBOX)
    assert not adapter.supports(Capability.CATALOG)
    assert adapter.kinds == ("track",)
    with pytest.raises(Unsupported):
        adapter.catalog()


async def test_only_tracks_can_be_planned(adapter: PromoOnlyAdapter) -> None:
    with pytest.raises(Unsupported):
        await adapter.plan(Request("promoonly", "1", kind="album"))


@pytest.mark.parametrize(
    ("value", "lifetime"),
    [
        (1_000_000_300, 300.0),  # Unix seconds
        (1_000_000_120_000, 120.0),  # Unix milliseconds
        ("1000000240", 240.0),
        (300, 300.0),  # a lifetime
        ("2001-09-09T01:51:40Z", 300.0),  # ISO 8601 (1_000_000_300)
        (999_999_000, TOKEN_LIFETIME_S),  # already past: a skewed clock
        (None, TOKEN_LIFETIME_S),
        ("soon", TOKEN_LIFETIME_S),
        (True, TOKEN_LIFETIME_S),
    ],
)
def test_expiry_forms(value: Any, lifetime: float) -> None:
    now = 1_000_000_000.0
    assert _expiry(value, now) == pytest.approx(now + lifetime)


@pytest.mark.parametrize(
    ("file_type", "extension"),
    [
        ("720 mp4", "mp4"),
        ("mp3 320", "mp3"),
        ("MP3 256", "mp3"),
        ("1080 MOV", "mov"),
        ("aif", "aiff"),
        ("hd video", None),
        (None, None),
    ],
)
def test_extension_from_file_type(file_type: Any, extension: str | None) -> None:
    assert _extension(file_type) == extension


# -- end to end with the download engine ----------------------------------------------------------


async def _wait_done(events: EventBus, job_id: int) -> dict[str, Any]:
    async with events.subscribe() as stream:
        async for event in stream:
            job = event.get("job")
            if event["type"] != "job.state" or not isinstance(job, dict) or job["id"] != job_id:
                continue
            # Done, or any error: a retry would wait out the engine's back-off.
            if job["state"] in ("done", "failed", "paused", "cancelled") or job["error"]:
                return job
    raise AssertionError("unreachable")


class Daemon:
    """The engine with the Promo Only adapter on one state database, restartable."""

    def __init__(self, sim: PromoOnlySim, session: aiohttp.ClientSession, root: Path) -> None:
        self.sim, self.session, self.root = sim, session, root
        self.config = DaemonConfig.model_validate(
            {
                "download_dir": str(root / "lib"),
                "drop_dir": str(root / "drop"),
                "state_dir": str(root / "state"),
                "socket_path": str(root / "s.sock"),
                "chunk_size": "256 KiB",
                "connections_per_download": 3,
                "write_tags": False,  # docs/interface.md §5: byte-identical to what the pool served
                "min_free_space": "1 MiB",
            }
        )
        self.events = EventBus()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Engine]:
        store = await Store.open(self.root / "state.db")
        http = PoolHttp(self.session, "promoonly", sleep=_no_sleep)
        adapter = PromoOnlyAdapter("promoonly", make_config(self.sim), http, clock=self.sim.clock)
        outbox = Outbox(store, {"promoonly": adapter}, backoff_s=0.05, backoff_max_s=0.1)
        engine = Engine(
            store,
            self.session,
            {"promoonly": adapter},
            self.config,
            self.events,
            on_owed=outbox.wake,
        )
        await outbox.start()
        await engine.start()
        try:
            yield engine
        finally:
            await engine.stop()
            await outbox.stop()
            await store.close()

    async def download(self, engine: Engine, request: Request) -> dict[str, Any]:
        job, created = await engine.submit(request, "request")
        assert created
        waiting = asyncio.create_task(_wait_done(self.events, job["id"]))
        await asyncio.sleep(0)  # subscribed before the job can end
        engine.wake()
        return await asyncio.wait_for(waiting, 60)


async def test_engine_downloads_from_three_servers_one_failing(tmp_path: Path) -> None:
    async with (
        PromoOnlySim(media_size=1024 * 1024 + 777) as sim,
        aiohttp.ClientSession() as session,
    ):
        daemon = Daemon(sim, session, tmp_path)
        sim.servers[0].faults.fail(503, count=None)  # dc03 is down for the whole test
        async with daemon.running() as engine:
            done = await daemon.download(engine, Request("promoonly", MP3_TRACK))
            assert done["state"] == "done", done
            await asyncio.wait_for(sim.wait_for_successes(1), 30)
        path = Path(done["path"])
        assert path.suffix == ".mp3"
        assert path.read_bytes() == sim.media.get(MP3_TRACK)
        assert sim.servers[0].log.calls["download"] >= 1  # tried, refused, failed over
        served = sim.servers[1].log.calls["download"] + sim.servers[2].log.calls["download"]
        assert served >= 2
        assert sim.queue_calls[int(MP3_TRACK)] == 1
        [success] = sim.successes
        assert success["trackid"] == int(MP3_TRACK) and success["serverid"] in (7, 8, 9)
        assert sim.queued(MP3_TRACK) == 0  # acknowledged: the pool took it off the queue


async def test_engine_outbox_replays_success_after_a_restart(tmp_path: Path) -> None:
    async with PromoOnlySim() as sim, aiohttp.ClientSession() as session:
        daemon = Daemon(sim, session, tmp_path)
        sim.faults.fail(503, count=None, match="success")  # the pool cannot take it yet
        async with daemon.running() as engine:
            done = await daemon.download(engine, Request("promoonly", SEED_TRACK))
            assert done["state"] == "done", done
        assert sim.successes == []  # stopped ("crashed") before the pool took it
        sim.faults.clear()
        async with daemon.running():  # a restart: the owed call is still in state.db
            await asyncio.wait_for(sim.wait_for_successes(1), 30)
        assert [s["trackid"] for s in sim.successes] == [int(SEED_TRACK)]
        assert Path(done["path"]).read_bytes() == sim.media.get(SEED_TRACK)


async def test_engine_redownload_spends_one_request(tmp_path: Path) -> None:
    async with PromoOnlySim() as sim, aiohttp.ClientSession() as session:
        daemon = Daemon(sim, session, tmp_path)
        async with daemon.running() as engine:
            first = await daemon.download(engine, Request("promoonly", MP3_TRACK))
            await asyncio.wait_for(sim.wait_for_successes(1), 30)
            again = await daemon.download(
                engine,
                Request("promoonly", MP3_TRACK, redownload=True, reason="the drive died"),
            )
            await asyncio.wait_for(sim.wait_for_successes(2), 30)
        assert first["state"] == again["state"] == "done"
        assert sim.redownloads == [
            {"trackids": [int(MP3_TRACK)], "reason": "the drive died", "requeued": 1}
        ]
        # The requeued entry was found in the queue, never queued by a second GET.
        assert sim.queue_calls[int(MP3_TRACK)] == 1
        assert len({s["dl_token"] for s in sim.successes}) == 2
