"""The library's checksum names its algorithm: new records are BLAKE3, SHA-256 records made before
the switch are migrated as `sha256:<hex>` and still verify and adopt (docs/reliability.md C4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import blake3
import pytest

from pooldaemon.downloader.digest import (
    Digests,
    PrefixHasher,
    checksum_matches,
    file_checksum,
    split_checksum,
)
from pooldaemon.downloader.finish import _check_checksum
from pooldaemon.errors import IntegrityError
from pooldaemon.models import JobState, PlanPart, Request
from pooldaemon.sim.media import MediaStore
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store.db import Store
from pooldaemon.store.schema import SCHEMA_VERSION

from .conftest import (
    EngineHarness,
    LocalPool,
    PartSpec,
    ServerFactory,
    bytes_requested,
    library_checksum,
)

SIZE = 700_001
#: The schema before checksums named their algorithm (schema migration 15 names them).
BEFORE = 14


def test_a_recorded_value_names_its_algorithm_and_a_bare_hex_is_sha256(tmp_path: Path) -> None:
    data = b"pooldaemon " * 100_000
    path = tmp_path / "f"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    assert file_checksum(path) == ("blake3:" + blake3.blake3(data).hexdigest(), len(data))
    assert split_checksum(sha.upper()) == ("sha256", sha)
    for recorded in (f"sha256:{sha}", sha, library_checksum(data)):
        assert checksum_matches(path, recorded)
        assert checksum_matches(path, recorded, len(data))
        assert not checksum_matches(path, recorded, len(data) + 1)
    other = hashlib.sha256(b"other bytes").hexdigest()
    assert not checksum_matches(path, f"sha256:{other}")
    # A value this daemon cannot read matches nothing: the file is never adopted on its word.
    assert not checksum_matches(path, "md4:" + "0" * 32)
    with pytest.raises(ValueError, match="not a checksum"):
        split_checksum("xxh3:00")


async def test_a_pools_sha256_is_hashed_beside_the_library_checksum(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000
    path = tmp_path / "part"
    path.write_bytes(data)
    hasher = PrefixHasher(path, sha256=True)
    hasher.advance(1000)
    digests = await hasher.finish(len(data))
    assert digests.plain_sha256 == hashlib.sha256(data).hexdigest()
    assert digests.checksum == library_checksum(data)
    assert digests.md5 is None


async def _old_database(path: Path, library: Path, data: bytes) -> tuple[int, str]:
    """A state database as the daemon before the switch left it: a job killed after placing
    its file (intent recorded as a bare SHA-256), and an older finished download."""
    sha = hashlib.sha256(data).hexdigest()
    old = await Store.open(path, migrate_to=BEFORE)
    try:
        job, _ = await store_jobs.create_job(old, Request("testpool", "1"), origin="request")
        for state in (JobState.RESOLVING, JobState.DOWNLOADING, JobState.VERIFYING):
            await store_jobs.transition(old, job["id"], state)
        dest = library / "testpool" / "Artist - Track 1.mp3"
        dest.parent.mkdir(parents=True)
        dest.write_bytes(data)
        await store_jobs.update_job(old, job["id"], path=str(dest), final_sha256=sha)
        done, _ = await store_jobs.create_job(old, Request("testpool", "9"), origin="request")
        for state in (JobState.RESOLVING, JobState.DOWNLOADING, JobState.VERIFYING):
            await store_jobs.transition(old, done["id"], state)
        await store_library.record_download(
            old, done["id"], path=str(library / "nine.mp3"), size=3, sha256=sha.upper(), calls=[]
        )
    finally:
        await old.close()
    return int(job["id"]), sha


async def test_an_old_sha256_intent_is_migrated_and_adopted_and_new_records_are_blake3(
    tmp_path: Path,
    session: aiohttp.ClientSession,
    pool: LocalPool,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    media.add_generated("m1", "mp3", "m1", SIZE)
    media.add_generated("m2", "mp3", "m2", SIZE)
    srv = await servers()
    pool.add("1", [PartSpec("main", "m1", [("s", srv)])])
    pool.add("2", [PartSpec("main", "m2", [("s", srv)])])
    db_path = tmp_path / "state" / "state.db"
    db_path.parent.mkdir()
    job_id, sha = await _old_database(db_path, library, media.get("m1"))

    store = await Store.open(db_path)
    harness = EngineHarness(store, session, pool, library)
    try:
        assert await store.version() == SCHEMA_VERSION
        migrated = await store_jobs.load_job(store, job_id)
        assert migrated.final_sha256 == f"sha256:{sha}"
        nine = await store_library.entries_for_item(store, "testpool", "9")
        assert nine[0]["sha256"] == f"sha256:{sha}"  # lower-cased, named

        engine = await harness.start()
        adopted = await harness.wait(job_id)
        assert adopted["state"] == "done", adopted["error"]
        assert bytes_requested([srv], SIZE) == 0  # adopted on its SHA-256, not fetched again
        entries = await store_library.entries_for_item(store, "testpool", "1")
        assert [e["sha256"] for e in entries] == [f"sha256:{sha}"]

        fresh = await harness.wait(await harness.get("2", engine))
        assert fresh["state"] == "done", fresh["error"]
        entries = await store_library.entries_for_item(store, "testpool", "2")
        assert [e["sha256"] for e in entries] == [library_checksum(media.get("m2"))]
    finally:
        for engine in harness.engines:
            await engine.stop(5.0)
        for outbox in harness.outboxes:
            await outbox.stop()
        await store.close()


async def test_an_old_intent_whose_file_changed_is_not_adopted(
    tmp_path: Path,
    session: aiohttp.ClientSession,
    pool: LocalPool,
    library: Path,
    servers: ServerFactory,
    media: MediaStore,
) -> None:
    """The SHA-256 is really checked: a file that is not the one recorded is left alone and the
    download lands beside it."""
    media.add_generated("m1", "mp3", "m1", SIZE)
    srv = await servers()
    pool.add("1", [PartSpec("main", "m1", [("s", srv)])])
    db_path = tmp_path / "state" / "state.db"
    db_path.parent.mkdir()
    job_id, _ = await _old_database(db_path, library, media.get("m1"))
    dest = library / "testpool" / "Artist - Track 1.mp3"
    edited = b"X" + media.get("m1")[1:]
    dest.write_bytes(edited)  # someone else's bytes at the path now

    store = await Store.open(db_path)
    harness = EngineHarness(store, session, pool, library)
    try:
        await harness.start()
        job = await harness.wait(job_id)
        assert job["state"] == "done", job["error"]
        assert job["path"] != str(dest)
        assert Path(job["path"]).read_bytes() == media.get("m1")
        assert dest.read_bytes() == edited
    finally:
        for engine in harness.engines:
            await engine.stop(5.0)
        for outbox in harness.outboxes:
            await outbox.stop()
        await store.close()


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_a_pools_checksum_is_still_verified_beside_blake3(tmp_path: Path, algorithm: str) -> None:
    """The pool's checksum is of the bytes it sent: a digest taken while downloading that lacks
    the pool's algorithm makes the file be read again, and a mismatch is refused."""
    data = b"\x00pool bytes" * 5000
    path = tmp_path / "part"
    path.write_bytes(data)
    right = hashlib.new(algorithm, data).hexdigest()
    known = Digests(library_checksum(data), None, len(data))  # what the transfer hashed
    part = PlanPart(key="main", sources=[], **{algorithm: right.upper()})
    assert _check_checksum(path, part, known, len(data)) == library_checksum(data)
    wrong = PlanPart(
        key="main", sources=[], **{algorithm: hashlib.new(algorithm, b"x").hexdigest()}
    )
    with pytest.raises(IntegrityError, match="does not match the pool's"):
        _check_checksum(path, wrong, known, len(data))
