"""The drop folder (docs/interface.md §3, docs/reliability.md F1, F2, C5): real directories, SQLite,
watchfiles."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import pooldaemon.drop.files as files_mod
import pooldaemon.drop.parse as parse_mod
from pooldaemon.drop import DropReport, DropWatcher, SubmitOutcome
from pooldaemon.drop.parse import MAX_FILE_BYTES, idempotency_key
from pooldaemon.events import EventBus
from pooldaemon.models import Request
from pooldaemon.store import drops
from pooldaemon.store.db import Store
from tests.another_user import NOBODY

POOLS: dict[str, list[str]] = {
    "crateq": ["track"],
    "promoonly": ["track"],
    "harvest": ["track", "playlist", "album", "favourites"],
}
CONFIGURED = "configured pools: crateq, harvest, promoonly"


class Crash(BaseException):
    """Stands for kill -9: nothing after the point it is raised at runs."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeEngine:
    """submit() backed by real dicts, honouring the idempotency key as the engine must.

    The key's outcome is stored together with the job it created (one "transaction"), so a
    replay with the same key returns the same job and never creates a second one.
    """

    def __init__(self, refuse: Mapping[str, str] | None = None) -> None:
        self.refuse = dict(refuse or {})
        self.jobs: dict[int, Request] = {}
        self.by_item: dict[tuple[str, str, str | None], int] = {}
        self.keys: dict[str, list[SubmitOutcome]] = {}
        self.calls: list[tuple[list[Request], str]] = []
        self.crash_when_jobs: int | None = None  # crash right after the Nth job is committed
        self.failing: set[str] = set()  # refs for which the engine is "unavailable"

    async def submit(self, requests: list[Request], key: str) -> list[SubmitOutcome]:
        self.calls.append((requests, key))
        if key in self.keys:
            return self.keys[key]
        outcomes: list[SubmitOutcome] = []
        for req in requests:
            if req.ref in self.failing:
                raise RuntimeError("engine unavailable")
            if req.pool in self.refuse:
                outcomes.append(SubmitOutcome(reason=self.refuse[req.pool]))
                continue
            item = (req.pool, req.kind, req.item_id)
            if not req.redownload and item in self.by_item:
                outcomes.append(SubmitOutcome(job=self.by_item[item]))
                continue
            job = len(self.jobs) + 1
            self.jobs[job] = req
            self.by_item[item] = job
            outcomes.append(SubmitOutcome(job=job))
        self.keys[key] = outcomes
        if self.crash_when_jobs is not None and len(self.jobs) >= self.crash_when_jobs:
            self.crash_when_jobs = None
            raise Crash("after the engine committed")
        return outcomes

    def job(self, ref: str, *, redownload: bool = False) -> int:
        found = [j for j, r in self.jobs.items() if r.ref == ref and r.redownload == redownload]
        assert len(found) == 1, (ref, found)
        return found[0]


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    path = tmp_path / "Requests"
    path.mkdir()
    return path


def make_watcher(
    drop_dir: Path,
    store: Store,
    engine: FakeEngine,
    clock: FakeClock | None = None,
    events: EventBus | None = None,
    **kw: Any,
) -> DropWatcher:
    return DropWatcher(
        drop_dir,
        store,
        engine.submit,
        lambda: POOLS,
        events or EventBus(),
        force_polling=kw.pop("force_polling", False),
        rescan_interval_s=kw.pop("rescan_interval_s", 30.0),
        stable_s=kw.pop("stable_s", 1.0),
        clock=clock or time.monotonic,
        **kw,
    )


async def settle(watcher: DropWatcher, clock: FakeClock) -> list[DropReport]:
    """First pass sees the files, the second (stable_s later) handles them."""
    assert await watcher.scan() == []
    clock.advance(1.0)
    return await watcher.scan()


def write(path: Path, data: bytes | str) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.write_bytes(raw)
    return raw


