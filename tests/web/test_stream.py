"""A hundred tabs follow the event stream while three jobs download (docs/reliability.md W2):
every tab sees every job end, the downloads arrive intact, queues stay bounded, and closing the
tabs frees their streams."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import aiohttp

from .conftest import KIB, Dashboard

TABS = 100


async def test_a_hundred_tabs_follow_three_downloads(dashboard: Dashboard) -> None:
    web = dashboard.daemon.web
    assert web is not None
    session = await dashboard.login()
    await dashboard.client.post("/v1/pools/crateq/sync", {"full": True})
    dashboard.crateq.faults.throttle_bps = 256 * KIB  # a few seconds of progress events
    seen: list[set[int]] = [set() for _ in range(TABS)]
    subscribed = asyncio.Event()
    ready = 0

    async def tab(i: int, http: aiohttp.ClientSession) -> None:
        nonlocal ready
        headers = {"Cookie": f"pd_session={session.cookie}"}
        async with http.get(dashboard.origin + "/api/v1/events", headers=headers) as resp:
            assert resp.status == 200
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "subscribed":
                    ready += 1
                    if ready == TABS:
                        subscribed.set()
                elif event["type"] == "job.state" and event["job"]["state"] == "done":
                    seen[i].add(event["job"]["id"])

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tabs = [asyncio.create_task(tab(i, http)) for i in range(TABS)]
        try:
            async with asyncio.timeout(30):
                await subscribed.wait()
            assert web.hub.clients == TABS
            ids = dashboard.crateq.catalog.ids()[:3]
            answer = await dashboard.client.post("/v1/jobs", {"refs": [f"crateq:{i}" for i in ids]})
            jobs = {a["job"] for a in answer["accepted"]}
            assert len(jobs) == 3
            async with asyncio.timeout(60):
                while not all(s == jobs for s in seen):
                    assert all(len(c._queue) <= 65 for c in web.hub._clients)
                    await asyncio.sleep(0.05)
        finally:
            for task in tabs:
                task.cancel()
            await asyncio.gather(*tabs, return_exceptions=True)
    async with asyncio.timeout(10):
        while web.hub.clients:
            await asyncio.sleep(0.01)
    items = (await dashboard.client.get("/v1/jobs"))["items"]
    assert {item["id"] for item in items} == jobs
    for item in items:
        assert item["state"] == "done", item["error"]
        media_id = int(item["ref"].split(":")[1])
        digest = hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest()
        assert digest == dashboard.crateq.sha256(media_id)
