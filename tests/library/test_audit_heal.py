"""Audit and heal end to end (docs/interface.md §8, docs/reliability.md L2-L4): the real daemon
downloads from the Promo Only simulator; the test then plays the DJ's software and mishaps."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mutagen.id3 import GEOB, ID3, TIT2

from pooldaemon.config import Config
from pooldaemon.control.client import ControlClient
from pooldaemon.sim.promoonly import PromoOnlySim
from tests.conftest import library_files, started_daemon

UNFINISHED = {"queued", "resolving", "downloading", "verifying"}


class Running:
    def __init__(self, config: Config, client: ControlClient, sim: PromoOnlySim) -> None:
        self.config = config
        self.client = client
        self.sim = sim

    async def until(self, what: str, check: Any, timeout_s: float = 30.0) -> Any:
        """Poll `check()` until it returns something true (a deadline, no fixed sleep)."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    got = await check()
                    if got:
                        return got
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def library(self, **query: str) -> dict[str, Any]:
        return dict(await self.client.get("/v1/library", query))

    async def jobs(self) -> list[dict[str, Any]]:
        return list((await self.client.get("/v1/jobs"))["items"])


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with (
        PromoOnlySim(tracks=4, seed="heal") as sim,
        started_daemon(
            tmp_path, sim.config_toml("promoonly"), "", "[library]", 'missing = "deleted"'
        ) as (config, _, client),
    ):
        yield Running(config, client, sim)


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0xFF  # inside the audio, away from any tag block
    path.write_bytes(bytes(data))


async def test_audit_and_heal(running: Running) -> None:
    ids = running.sim.track_ids
    answer = await running.client.post("/v1/jobs", {"refs": [f"promoonly:{i}" for i in ids]})
    assert len(answer["accepted"]) == 4

    async def all_done() -> list[dict[str, Any]] | None:
        jobs = await running.jobs()
        if len(jobs) == 4 and not any(j["state"] in UNFINISHED for j in jobs):
            return jobs
        return None

    jobs = await running.until("downloads", all_done)
    assert all(j["state"] == "done" for j in jobs), [j["error"] for j in jobs]

    async def checksummed() -> dict[str, Any] | None:
        lib = await running.library()
        ok = lib["total"] == 4 and all(i["audio_hash"] and i["song"] for i in lib["items"])
        return lib if ok else None

    # The background pass fills in every entry's song and audio checksum after the download.
    lib = await running.until("audio checksums", checksummed)
    by_id = {item["id"]: item for item in lib["items"]}
    assert set(by_id) == {str(i) for i in ids}
    item = by_id[str(ids[0])]
    assert set(item) == {
        "ref", "pool", "id", "path", "state", "song", "version",
        "size_bytes", "audio_hash", "added", "checked",
    }  # fmt: skip
    assert item["song"] == "rageagainstthemachine/sleepnowinthefire"
    paths = {i: Path(by_id[str(i)]["path"]) for i in ids}
    original = {i: paths[i].read_bytes() for i in ids}

    # The simulator serves MP4 video and MP3 audio in turn.
    flipped, retagged, deleted, cut = ids
    assert [paths[i].suffix for i in ids] == [".mp4", ".mp3", ".mp4", ".mp3"]
    # docs/reliability.md L2: Serato writes its analysis and the DJ fixes the title.
    tags = ID3(paths[retagged])
    tags.add(GEOB(desc="Serato Analysis", mime="application/octet-stream", data=os.urandom(512)))
    tags.add(TIT2(text="Fixed Title"))
    tags.save(paths[retagged])
    # L3: one file cut short, one with flipped audio bytes; L4: one deleted by the user.
    with paths[cut].open("r+b") as fh:
        fh.truncate(len(original[cut]) - 3000)
    flip(paths[flipped])
    paths[deleted].unlink()

    audit = await running.client.post("/v1/library/audit", {"full": False})
    assert audit == {"checked": 4, "ok": 1, "deleted": 1, "lost": 2}
    states = {i["id"]: i["state"] for i in (await running.library())["items"]}
    assert states == {
        str(retagged): "downloaded",
        str(cut): "lost",
        str(flipped): "lost",
        str(deleted): "deleted",
    }
    status = await running.client.get("/v1/status")
    assert status["library"]["last_audit"]["lost"] == 2
    assert status["library"]["states"] == {"downloaded": 1, "lost": 2, "deleted": 1}
    # A full audit reads every file: the retagged one is still fine.
    assert await running.client.post("/v1/library/audit", {"full": True}) == {
        "checked": 1,
        "ok": 1,
        "deleted": 0,
        "lost": 0,
    }

    healing = await running.client.post("/v1/library/heal")
    assert sorted(h["path"] for h in healing["requested"]) == sorted(
        str(paths[i]) for i in (cut, flipped)
    )

    async def healed() -> bool:
        lib = await running.library()
        return lib["total"] == 4 and not any(i["state"] == "lost" for i in lib["items"])

    await running.until("heal", healed)
    for i in (cut, flipped):
        # Back at the same path, byte for byte what the pool sent the first time.
        assert paths[i].read_bytes() == original[i]
    # Promo Only was asked to allow each lost track again, once, with a reason.
    asked = [t for r in running.sim.redownloads for t in r["trackids"]]
    assert sorted(asked) == sorted([cut, flipped])
    assert all(r["reason"] for r in running.sim.redownloads)
    # Nothing else in the download folder: the healed copies replaced the damaged ones.
    assert library_files(running.config.daemon.download_dir) == sorted(
        paths[i] for i in (retagged, cut, flipped)
    )

    # Healing again asks nothing; the deleted file is never fetched again on its own.
    again = await running.client.post("/v1/library/heal")
    assert again == {"requested": [], "skipped": []}
    assert len(running.sim.redownloads) == 2
    assert not paths[deleted].exists()
    assert sum(j["ref"] == f"promoonly:{deleted}" for j in await running.jobs()) == 1
    after = await running.client.post("/v1/library/audit", {"full": True})
    assert after == {"checked": 3, "ok": 3, "deleted": 0, "lost": 0}
    digest = {i: hashlib.sha256(paths[i].read_bytes()).hexdigest() for i in (cut, flipped)}
    assert digest == {i: hashlib.sha256(original[i]).hexdigest() for i in (cut, flipped)}