def result(drop_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((drop_dir / "processed" / f"{name}.result.json").read_text())
    return data


def errors(drop_dir: Path, name: str) -> str:
    return (drop_dir / "rejected" / f"{name}.errors.txt").read_text(encoding="utf-8")


def assert_kept(drop_dir: Path, originals: Mapping[str, bytes]) -> None:
    """Nothing lost: every dropped file's bytes are still somewhere under drop_dir."""
    contents: list[bytes] = []
    for root, _dirs, files in os.walk(drop_dir):
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or name.endswith((".result.json", ".errors.txt")):
                continue
            if stat.S_ISREG(path.lstat().st_mode):
                contents.append(path.read_bytes())
    for name, data in originals.items():
        assert data in contents, f"{name}: its bytes are nowhere under {drop_dir}"


def only_file(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- the corpus: each bad file with its expected result, and nothing lost -------------------


async def test_corpus_of_bad_files(drop: Path, store: Store, tmp_path: Path) -> None:
    engine = FakeEngine(refuse={"promoonly": "pool 'promoonly' is disabled in the config"})
    clock = FakeClock()
    events = EventBus()
    watcher = make_watcher(drop, store, engine, clock, events)
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash:19000:0:99999:7:::\n")

    inputs: dict[str, bytes] = {}

    def put(name: str, data: bytes | str) -> None:
        inputs[name] = write(drop / name, data)

    put("binary.txt", bytes(range(256)) * 8)
    put("photo.txt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    put("utf16.txt", "crateq:1\ncrateq:2\n".encode("utf-16"))
    put("utf16-nobom.txt", "crateq:1\ncrateq:2\n".encode("utf-16-le"))
    put("latin1.txt", "# Café list\ncrateq:1\n".encode("latin-1"))
    put("controls.txt", "\x01\x02\x03\x04\x05\x06\x07\x08\x1b\x1c crateq:1")
    put("big.txt", b"crateq:570291\n" * (2 * MAX_FILE_BYTES // 14 + 1))
    put("trailing.json", '[{"pool": "crateq", "id": "1"},]')
    put("comments.json", '// my list\n[{"pool": "crateq", "id": "1"}]')
    put("object.json", '{"pool": "crateq", "id": "1"}')
    put("nan.json", '[{"pool": "crateq", "id": NaN}]')
    put("empty-list.json", "[]")
    put(
        "types.json",
        json.dumps(
            [
                {"pool": 5, "id": "1"},
                {"pool": "crateq", "id": True},
                {"pool": "crateq", "id": [1]},
                "crateq:1",
                {"pool": "crateq", "id": "1", "colour": "red"},
            ]
        ),
    )
    put("dupkey.json", '[{"pool": "crateq", "id": "1", "id": "2"}]')
    put("unknown.txt", "nosuchpool:1\n")
    put("unknown.json", '[{"pool": "nosuchpool", "id": "1"}]')
    put("empty.txt", b"")
    put("only-comments.txt", "# nothing yet\n\n   # still nothing\n")
    put("two-per-line.txt", "crateq:1 crateq:2\n")
    put("refused-pool.txt", "promoonly:374210\n")
    os.symlink(secret, drop / "secret.txt")
    os.mkfifo(drop / "pipe.txt")
    left_alone = {
        ".hidden.txt": b"crateq:1\n",
        "draft.txt.tmp": b"crateq:1\n",
        "song.txt.part": b"crateq:1\n",
        "file.json.crdownload": b"[]",
        "backup.txt~": b"crateq:1\n",
        "notes.md": b"crateq:1\n",
    }
    for name, data in left_alone.items():
        put(name, data)

    async with events.subscribe() as stream:
        reports = await settle(watcher, clock)
        published = [await anext(stream) for _ in reports]

    handled = {r.file: r for r in reports}
    assert set(handled) == set(inputs) - set(left_alone) | {"secret.txt", "pipe.txt"}
    assert {e["file"] for e in published} == set(handled)
    assert all(e["type"] == "drop" for e in published)
    # Nothing was a valid request, so nothing was queued and everything went to rejected/.
    assert engine.jobs == {}
    assert all(r.moved_to == f"rejected/{r.file}" and r.accepted == 0 for r in reports)
    assert not (drop / "processed").exists()
    for name, data in left_alone.items():
        assert (drop / name).read_bytes() == data, f"{name} must be left alone"
    for name in handled:
        assert not (drop / name).exists() and not (drop / name).is_symlink()

    whole_file = {
        "binary.txt": "binary data (it contains NUL bytes), not a text file of requests",
        "photo.txt": "binary data (it contains NUL bytes), not a text file of requests",
        "utf16.txt": "UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8",
        "utf16-nobom.txt": "UTF-16 text without a byte-order mark; save it as UTF-8",
        "latin1.txt": "not UTF-8: byte 0xE9 on line 1 is not valid UTF-8 (Latin-1 or "
        "Windows-1252 text?); save it as UTF-8",
        "controls.txt": "binary data (mostly non-text characters), not a text file of requests",
        "big.txt": f"it is larger than 1 MiB ({len(inputs['big.txt']):,} bytes or more), so it "
        "was not read; split the requests into smaller files",
        "trailing.json": "not valid JSON: Expecting value: line 1 column 32 (char 31) "
        "(JSON allows no trailing commas)",
        "comments.json": "not valid JSON: Expecting value: line 1 column 1 (char 0) "
        "(JSON allows no comments)",
        "object.json": 'a .json request file holds a list of objects such as [{"pool": '
        '"crateq", "id": "570291"}]; this one holds an object',
        "nan.json": "not valid JSON: NaN is not a JSON value",
        "empty-list.json": "the list is empty: no requests",
        "empty.txt": "the file is empty: no requests",
        "only-comments.txt": "no requests: only blank lines and comments",
        "secret.txt": f"it is a symbolic link (to {str(secret)!r}); links are never followed, "
        "so it was not read: drop the file itself",
        "pipe.txt": "it is not a regular file but a named pipe",
    }
    for name, problem in whole_file.items():
        assert handled[name].error == problem
        assert errors(drop, name) == (
            f"{name}: not used, nothing was queued: {problem}\nThe file was moved here unchanged.\n"
        ), name

    assert errors(drop, "types.json") == (
        "types.json: no valid request in this file, nothing was queued.\n"
        "The file was moved here unchanged.\n\n"
        'line 1: "pool" must be a non-empty string\n'
        '    {"pool": 5, "id": "1"}\n'
        'line 2: "id" must be a string or a number\n'
        '    {"pool": "crateq", "id": true}\n'
        'line 3: "id" must be a string or a number\n'
        '    {"pool": "crateq", "id": [1]}\n'
        "line 4: expected an object, got str\n"
        '    "crateq:1"\n'
        "line 5: unknown field(s): colour\n"
        '    {"pool": "crateq", "id": "1", "colour": "red"}\n'
    )
    assert handled["types.json"].rejected == 5
    assert "line 1: key 'id' given twice\n" in errors(drop, "dupkey.json")
    # docs/reliability.md F1: an unknown pool's error lists the configured pools.
    assert errors(drop, "unknown.txt").endswith(
        f"line 1: 'nosuchpool:1': unknown pool 'nosuchpool' ({CONFIGURED})\n    nosuchpool:1\n"
    )
    assert f"unknown pool 'nosuchpool' ({CONFIGURED})" in errors(drop, "unknown.json")
    assert "one reference per line" in errors(drop, "two-per-line.txt")
    # A reason from the submit side is reported like a parse error.
    assert errors(drop, "refused-pool.txt").endswith(
        "line 1: pool 'promoonly' is disabled in the config\n    promoonly:374210\n"
    )

    # The symlink itself moved; its target was neither read, moved nor changed.
    link = drop / "rejected" / "secret.txt"
    assert link.is_symlink() and os.readlink(link) == str(secret)
    assert secret.read_text() == "root:$6$hash:19000:0:99999:7:::\n"
    assert "root:$6$" not in errors(drop, "secret.txt")
    assert stat.S_ISFIFO((drop / "rejected" / "pipe.txt").lstat().st_mode)
    assert_kept(drop, inputs)
    # The watcher is still fine: a good file dropped afterwards is accepted.
    write(drop / "good.txt", "crateq:9\n")
    reports = await settle(watcher, clock)
    assert [(r.file, r.accepted) for r in reports] == [("good.txt", 1)]


async def test_file_of_another_user_is_refused(drop: Path, store: Store) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user (uid 65534)")
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    data = write(drop / "theirs.txt", "crateq:1\n")
    os.chown(drop / "theirs.txt", NOBODY, NOBODY)
    [report] = await settle(watcher, clock)
    problem = "it belongs to another user (uid 65534); only files of uid 0 are read"
    assert report.error == problem and report.moved_to == "rejected/theirs.txt"
    assert errors(drop, "theirs.txt").startswith(
        f"theirs.txt: not used, nothing was queued: {problem}"
    )
    moved = drop / "rejected" / "theirs.txt"
    assert moved.read_bytes() == data and moved.stat().st_uid == NOBODY
    assert engine.calls == []


# --- good files --------------------------------------------------------------------------


async def test_mixed_lines_partial_acceptance(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    text = (
        "# Friday's set\n"
        "crateq:570291\n"
        "\n"
        "nosuchpool:7\n"
        "promoonly:374210\n"
        "crateq:has space\n"
        "crateq:!!!\n"
        "redownload promoonly:374210 the file was corrupt\n"
        "harvest:favourites\n"
        "harvest:playlist:PL1\n"
        "harvest:album:AL9\n"
        "harvest:track:01f85a9be3d626e0\n"
        "harvest:playlist\n"
        "crateq:570291\n"
    )
    data = write(drop / "requests.txt", text)
    [report] = await settle(watcher, clock)
    assert (report.accepted, report.rejected, report.moved_to) == (8, 4, "processed/requests.txt")
    assert (drop / "processed" / "requests.txt").read_bytes() == data
    assert result(drop, "requests.txt") == {
        "accepted": [
            {"line": 2, "ref": "crateq:570291", "job": engine.job("crateq:570291")},
            {"line": 5, "ref": "promoonly:374210", "job": engine.job("promoonly:374210")},
            {
                "line": 8,
                "ref": "promoonly:374210",
                "job": engine.job("promoonly:374210", redownload=True),
            },
            {"line": 9, "ref": "harvest:favourites", "job": engine.job("harvest:favourites")},
            {"line": 10, "ref": "harvest:playlist:PL1", "job": engine.job("harvest:playlist:PL1")},
            {"line": 11, "ref": "harvest:album:AL9", "job": engine.job("harvest:album:AL9")},
            {
                "line": 12,
                "ref": "harvest:01f85a9be3d626e0",
                "job": engine.job("harvest:01f85a9be3d626e0"),
            },
            # docs/interface.md §3: asked again, it points at the existing job.
            {"line": 14, "ref": "crateq:570291", "job": engine.job("crateq:570291")},
        ],
        "rejected": [
            {
                "line": 4,
                "text": "nosuchpool:7",
                "reason": f"'nosuchpool:7': unknown pool 'nosuchpool' ({CONFIGURED})",
            },
            {
                "line": 6,
                "text": "crateq:has space",
                "reason": "'crateq:has space': one reference per line (or: redownload POOL:ID "
                "reason)",
            },
            {
                "line": 7,
                "text": "crateq:!!!",
                "reason": "'crateq:!!!': '!!!' is not a valid ID",
            },
            {
                "line": 13,
                "text": "harvest:playlist",
                "reason": "'harvest:playlist': playlist needs an ID (harvest:playlist:ID)",
            },
        ],
    }
    redo = engine.jobs[engine.job("promoonly:374210", redownload=True)]
    assert redo.redownload and redo.reason == "the file was corrupt"
    # One submit() call for the file's requests, keyed by content and its first request's line.
    sha = hashlib.sha256(data).hexdigest()
    [(requests, key)] = engine.calls
    assert key == idempotency_key(sha, 2) == f"drop:{sha}:2"
    assert [r.ref for r in requests] == [
        "crateq:570291",
        "promoonly:374210",
        "promoonly:374210",
        "harvest:favourites",
        "harvest:playlist:PL1",
        "harvest:album:AL9",
        "harvest:01f85a9be3d626e0",
        "crateq:570291",
    ]


async def test_json_positions_crlf_bom_and_uppercase(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    inputs = {
        "list.json": write(
            drop / "list.json",
            json.dumps(
                [
                    {"pool": "crateq", "id": "570291"},
                    {"pool": "crateq", "id": 570292},
                    {"pool": "nosuch", "id": "1"},
                    {"pool": "harvest", "kind": "playlist", "id": "PL1"},
                    {"pool": "promoonly", "id": "9", "action": "redownload", "reason": "lost"},
                ]
            ),
        ),
        "crlf.txt": write(drop / "crlf.txt", b"crateq:1\r\n# note\r\ncrateq:2\r\n"),
        "bom.txt": write(drop / "bom.txt", b"\xef\xbb\xbfcrateq:3\n"),
        "UPPER.TXT": write(drop / "UPPER.TXT", "crateq:4\n"),
    }
    reports = {r.file: r for r in await settle(watcher, clock)}
    assert set(reports) == set(inputs)
    assert result(drop, "list.json") == {
        "accepted": [
            {"line": 1, "ref": "crateq:570291", "job": engine.job("crateq:570291")},
            {"line": 2, "ref": "crateq:570292", "job": engine.job("crateq:570292")},
            {"line": 4, "ref": "harvest:playlist:PL1", "job": engine.job("harvest:playlist:PL1")},
            {"line": 5, "ref": "promoonly:9", "job": engine.job("promoonly:9", redownload=True)},
        ],
        "rejected": [
            {
                "line": 3,
                "text": '{"pool": "nosuch", "id": "1"}',
                "reason": f"'nosuch:1': unknown pool 'nosuch' ({CONFIGURED})",
            }
        ],
    }
    assert result(drop, "crlf.txt") == {
        "accepted": [
            {"line": 1, "ref": "crateq:1", "job": engine.job("crateq:1")},
            {"line": 3, "ref": "crateq:2", "job": engine.job("crateq:2")},
        ],
        "rejected": [],
    }
    assert result(drop, "bom.txt")["accepted"] == [
        {"line": 1, "ref": "crateq:3", "job": engine.job("crateq:3")}
    ]
    assert result(drop, "UPPER.TXT")["accepted"][0]["ref"] == "crateq:4"
    assert_kept(drop, inputs)


async def test_name_collision_gets_a_suffix(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    processed = drop / "processed"
    processed.mkdir()
    old = write(processed / "requests.txt", "an older file of the user's\n")
    old_result = write(processed / "requests.txt.result.json", "{}")
    # A free file name whose result name is taken does not count as free either.
    write(processed / "requests (2).txt.result.json", "mine")
    data = write(drop / "requests.txt", "crateq:1\n")
    [report] = await settle(watcher, clock)
    assert report.moved_to == "processed/requests (3).txt"
    assert (processed / "requests (3).txt").read_bytes() == data
    assert result(drop, "requests (3).txt")["accepted"][0]["ref"] == "crateq:1"
    assert (processed / "requests.txt").read_bytes() == old
    assert (processed / "requests.txt.result.json").read_bytes() == old_result
    assert (processed / "requests (2).txt.result.json").read_text() == "mine"
    assert not (processed / "requests (2).txt").exists()
    # The same name dropped again later (new content) is also kept.
    data2 = write(drop / "requests.txt", "crateq:2\n")
    [report] = await settle(watcher, clock)
    assert report.moved_to == "processed/requests (4).txt"
    assert (processed / "requests (4).txt").read_bytes() == data2


async def test_same_content_twice_is_answered_from_the_record(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    text = "crateq:1\nredownload crateq:2 broken\nnosuch:3\n"
    write(drop / "a.txt", text)
    [first] = await settle(watcher, clock)
    calls = len(engine.calls)
    jobs = dict(engine.jobs)
    write(drop / "b.txt", text)  # another name, same bytes
    write(drop / "a.txt", text)  # the same name again, same bytes
    reports = {r.file: r for r in await settle(watcher, clock)}
    assert not first.duplicate and reports["a.txt"].duplicate and reports["b.txt"].duplicate
    assert len(engine.calls) == calls and engine.jobs == jobs  # not submitted again
    assert reports["a.txt"].moved_to == "processed/a (2).txt"
    assert result(drop, "a (2).txt") == result(drop, "b.txt") == result(drop, "a.txt")
    assert result(drop, "b.txt")["accepted"] == [
        {"line": 1, "ref": "crateq:1", "job": engine.job("crateq:1")},
        {"line": 2, "ref": "crateq:2", "job": engine.job("crateq:2", redownload=True)},
    ]
    # A changed file (one comment more) is a new request, and a redownload downloads again.
    write(drop / "c.txt", "# again\n" + text)
    [again] = await settle(watcher, clock)
    assert not again.duplicate
    assert len([r for r in engine.jobs.values() if r.redownload]) == 2


async def test_duplicate_of_a_rejected_file_is_rejected_alike(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    write(drop / "bad.txt", "nosuch:1\n")
    await settle(watcher, clock)
    write(drop / "bad2.txt", "nosuch:1\n")
    [report] = await settle(watcher, clock)
    assert report.moved_to == "rejected/bad2.txt" and report.duplicate
    assert errors(drop, "bad2.txt") == errors(drop, "bad.txt").replace("bad.txt", "bad2.txt")


# --- completeness ---------------------------------------------------------------------------


async def test_half_written_file_is_read_only_once_stable(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    path = drop / "growing.txt"
    with path.open("wb") as fh:
        fh.write(b"crateq:1\ncrateq:")
        fh.flush()
        assert await watcher.scan() == []
        clock.advance(0.6)
        fh.write(b"2\ncrateq:3\n")  # the copy goes on
        fh.flush()
        assert await watcher.scan() == []
        clock.advance(0.6)
        assert await watcher.scan() == []  # 1.2 s since first seen, but 0.6 s since it grew
        assert path.exists() and engine.calls == []
    clock.advance(0.5)
    [report] = await watcher.scan()
    assert report.accepted == 3
    assert [a["ref"] for a in result(drop, "growing.txt")["accepted"]] == [
        "crateq:1",
        "crateq:2",
        "crateq:3",
    ]


async def test_file_renamed_into_place_and_replaced(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    tmp = drop / ".incoming.tmp"
    write(tmp, "crateq:1\n")
    assert await watcher.scan() == []  # dotfiles are never candidates
    os.rename(tmp, drop / "list.txt")
    assert await watcher.scan() == []
    write(drop / ".next.tmp", "crateq:2\n")
    os.replace(drop / ".next.tmp", drop / "list.txt")  # replaced by a new inode: wait again
    clock.advance(1.0)
    assert await watcher.scan() == []
    clock.advance(1.0)
    [report] = await watcher.scan()
    assert result(drop, "list.txt")["accepted"][0]["ref"] == "crateq:2"
    assert report.accepted == 1


async def test_one_failing_file_does_not_block_others(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    engine.failing.add("crateq:666")
    watcher = make_watcher(drop, store, engine, clock, rescan_interval_s=30.0)
    write(drop / "a.txt", "crateq:666\n")
    write(drop / "b.txt", "crateq:2\n")
    reports = await settle(watcher, clock)
    assert [r.file for r in reports] == ["b.txt"]
    assert (drop / "a.txt").exists()  # kept, recorded as pending, tried again later
    clock.advance(1.0)
    assert await watcher.scan() == []  # not hammered: waits a rescan interval
    engine.failing.clear()
    clock.advance(30.0)
    [report] = await watcher.scan()
    assert report.file == "a.txt" and report.accepted == 1


# --- crash safety (docs/reliability.md C5)
# ----------------------------------------------------------


async def _restart(
    tmp_path: Path, old: Store, drop_dir: Path, engine: FakeEngine, clock: FakeClock
) -> tuple[Store, DropWatcher]:
    await old.close()
    new = await Store.open(tmp_path / "state" / "state.db")
    return new, make_watcher(drop_dir, new, engine, clock)


async def _rows(store: Store) -> tuple[list[Any], list[Any]]:
    return (
        [dict(r) for r in await store.fetchall("SELECT sha256, state FROM drop_requests")],
        [dict(r) for r in await store.fetchall("SELECT name, dest, state FROM drop_files")],
    )


TEXT = "crateq:1\nredownload crateq:2 corrupt\nharvest:favourites\nnosuch:4\n"


def _expected(engine: FakeEngine) -> dict[str, Any]:
    return {
        "accepted": [
            {"line": 1, "ref": "crateq:1", "job": engine.job("crateq:1")},
            {"line": 2, "ref": "crateq:2", "job": engine.job("crateq:2", redownload=True)},
            {"line": 3, "ref": "harvest:favourites", "job": engine.job("harvest:favourites")},
        ],
        "rejected": [
            {
                "line": 4,
                "text": "nosuch:4",
                "reason": f"'nosuch:4': unknown pool 'nosuch' ({CONFIGURED})",
            }
        ],
    }


async def _crash_then_restart(
    tmp_path: Path, drop_dir: Path, monkeypatch: pytest.MonkeyPatch, arm: Any
) -> tuple[FakeEngine, Store, DropReport | None]:
    """Run until the armed crash point, then start a new store and watcher on the same state."""
    engine, clock = FakeEngine(), FakeClock()
    store = await Store.open(tmp_path / "state" / "state.db")
    watcher = make_watcher(drop_dir, store, engine, clock)
    drop_dir.mkdir()
    data = write(drop_dir / "list.txt", TEXT)
    assert await watcher.scan() == []
    clock.advance(1.0)
    undo = arm(engine, monkeypatch)
    with pytest.raises(Crash):
        await watcher.scan()
    undo()
    store, watcher = await _restart(tmp_path, store, drop_dir, engine, clock)
    reports = await watcher.scan()
    if not reports:
        clock.advance(1.0)
        reports = await watcher.scan()
    # Nothing doubled: one job per distinct request, the redownload included.
    assert len(engine.jobs) == 3
    assert_kept(drop_dir, {"list.txt": data})
    assert only_file(drop_dir / "processed") == ["list.txt", "list.txt.result.json"]
    assert result(drop_dir, "list.txt") == _expected(engine)
    assert not (drop_dir / "list.txt").exists()
    assert not (drop_dir / "rejected").exists()
    requests, files = await _rows(store)
    assert [r["state"] for r in requests] == ["done"]
    assert files == [{"name": "list.txt", "dest": "processed/list.txt", "state": "moved"}]
    await store.close()
    return engine, store, reports[0] if reports else None


def _patch_crash(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> Any:
    original = getattr(target, name)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise Crash(name)

    monkeypatch.setattr(target, name, crash)
    return lambda: monkeypatch.setattr(target, name, original)


async def test_crash_before_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drop_dir = tmp_path / "Requests"
    engine, _store, report = await _crash_then_restart(
        tmp_path,
        drop_dir,
        monkeypatch,
        lambda engine, mp: _patch_crash(mp, drops, "add_drops"),
    )
    assert report is not None and report.accepted == 3
    assert len(engine.calls) == 1


async def test_crash_after_engine_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def arm(engine: FakeEngine, mp: pytest.MonkeyPatch) -> Any:
        engine.crash_when_jobs = (
            2  # the jobs (a redownload among them) are committed, then the crash
        )
        return lambda: None

    engine, _store, report = await _crash_then_restart(tmp_path, tmp_path / "R", monkeypatch, arm)
    assert report is not None and report.accepted == 3
    # Replayed with the same key: answered from the engine's key table, nothing created.
    keys = [key for _reqs, key in engine.calls]
    assert len(keys) == 2 and len(set(keys)) == 1


async def test_crash_before_result_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _store, _report = await _crash_then_restart(
        tmp_path,
        tmp_path / "R",
        monkeypatch,
        lambda engine, mp: _patch_crash(mp, files_mod, "_install"),
    )
    assert len(engine.calls) == 1  # recorded result reused, nothing submitted twice


async def test_crash_between_result_and_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_dir = tmp_path / "R"
    engine, _store, _report = await _crash_then_restart(
        tmp_path,
        drop_dir,
        monkeypatch,
        lambda engine, mp: _patch_crash(mp, files_mod, "_link_entry"),
    )
    # The result file written before the crash is the one kept: no "list (2).txt".
    assert len(engine.calls) == 1


async def test_crash_between_link_and_unlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _store, _report = await _crash_then_restart(
        tmp_path,
        tmp_path / "R",
        monkeypatch,
        lambda engine, mp: _patch_crash(mp, files_mod, "fsync_dir"),
    )
    assert len(engine.calls) == 1


async def test_crash_after_move_before_marking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _store, report = await _crash_then_restart(
        tmp_path,
        tmp_path / "R",
        monkeypatch,
        lambda engine, mp: _patch_crash(mp, drops, "finish_placements"),
    )
    assert report is None  # settled at start-up from the records; no second result
    assert len(engine.calls) == 1


async def test_pending_requests_survive_the_file_vanishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_dir = tmp_path / "R"
    engine, clock = FakeEngine(), FakeClock()
    store = await Store.open(tmp_path / "state" / "state.db")
    watcher = make_watcher(drop_dir, store, engine, clock)
    drop_dir.mkdir()
    write(drop_dir / "list.txt", TEXT)
    await watcher.scan()
    clock.advance(1.0)
    engine.crash_when_jobs = 1
    with pytest.raises(Crash):
        await watcher.scan()
    (drop_dir / "list.txt").unlink()  # the user took the file back meanwhile
    store, watcher = await _restart(tmp_path, store, drop_dir, engine, clock)
    assert await watcher.scan() == []
    assert len(engine.jobs) == 3  # what was recorded is still queued, once
    requests, files = await _rows(store)
    assert [r["state"] for r in requests] == ["submitted"]
    assert files == []
    await store.close()


# --- floods and the real watcher ----------------------------------------------------------


async def test_flood_of_1000_files(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    inputs = {
        f"req-{n:04d}.txt": write(drop / f"req-{n:04d}.txt", f"crateq:{n}\n") for n in range(1000)
    }
    reports = await settle(watcher, clock)
    assert sorted(r.file for r in reports) == sorted(inputs)
    assert len(engine.jobs) == 1000
    processed = drop / "processed"
    jobs = {req.ref: job for job, req in engine.jobs.items()}
    for name in inputs:
        n = int(name[4:8])
        assert result(drop, name)["accepted"] == [
            {"line": 1, "ref": f"crateq:{n}", "job": jobs[f"crateq:{n}"]}
        ]
    assert len(list(processed.iterdir())) == 2000
    assert [p.name for p in drop.iterdir() if p.is_file()] == []
    assert_kept(drop, inputs)


async def _next_drops(stream: Any, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        async for event in stream:
            if event["type"] == "drop":
                got.append(event)
                if len(got) == count:
                    return got
    return got


@pytest.mark.parametrize("force_polling", [False, True])
async def test_real_watcher_end_to_end(drop: Path, store: Store, force_polling: bool) -> None:
    engine, events = FakeEngine(), EventBus()
    backlog = write(drop / "while-down.txt", "crateq:1\n")  # dropped while the daemon was down
    watcher = DropWatcher(
        drop,
        store,
        engine.submit,
        lambda: POOLS,
        events,
        force_polling=force_polling,
        rescan_interval_s=3600.0,  # events, not the periodic rescan, must find the new files
        stable_s=0.2,
    )
    async with events.subscribe() as stream:
        await watcher.start()
        try:
            [first] = await _next_drops(stream, 1)
            assert first["file"] == "while-down.txt" and first["accepted"] == 1
            # A copy written in two steps, and a file renamed into place.
            with (drop / "copy.txt").open("wb") as fh:
                fh.write(b"crateq:2\n")
                fh.flush()
                write(drop / ".tmp-upload", "crateq:3\nnosuch:1\n")
                os.rename(drop / ".tmp-upload", drop / "renamed.txt")
                fh.write(b"crateq:4\n")
            got = await _next_drops(stream, 2)
        finally:
            await watcher.stop()
    assert {e["file"]: (e["accepted"], e["rejected"]) for e in got} == {
        "copy.txt": (2, 0),
        "renamed.txt": (1, 1),
    }
    assert [a["ref"] for a in result(drop, "copy.txt")["accepted"]] == ["crateq:2", "crateq:4"]
    assert (drop / "processed" / "while-down.txt").read_bytes() == backlog
    assert len(engine.jobs) == 4


def _drop_tasks() -> list[asyncio.Task[Any]]:
    """The watcher's background tasks still running in this loop."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("drop-") and not t.done()]


async def test_stop_is_bounded_and_restartable(drop: Path, store: Store) -> None:
    engine, events = FakeEngine(), EventBus()
    watcher = make_watcher(
        drop, store, engine, clock=None, events=events, stable_s=0.05, stop_timeout_s=2.0
    )
    await watcher.start()
    assert _drop_tasks()
    async with asyncio.timeout(10):  # the bound is stop_timeout_s; the rest is slack for CI
        await watcher.stop()
        await watcher.stop()  # twice is harmless
    assert _drop_tasks() == []
    # Restarted, it watches again: a new file is handled.
    async with events.subscribe() as stream:
        await watcher.start()
        try:
            write(drop / "again.txt", "crateq:7\n")
            [event] = await _next_drops(stream, 1)
        finally:
            async with asyncio.timeout(10):
                await watcher.stop()
    assert event["moved_to"] == "processed/again.txt" and event["error"] is None
    assert _drop_tasks() == []


async def test_missing_folder_is_created_and_watched(tmp_path: Path, store: Store) -> None:
    drop_dir = tmp_path / "not" / "yet"
    engine, events = FakeEngine(), EventBus()
    watcher = make_watcher(drop_dir, store, engine, clock=None, events=events, stable_s=0.05)
    async with events.subscribe() as stream:
        await watcher.start()
        try:
            assert (drop_dir / "processed").is_dir() and (drop_dir / "rejected").is_dir()
            write(drop_dir / "x.json", '[{"pool": "crateq", "id": "5"}]')
            [event] = await _next_drops(stream, 1)
        finally:
            await watcher.stop()
    assert event["moved_to"] == "processed/x.json"
    assert event["error"] is None and event["duplicate"] is False


async def test_records_in_the_store(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    data = write(drop / "a.txt", "crateq:1\n")
    await settle(watcher, clock)
    record = await drops.get_drop(store, hashlib.sha256(data).hexdigest())
    assert record is not None
    assert (record.name, record.state, record.moved_to) == ("a.txt", "done", "processed/a.txt")
    assert record.lines == [
        {
            "line": 1,
            "text": "crateq:1",
            "request": {
                "pool": "crateq",
                "item_id": "1",
                "kind": "track",
                "redownload": False,
                "reason": None,
            },
        }
    ]
    assert record.result == result(drop, "a.txt")
    assert await drops.pending_drops(store) == []
    assert await drops.unfinished_placements(store) == []


async def test_big_file_is_submitted_in_keyed_chunks(drop: Path, store: Store) -> None:
    engine, clock = FakeEngine(), FakeClock()
    watcher = make_watcher(drop, store, engine, clock)
    lines = ["# header"] + [f"crateq:{n}" for n in range(1, 1201)]
    data = write(drop / "many.txt", "\n".join(lines) + "\n")
    [report] = await settle(watcher, clock)
    assert report.accepted == 1200
    sha = hashlib.sha256(data).hexdigest()
    assert [(len(reqs), key) for reqs, key in engine.calls] == [
        (parse_mod.SUBMIT_CHUNK, idempotency_key(sha, 2)),
        (parse_mod.SUBMIT_CHUNK, idempotency_key(sha, 2 + parse_mod.SUBMIT_CHUNK)),
        (1200 - 2 * parse_mod.SUBMIT_CHUNK, idempotency_key(sha, 2 + 2 * parse_mod.SUBMIT_CHUNK)),
    ]
    accepted = result(drop, "many.txt")["accepted"]
    assert [a["line"] for a in accepted] == list(range(2, 1202))
    jobs = {req.ref: job for job, req in engine.jobs.items()}
    assert [a["job"] for a in accepted] == [jobs[f"crateq:{n}"] for n in range(1, 1201)]


async def test_folder_recreated_while_watched(tmp_path: Path, store: Store) -> None:
    drop_dir = tmp_path / "Requests"
    engine, events = FakeEngine(), EventBus()
    watcher = make_watcher(
        drop_dir, store, engine, clock=None, events=events, stable_s=0.05, rescan_interval_s=0.2
    )
    async with events.subscribe() as stream:
        await watcher.start()
        try:
            write(drop_dir / "a.txt", "crateq:1\n")
            [first] = await _next_drops(stream, 1)
            os.rename(drop_dir, tmp_path / "old")  # moved away (a remount looks the same)
            drop_dir.mkdir()
            write(drop_dir / "b.txt", "crateq:2\n")
            [second] = await _next_drops(stream, 1)
            write(drop_dir / "c.txt", "crateq:3\n")
            [third] = await _next_drops(stream, 1)
        finally:
            await watcher.stop()
    assert [first["file"], second["file"], third["file"]] == ["a.txt", "b.txt", "c.txt"]
    assert (tmp_path / "old" / "processed" / "a.txt").exists()
    assert sorted(p.name for p in (drop_dir / "processed").iterdir()) == [
        "b.txt",
        "b.txt.result.json",
        "c.txt",
        "c.txt.result.json",
    ]
