"""Exports from a real `pooldaemon run` against the simulated pools (docs/interface.md §9).

The rekordbox XML is read back with pyrekordbox, a reader we did not write; the M3U8 lines must
resolve to files; the file names come from docs/formats.md; the state database is opened only
while the daemon is stopped.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pyrekordbox.rbxml import Node, RekordboxXml

from pooldaemon.control.client import ControlClient
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.promoonly import PromoOnlySim
from tests.conftest import DaemonProcess, answers_status, clean_env, short_dir

UNFINISHED = {"queued", "resolving", "downloading", "verifying"}
BESIDE_LOG = "pooldaemon's is beside it"


class Setup:
    """Simulators, a config for them, and the daemon processes started from it."""

    def __init__(self, root: Path, crateq: CrateQSim, promo: PromoOnlySim) -> None:
        self.root = root
        self.crateq = crateq
        self.promo = promo
        self.sock_dir = short_dir()
        self.socket = self.sock_dir / "c.sock"
        self.library = root / "library"
        self.state = root / "state"
        self.rekordbox = root / "DJ" / "rekordbox.xml"
        self.playlists = self.library / "Playlists"  # the default m3u8_dir
        self.config = root / "config.toml"
        self.daemons: list[DaemonProcess] = []
        self.config.write_text(
            "\n".join(
                [
                    "[daemon]",
                    f"download_dir = {json.dumps(str(self.library))}",
                    f"state_dir = {json.dumps(str(self.state))}",
                    f"socket_path = {json.dumps(str(self.socket))}",
                    'chunk_size = "256 KiB"',
                    'log_format = "json"',
                    "",
                    "[exports]",
                    f"rekordbox_xml = {json.dumps(str(self.rekordbox))}",
                    "",
                    crateq.config_toml("crateq"),
                    promo.config_toml("promoonly"),
                ]
            )
        )
        self.config.chmod(0o600)

    async def start(self) -> DaemonProcess:
        """A daemon whose socket answers; waited for without blocking the simulators' loop."""
        daemon = DaemonProcess(self.config, clean_env())
        self.daemons.append(daemon)
        async with asyncio.timeout(30):
            while not await asyncio.to_thread(answers_status, self.socket):
                assert daemon.proc.poll() is None, daemon.stderr()
                await asyncio.sleep(0.05)
        return daemon

    async def stop(self, daemon: DaemonProcess) -> None:
        daemon.send(signal.SIGTERM)
        assert await asyncio.to_thread(daemon.wait, 15) == 0, daemon.stderr()

    def cleanup(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with (
        CrateQSim(records=40, seed="exports") as crateq,
        PromoOnlySim(tracks=4, seed="exports") as promo,
    ):
        made = Setup(tmp_path, crateq, promo)
        try:
            yield made
        finally:
            made.cleanup()


async def _settled(client: ControlClient, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(60):
        while True:
            jobs = (await client.get("/v1/jobs"))["items"]
            if len(jobs) >= count and not any(j["state"] in UNFINISHED for j in jobs):
                return list(jobs)
            await asyncio.sleep(0.05)


async def _download(setup: Setup, crateq_n: int, promo_n: int) -> list[dict[str, Any]]:
    """Queue tracks in both pools, sync, and wait until every job is done."""
    setup.crateq.add_to_queue(setup.crateq.catalog.ids()[:crateq_n])
    setup.promo.add_to_queue(setup.promo.track_ids[:promo_n])
    async with ControlClient(setup.socket) as client:
        await client.post("/v1/pools/crateq/sync", {"full": True})
        await client.post("/v1/pools/promoonly/sync", {"full": True})
        jobs = await _settled(client, crateq_n + promo_n)
    assert all(j["state"] == "done" for j in jobs), jobs
    return jobs


def _xml_paths(xml: RekordboxXml) -> set[Path]:
    # pyrekordbox strips "file://localhost/" and with it a POSIX path's leading "/".
    return {Path("/" + track["Location"]) for track in xml.get_tracks()}


def _playlists(xml: RekordboxXml) -> dict[tuple[str, ...], set[Path]]:
    """{path of names under ROOT: files}, folders walked at any depth."""
    by_id = {track["TrackID"]: Path("/" + track["Location"]) for track in xml.get_tracks()}
    found = {}

    def walk(node: Node, path: tuple[str, ...]) -> None:
        for child in node.get_playlists():
            if child.is_folder:
                walk(child, (*path, child.name))
            else:
                found[(*path, child.name)] = {by_id[i] for i in child.get_tracks()}

    walk(xml.get_playlist(), ())
    return found


async def _wait_for(condition: Any, deadline: float, what: str) -> None:
    """Until `condition()` holds, by wall-clock `deadline`."""
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"{what}: not by the deadline")
        await asyncio.sleep(0.05)


def _lists(path: Path, files: set[Path]) -> bool:
    try:
        return _xml_paths(RekordboxXml(path)) == files
    except Exception:  # not there yet; ours is replaced atomically, so never torn
        return False


async def _poolctl_export(setup: Setup) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pooldaemon.cli.poolctl",
        "--socket",
        str(setup.socket),
        "--json",
        "export",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    answer: dict[str, Any] = json.loads(out)
    return answer


async def test_the_rekordbox_xml_follows_downloads_and_poolctl_export_lists_the_files(
    setup: Setup,
) -> None:
    await setup.start()
    jobs = await _download(setup, crateq_n=3, promo_n=2)
    files = {Path(j["path"]) for j in jobs}
    # docs/interface.md §9: within 10 s of the batch finishing.
    await _wait_for(
        lambda: _lists(setup.rekordbox, files),
        max(j["updated"] for j in jobs) + 10,
        "rekordbox XML listing every downloaded file",
    )
    xml = RekordboxXml(setup.rekordbox)
    assert xml.num_tracks == 5
    crateq = {Path(j["path"]) for j in jobs if j["pool"] == "crateq"}
    promo = {Path(j["path"]) for j in jobs if j["pool"] == "promoonly"}
    assert _playlists(xml) == {
        ("Pools", "crateq"): crateq,
        ("Pools", "promoonly"): promo,
        # docs/interface.md §9: at the top, beside the Pools folder.
        ("New this week",): files,
    }
    for track in xml.get_tracks():
        job = next(j for j in jobs if Path(j["path"]) == Path("/" + track["Location"]))
        assert track["Name"] == job["title"] and track["Artist"] == job["artist"]
        assert track["Size"] == Path(job["path"]).stat().st_size

    answer = await _poolctl_export(setup)
    m3u8 = {
        setup.playlists / "Pools - crateq.m3u8",
        setup.playlists / "Pools - promoonly.m3u8",
        setup.playlists / "New this week.m3u8",
    }
    assert sorted(answer) == ["written"]
    assert sorted((w["format"], w["path"]) for w in answer["written"]) == sorted(
        [("rekordbox", str(setup.rekordbox))] + [("m3u8", str(p)) for p in m3u8]
    )
    # Every M3U8 entry resolves (relative to the playlist) to a downloaded file.
    listed = set()
    for playlist in m3u8:
        lines = playlist.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "#EXTM3U"
        for line in lines[1:]:
            if not line.startswith("#"):
                target = (playlist.parent / line).resolve()
                assert target.is_file()
                listed.add(target)
    assert listed == {f.resolve() for f in files}


async def test_a_hand_edited_xml_is_kept_and_a_restart_keeps_what_we_wrote(
    setup: Setup,
) -> None:
    daemon = await setup.start()
    jobs = await _download(setup, crateq_n=1, promo_n=1)
    files = {Path(j["path"]) for j in jobs}
    await _wait_for(
        lambda: _lists(setup.rekordbox, files), time.time() + 15, "first export after downloads"
    )
    await setup.stop(daemon)

    # A restart: our own file is recognised as ours (the digest survived), so it is replaced.
    daemon = await setup.start()
    answer = await _poolctl_export(setup)
    assert {"format": "rekordbox", "path": str(setup.rekordbox)} in answer["written"]
    assert not (setup.rekordbox.parent / "rekordbox (pooldaemon).xml").exists()
    assert BESIDE_LOG not in daemon.stderr()

    # The DJ edits the file by hand: it stays as it is, ours goes beside it, the log says so.
    edited = setup.rekordbox.read_text(encoding="utf-8").replace(
        'Name="crateq"', 'Name="my crateq"'
    )
    setup.rekordbox.write_text(edited, encoding="utf-8")
    beside = setup.rekordbox.parent / "rekordbox (pooldaemon).xml"
    for _ in range(2):
        answer = await _poolctl_export(setup)
        assert {"format": "rekordbox", "path": str(beside)} in answer["written"]
        assert setup.rekordbox.read_text(encoding="utf-8") == edited
        assert _xml_paths(RekordboxXml(beside)) == files
    logged = [line for line in daemon.stderr().splitlines() if BESIDE_LOG in line]
    assert len(logged) == 1, logged  # once, not on every export
    assert json.loads(logged[0])["file"] == str(setup.rekordbox)

    # Still so after a restart: beside again, and not logged again.
    await setup.stop(daemon)
    daemon = await setup.start()
    answer = await _poolctl_export(setup)
    assert {"format": "rekordbox", "path": str(beside)} in answer["written"]
    assert setup.rekordbox.read_text(encoding="utf-8") == edited
    assert BESIDE_LOG not in daemon.stderr()


async def test_only_files_in_the_library_are_listed(setup: Setup) -> None:
    daemon = await setup.start()
    jobs = await _download(setup, crateq_n=3, promo_n=0)
    await setup.stop(daemon)
    deleted, failed, kept = (Path(j["path"]) for j in jobs)
    adopted = setup.library / "mine" / "adopted track.mp3"
    adopted.parent.mkdir()
    shutil.copyfile(kept, adopted)
    with sqlite3.connect(setup.state / "state.db") as db:
        db.execute("UPDATE library SET state = 'deleted' WHERE path = ?", (str(deleted),))
        db.execute("UPDATE library SET state = 'failed' WHERE path = ?", (str(failed),))
        # A file that was on disk before pooldaemon, matched to a catalog track (the library's
        # `adopted` state): listed like a download.
        db.execute(
            "INSERT INTO library (pool, kind, item_id, format, path, size, sha256, state, "
            "created, updated) VALUES ('crateq', 'track', '999999', '', ?, ?, '', 'adopted', "
            "?, ?)",
            (str(adopted), adopted.stat().st_size, time.time(), time.time()),
        )
    await setup.start()
    answer = await _poolctl_export(setup)
    assert {"format": "rekordbox", "path": str(setup.rekordbox)} in answer["written"]
    xml = RekordboxXml(setup.rekordbox)
    assert _xml_paths(xml) == {kept, adopted}
    assert _playlists(xml)[("Pools", "crateq")] == {kept, adopted}
    assert not (setup.playlists / "Pools - promoonly.m3u8").exists()
