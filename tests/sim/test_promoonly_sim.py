"""The Promo Only simulator on its own, spoken to with plain aiohttp as the pool documents
describe."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from pooldaemon.sim.promoonly import PromoOnlySim


@pytest.fixture
async def sim() -> AsyncIterator[PromoOnlySim]:
    async with PromoOnlySim() as running:
        yield running


def bearer(user_id: int, token: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user_id}:{token}".encode()).decode()
    return {"Authorization": f"Bearer {pair}"}


async def sign_in(sim: PromoOnlySim, session: aiohttp.ClientSession) -> dict[str, Any]:
    async with session.post(
        f"{sim.base_url}/user/authenticate/signin",
        data={"email": sim.email, "password": sim.password},
    ) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
    return body


async def get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_sign_in_renew_and_five_minute_tokens(
    sim: PromoOnlySim, session: aiohttp.ClientSession
) -> None:
    body = await sign_in(sim, session)
    assert body["userid"] == sim.user_id
    assert body["api_key"] == sim.api_key and body["api_secret"] == sim.api_secret
    assert body["expiration"] == pytest.approx(sim.clock() + 300, abs=2)
    headers = bearer(body["userid"], body["token"])
    status, queue = await get(session, f"{sim.base_url}/download/queue", headers)
    assert (status, queue) == (200, [])

    sim.advance(301)
    status, answer = await get(session, f"{sim.base_url}/download/queue", headers)
    assert status == 401 and answer["Result"] == "Invalid or expired token."

    basic = base64.b64encode(f"{sim.api_key}:{sim.api_secret}".encode()).decode()
    async with session.post(
        f"{sim.base_url}/user/authenticate",
        data={"userid": str(sim.user_id)},
        headers={"Authorization": f"Basic {basic}"},
    ) as resp:
        renewed = await resp.json()
    assert resp.status == 200 and set(renewed) == {"token", "expires"}
    status, _ = await get(
        session, f"{sim.base_url}/download/queue", bearer(sim.user_id, renewed["token"])
    )
    assert status == 200
    assert (sim.signins, sim.renewals) == (1, 1)


async def test_bad_credentials_are_refused(
    sim: PromoOnlySim, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"{sim.base_url}/user/authenticate/signin",
        data={"email": sim.email, "password": "wrong"},
    ) as resp:
        assert resp.status == 401
        assert (await resp.json())["Result"] == "Invalid email or password."
    async with session.post(
        f"{sim.base_url}/user/authenticate",
        data={"userid": "1"},
        headers={"Authorization": "Basic " + base64.b64encode(b"nope:nope").decode()},
    ) as resp:
        assert resp.status == 401
    # A token of user 1 presented as user 2 is not accepted.
    status, _ = await get(session, f"{sim.base_url}/download/queue", bearer(2, sim.token))
    assert status == 401
    assert sim.signins == 0 and sim.renewals == 0


async def test_queue_get_has_a_side_effect_each_time(
    sim: PromoOnlySim, session: aiohttp.ClientSession
) -> None:
    headers = bearer(sim.user_id, sim.token)
    status, first = await get(session, f"{sim.base_url}/downloads/queue/374210", headers)
    assert status == 200
    # docs/pools/promoonly.md §2's example, field for field.
    assert first["Result"] == "Track successfully queued for download."
    assert first["artist"] == "Rage Against The Machine"
    assert first["content_warn"] == "False" and first["explicit"] == 0
    assert first["file_type"] == "720 mp4" and first["trackid"] == 374210
    assert first["servers"] == sim.hosts
    status, second = await get(session, f"{sim.base_url}/download/queue/374210", headers)
    assert status == 200 and second["dl_token"] != first["dl_token"]
    assert sim.queue_calls[374210] == 2 and sim.queued(374210) == 2

    status, listed = await get(session, f"{sim.base_url}/download/queue", headers)
    assert [entry["queueid"] for entry in listed] == [first["queueid"], second["queueid"]]
    assert all(isinstance(entry["queue_time"], int) for entry in listed)

    status, _ = await get(session, f"{sim.base_url}/download/remove/374210", headers)
    assert status == 200 and sim.queued(374210) == 0
    status, _ = await get(session, f"{sim.base_url}/download/remove/374210", headers)
    assert status == 404


async def test_queue_paths_can_be_switched_off() -> None:
    async with PromoOnlySim(queue_paths=("alt",)) as sim, aiohttp.ClientSession() as session:
        headers = bearer(sim.user_id, sim.token)
        status, _ = await get(session, f"{sim.base_url}/downloads/queue/374210", headers)
        assert status == 404 and sim.queue_calls[374210] == 0
        status, _ = await get(session, f"{sim.base_url}/download/queue/374210", headers)
        assert status == 200 and sim.queue_calls[374210] == 1


async def test_unknown_and_restricted_tracks(
    sim: PromoOnlySim, session: aiohttp.ClientSession
) -> None:
    headers = bearer(sim.user_id, sim.token)
    status, answer = await get(session, f"{sim.base_url}/downloads/queue/999", headers)
    assert status == 404 and answer["Result"] == "Track not found."
    sim.restricted.add(374211)
    status, _ = await get(session, f"{sim.base_url}/downloads/queue/374211", headers)
    assert status == 403
    status, _ = await get(session, f"{sim.base_url}/download/server/374211", headers)
    assert status == 403
    assert sum(sim.queue_calls.values()) == 0


async def test_server_list_and_download_servers(
    sim: PromoOnlySim, session: aiohttp.ClientSession
) -> None:
    headers = bearer(sim.user_id, sim.token)
    status, servers = await get(session, f"{sim.base_url}/download/server/374211", headers)
    assert status == 200
    assert servers == [{"host": host, "id": 7 + index} for index, host in enumerate(sim.hosts)]
    assert len(set(sim.hosts)) == 3

    _, entry = await get(session, f"{sim.base_url}/downloads/queue/374211", headers)
    expected = sim.media.get("374211")
    assert expected[:3] == b"ID3"  # "mp3 320" serves an MP3
    for host in sim.hosts:
        url = sim.download_url.format(server=host, dl_token=entry["dl_token"])
        async with session.get(url, headers={**headers, "Range": "bytes=100-"}) as resp:
            assert resp.status == 206
            assert await resp.read() == expected[100:]
        async with session.get(url) as resp:
            assert resp.status == 401  # no Bearer header
        bad = sim.download_url.format(server=host, dl_token="0" * 32)
        async with session.get(bad, headers=headers) as resp:
            assert resp.status == 403
    assert hashlib.sha256(expected).hexdigest() == sim.media.sha256("374211")

    sim.announce([2])
    status, servers = await get(session, f"{sim.base_url}/download/server/374211", headers)
    assert servers == [{"host": sim.hosts[2], "id": 9}]


async def test_expired_dl_token_is_refused(
    sim: PromoOnlySim, session: aiohttp.ClientSession
) -> None:
    headers = bearer(sim.user_id, sim.token)
    entry = sim.add_to_queue([374210])[0]
    assert sim.queue_calls[374210] == 0  # the website's queueing is not a queue GET
    fresh = sim.expire_dl_token(374210)
    url = sim.download_url.format(server=sim.hosts[0], dl_token=entry["dl_token"])
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 403
    url = sim.download_url.format(server=sim.hosts[0], dl_token=fresh)
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"


async def test_success_and_redownload(sim: PromoOnlySim, session: aiohttp.ClientSession) -> None:
    headers = bearer(sim.user_id, sim.token)
    async with session.post(
        f"{sim.base_url}/download/redownload_request",
        data={"trackid_list": "374210", "reason": "disk died"},
        headers=headers,
    ) as resp:
        assert resp.status == 400  # docs/pools/promoonly.md §6: only tracks downloaded before
    entry = sim.add_to_queue([374210])[0]
    form = {"trackid": "374210", "serverid": "8", "dl_token": entry["dl_token"]}
    for _ in range(2):  # the second is an outbox replay
        async with session.post(
            f"{sim.base_url}/download/success", data=form, headers=headers
        ) as resp:
            assert resp.status == 200
    assert sim.successes == [
        {"userid": 1, "trackid": 374210, "serverid": 8, "dl_token": entry["dl_token"]}
    ]
    assert sim.queued(374210) == 0
    async with session.post(
        f"{sim.base_url}/download/success",
        data={**form, "dl_token": "f" * 32},
        headers=headers,
    ) as resp:
        assert resp.status == 400

    async with session.post(
        f"{sim.base_url}/download/redownload_request",
        data={"trackid_list": "374210,374211", "reason": ""},
        headers=headers,
    ) as resp:
        assert resp.status == 400
    async with session.post(
        f"{sim.base_url}/download/redownload_request",
        data={"trackid_list": "374210,374211", "reason": "disk died"},
        headers=headers,
    ) as resp:
        assert await resp.json() == {"result": "success", "tracks_requeued": 1}
    assert sim.redownloads == [{"trackids": [374210], "reason": "disk died", "requeued": 1}]
    assert sim.queued(374210) == 1


async def test_fault_after_apply_keeps_the_side_effect(
    sim: PromoOnlySim, session: aiohttp.ClientSession
) -> None:
    headers = bearer(sim.user_id, sim.token)
    sim.faults.fail(503, match="queue", after_apply=True)
    status, _ = await get(session, f"{sim.base_url}/downloads/queue/374212", headers)
    assert status == 503
    assert sim.queue_calls[374212] == 1 and sim.queued(374212) == 1
    sim.faults.fail(503, match="queue")
    status, _ = await get(session, f"{sim.base_url}/downloads/queue/374212", headers)
    assert status == 503 and sim.queue_calls[374212] == 1


def test_tracks_are_deterministic() -> None:
    one, two = PromoOnlySim(seed="x"), PromoOnlySim(seed="x")
    assert one.tracks == two.tracks and one.password == two.password
    assert one.media.sha256("374213") == two.media.sha256("374213")
    kinds = {track.kind for track in one.tracks.values()}
    assert kinds == {"mp3", "mp4"}
