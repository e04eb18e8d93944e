"""`poolctl library …` and `poolctl dupes` against a real `pooldaemon run` (interface §8)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result
from conftest import ConfigFactory, DaemonFactory

from pooldaemon.cli.poolctl import main as poolctl
from pooldaemon.sim.media import write_media
from pooldaemon.store import Store
from pooldaemon.store import library as store_library


def ctl(*args: str) -> Result:
    return CliRunner().invoke(poolctl, list(args))


def _seed(state_dir: Path, music: Path) -> None:
    """Three adopted entries, two holding one song+version, written by a second connection."""

    async def go() -> None:
        store = await Store.open(state_dir / "state.db")
        try:
            rows = []
            for n, key in enumerate(("a/one", "a/one", "b/two")):
                path = music / f"f{n}.mp3"
                rows.append(
                    {
                        "pool": "crateq",
                        "kind": "track",
                        "item_id": str(n + 1),
                        "path": str(path),
                        "size": path.stat().st_size,
                        "song_key": key,
                        "version": "clean",
                        "length_s": None,
                        "mtime_ns": path.stat().st_mtime_ns,
                        "inode": path.stat().st_ino,
                    }
                )
            assert await store_library.record_adopted(store, rows) == 3
        finally:
            await store.close()

    asyncio.run(go())


def test_library_commands(
    config_factory: ConfigFactory, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    for n in range(3):
        write_media(music / f"f{n}.mp3", "mp3", f"s{n}", 8000)
    (music / "empty.mp3").write_bytes(b"")
    running = daemon_factory(config_factory())
    sock = ["--socket", str(running.socket_path)]

    preview = ctl(*sock, "--json", "library", "adopt", str(music), "--dry-run")
    assert preview.exit_code == 0, preview.output
    report = json.loads(preview.output)
    assert (report["scanned"], report["matched"], report["unmatched"]) == (4, 0, 3)
    assert report["problems"] == [
        {"path": str(music / "empty.mp3"), "reason": "empty file (0 bytes)"}
    ]
    shown = ctl(*sock, "library", "adopt", str(music), "--dry-run")
    assert "4 scanned: 0 matched, 3 unmatched, 0 ambiguous, 1 problems" in shown.output
    assert "empty file (0 bytes)" in shown.output

    _seed(running.state_dir, music)
    listed = ctl(*sock, "--json", "library", "--limit", "1", "--all")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["total"] == 3 and len(data["items"]) == 3
    assert {i["state"] for i in data["items"]} == {"adopted"}
    table = ctl(*sock, "--wide", "library", "--state", "adopted")
    assert table.exit_code == 0 and "crateq:3" in table.output and "3 adopted" in table.output
    assert ctl(*sock, "library", "--state", "gone").exit_code == 2

    dupes = json.loads(ctl(*sock, "--json", "dupes").output)
    assert [(g["song"], len(g["items"])) for g in dupes["items"]] == [("a/one", 2)]

    (music / "f2.mp3").unlink()
    audited = ctl(*sock, "library", "audit")
    assert audited.exit_code == 0 and "3 checked: 2 ok, 1 deleted, 0 lost" in audited.output
    healed = json.loads(ctl(*sock, "--json", "library", "heal").output)
    assert healed == {"requested": [], "skipped": []}
    status = ctl(*sock, "status")
    assert "library: 2 adopted, 1 deleted; last audit" in " ".join(status.output.split())
