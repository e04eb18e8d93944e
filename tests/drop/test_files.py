"""The drop folder's filesystem side: reading once, and names that leave room for the result."""

from __future__ import annotations

from pathlib import Path

import pooldaemon.drop.files as files_mod


def write(path: Path, data: bytes | str) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.write_bytes(raw)
    return raw


def test_snapshot_rereads_nothing_that_changed_since_it_looked_stable(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write(path, "crateq:1\n")
    seen = files_mod._sig(path.lstat())
    with path.open("ab") as fh:
        fh.write(b"crateq:2\n")  # the writer came back after the stability wait
    assert files_mod._snapshot(path, seen) is None
    snap = files_mod._snapshot(path, files_mod._sig(path.lstat()))
    assert snap is not None and snap.data == b"crateq:1\ncrateq:2\n"


def test_long_names_keep_room_for_the_suffix_and_result_name(tmp_path: Path) -> None:
    name = "é" * 124 + ".txt"  # 252 bytes, the most a name here can be with ".txt"
    (tmp_path / "processed").mkdir()
    first = files_mod.free_dest(tmp_path, "processed", name)
    assert first.endswith(".txt") and len((first.split("/")[1] + ".result.json").encode()) <= 255
    (tmp_path / first).write_text("taken")
    second = files_mod.free_dest(tmp_path, "processed", name)
    assert second.endswith(" (2).txt")
    assert len((second.split("/")[1] + ".result.json").encode()) <= 255
    reserved = {second}
    assert files_mod.free_dest(tmp_path, "processed", name, reserved).endswith(" (3).txt")
