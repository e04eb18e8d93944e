"""The whole daemon against the CrateQ simulator with the default settings a DJ starts from:
files named by the default template without a repeated version, tagged with the pool and the
ref, read back with mutagen and (when installed) exiftool and ffprobe. docs/interface.md §9.
(The simulator's MP4s are bare `ftyp` + `mdat`, which no tagger writes into; MP4 atoms are
read back in tests/downloader/test_tags_readers.py from a file ffmpeg made.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mutagen.id3
import pytest

from pooldaemon.config import Config
from pooldaemon.control.client import ControlClient
from pooldaemon.sim.crateq import CrateQSim
from tests.conftest import started_daemon
from tests.readers import EXIFTOOL, FFPROBE, ffprobe_tags

UNFINISHED = {"queued", "resolving", "downloading", "verifying"}
# Characters a name cannot keep as they are (docs/interface.md §5): records with them are left
# to the sanitizing tests, so the expected names here are the pool's text unchanged.
_ALTERED = set('/\\<>:"|?*')


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Config, ControlClient, CrateQSim]]:
    async with (
        CrateQSim(records=600, seed="names-e2e") as crateq,
        started_daemon(
            tmp_path,
            "[web]",
            'listen = "127.0.0.1:0"',
            "",
            crateq.config_toml("crateq"),
            chunk_size="256 KiB",
            min_free_space="0",
        ) as (config, _, client),
    ):
        assert config.daemon.write_tags  # the default
        yield config, client, crateq


async def _settle(client: ControlClient, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(30):
        while True:
            jobs: list[dict[str, Any]] = (await client.get("/v1/jobs"))["items"]
            if len(jobs) >= count and not any(j["state"] in UNFINISHED for j in jobs):
                return jobs
            await asyncio.sleep(0.05)


def _pick(crateq: CrateQSim, kind: str, tool: str) -> dict[str, Any]:
    for record in crateq.catalog.records():
        text = f"{record['artist']}{record['title']}{record['genre']}"
        if record["kind"] == kind and record["tool"] == tool and not _ALTERED & set(text):
            return record
    raise AssertionError(f"no {kind} record with tool {tool} in the simulated catalog")


def _exiftool(path: Path) -> dict[str, Any]:
    assert EXIFTOOL is not None
    out = subprocess.run(
        [EXIFTOOL, "-a", "-G1", "-j", str(path)], capture_output=True, check=True, timeout=60
    ).stdout
    found: dict[str, Any] = json.loads(out)[0]
    return found


async def test_downloads_are_named_without_repeats_and_carry_their_ref(
    daemon: tuple[Config, ControlClient, CrateQSim],
) -> None:
    config, client, crateq = daemon
    audio = _pick(crateq, "mp3", "Xtendz")  # "Title [Clean Xtendz]"
    video = _pick(crateq, "mp4", "Xtendz")  # "Title [Xtendz] - FHD - Dirty"
    crateq.add_to_queue([audio["mediaId"], video["mediaId"]])
    await client.post("/v1/pools/crateq/sync", {"full": True})
    jobs = {job["ref"]: job for job in await _settle(client, 2)}
    root = config.daemon.download_dir
    for record in (audio, video):
        ref = f"crateq:{record['mediaId']}"
        job = jobs[ref]
        assert job["state"] == "done", job["error"]
        # The title already says "Xtendz": the default template adds no "(Xtendz)".
        expected = f"crateq/{record['genre']}/{record['artist']} - {record['title']}"
        assert Path(job["path"]) == root / f"{expected}.{record['kind']}"
        assert Path(job["path"]).name.count("Xtendz") == 1

    mp3 = Path(jobs[f"crateq:{audio['mediaId']}"]["path"])
    tags = mutagen.id3.ID3(mp3)
    assert tags.version == (2, 3, 0)
    assert tags["TXXX:POOLDAEMON_REF"].text == [f"crateq:{audio['mediaId']}"]
    assert [c.text for c in tags.getall("COMM")] == [["crateq via pooldaemon"]]
    assert tags["TPE1"].text == [audio["artist"]]
    assert tags["TIT2"].text == [audio["title"]]
    assert tags["TCON"].text == [audio["genre"]]
    assert tags["TBPM"].text == [str(audio["bpm"])]

    if EXIFTOOL is not None:
        found = _exiftool(mp3)
        assert found["ID3v2_3:UserDefinedText"] == f"(POOLDAEMON_REF) crateq:{audio['mediaId']}"
        assert found["ID3v2_3:Comment"] == "crateq via pooldaemon"
    if FFPROBE is not None:
        probed = ffprobe_tags(mp3)
        assert probed["POOLDAEMON_REF"] == f"crateq:{audio['mediaId']}"
        assert probed["artist"] == audio["artist"]
