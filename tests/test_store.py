"""The state database: migrations up from every earlier version, refusal of a newer one, and
transactions that leave nothing half-done (real SQLite files)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from pooldaemon.models import JobState, Request, Track
from pooldaemon.search import search
from pooldaemon.store import Store, StoreError, job_pages
from pooldaemon.store import catalog as mirror
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store import pools as store_pools
from pooldaemon.store.schema import SCHEMA_VERSION


def _seed(path: Path) -> None:
    """What every version since 1 has: a pool row and a job (written with plain SQL, as that
    version's daemon would have)."""
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO pools (name, type) VALUES ('crateq', 'crateq')")
        db.execute(
            "INSERT INTO jobs (pool, kind, item_id, format, ref, origin, state, created, updated)"
            " VALUES ('crateq', 'track', '570291', '', 'crateq:570291', 'request', 'queued', 1, 1)"
        )


@pytest.mark.parametrize("start", range(1, SCHEMA_VERSION))
async def test_a_database_from_every_earlier_version_is_migrated_keeping_its_data(
    tmp_path: Path, start: int
) -> None:
    path = tmp_path / "state.db"
    old = await Store.open(path, migrate_to=start)
    assert await old.version() == start
    await old.close()
    _seed(path)

    store = await Store.open(path)
    try:
        assert await store.version() == SCHEMA_VERSION
        assert await store.integrity_check() == "ok"
        job = await store_jobs.get_job(store, 1)
        assert (job["ref"], job["state"]) == ("crateq:570291", "queued")
        assert "crateq" in await store_pools.pool_rows(store)
        # The migrated database works like a new one: the same job is found, not doubled.
        again, created = await store_jobs.create_job(store, Request("crateq", "570291"), origin="x")
        assert (again["id"], created) == (1, False)
    finally:
        await store.close()


async def test_a_database_from_a_newer_pooldaemon_is_refused_and_left_as_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(StoreError) as refused:
        await Store.open(path)

    message = refused.value.message
    assert f"schema {SCHEMA_VERSION + 1}" in message and "newer pooldaemon" in message
    assert "left as is" in message
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


async def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "state.db")
    try:
        with pytest.raises(RuntimeError):
            async with store.transaction() as db:
                await db.execute("INSERT INTO pools (name, type) VALUES ('half', 'crateq')")
                raise RuntimeError("crash in the middle")
        assert "half" not in await store_pools.pool_rows(store)
        # The connection is usable afterwards (no transaction left open).
        await store_pools.ensure_pools(store, {"whole": "crateq"})
        assert "whole" in await store_pools.pool_rows(store)
    finally:
        await store.close()


async def test_work_run_in_sqlites_thread_commits_whole_or_not_at_all(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "state.db")
    try:

        def add(db: sqlite3.Connection, name: str) -> int:
            db.execute("INSERT INTO pools (name, type) VALUES (?, 'crateq')", (name,))
            return int(db.execute("SELECT COUNT(*) FROM pools").fetchone()[0])

        assert await store.run_in_transaction(lambda db: add(db, "whole")) == 1

        def half(db: sqlite3.Connection) -> None:
            add(db, "half")
            db.execute("INSERT INTO pools (name, type) VALUES ('whole', 'crateq')")  # duplicate

        with pytest.raises(sqlite3.IntegrityError):
            await store.run_in_transaction(half)
        assert set(await store_pools.pool_rows(store)) == {"whole"}
        # No transaction is left open: the next writer of either kind goes through.
        await store_pools.ensure_pools(store, {"after": "crateq"})
        assert await store.run_in_transaction(lambda db: add(db, "last")) == 3
    finally:
        await store.close()


async def test_a_search_reads_the_last_commit_while_the_writer_is_busy(tmp_path: Path) -> None:
    """Searches have their own connection: they neither wait behind a sync page nor see one
    that is not committed."""
    store = await Store.open(tmp_path / "state.db")
    tracks = [Track("crateq", str(n), artist="Midnight Crew", title=f"Song {n}") for n in (1, 2)]
    writing, release = threading.Event(), threading.Event()

    def slow_page(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO tracks (pool, id, artist, first_seen, last_seen) "
            "VALUES ('crateq', '3', 'Midnight Crew', 0, 0)"
        )
        writing.set()
        release.wait(30)  # the writer's thread is busy until the search is done

    try:
        await mirror.apply_page(store, "crateq", tracks, seen_at=1.0)
        page = asyncio.ensure_future(store.run_in_transaction(slow_page))
        assert await asyncio.to_thread(writing.wait, 30)
        try:
            # On the writer's connection this waited for `release`, and failed here.
            found = await asyncio.wait_for(search(store, {"q": "midnight"}), 30)
        finally:
            release.set()
            await page
        assert sorted(item["id"] for item in found["items"]) == ["1", "2"]
        assert (await store.fetchone("SELECT COUNT(*) FROM tracks"))[0] == 3  # committed after
    finally:
        await store.close()


async def test_status_and_job_reads_do_not_wait_behind_the_writer(tmp_path: Path) -> None:
    """`GET /v1/status` and `GET /v1/jobs` read the last commit on the searches' connection:
    a sync page or an index build holding the writer's thread does not hold them up, and what
    that writer has not committed is not counted yet."""
    store = await Store.open(tmp_path / "state.db")
    writing, release = threading.Event(), threading.Event()

    def slow_write(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO pools (name, type) VALUES ('uncommitted', 'crateq')")
        db.execute("UPDATE jobs SET state = 'failed'")
        writing.set()
        release.wait(30)  # the writer's thread is busy until the reads are done

    try:
        await store_pools.ensure_pools(store, {"crateq": "crateq"})
        await store_jobs.create_job(store, Request("crateq", "570291"), origin="test")
        write = asyncio.ensure_future(store.run_in_transaction(slow_write))
        assert await asyncio.to_thread(writing.wait, 30)
        try:
            # On the writer's connection each of these waited for `release`.
            counts = await asyncio.wait_for(store_jobs.job_counts(store), 10)
            pools = await asyncio.wait_for(store_pools.pool_rows(store), 10)
            total, page = await asyncio.wait_for(job_pages.page_jobs(store, limit=10), 10)
            library = await asyncio.wait_for(store_library.state_counts(store), 10)
        finally:
            release.set()
            await write
        assert (counts["queued"], counts["failed"]) == (1, 0)
        assert set(pools) == {"crateq"}
        assert library == {}
        assert (total, [job["state"] for job in page]) == (1, ["queued"])
        assert (await store_jobs.job_counts(store))["failed"] == 1  # committed after
    finally:
        await store.close()


async def test_illegal_job_transitions_are_refused(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "state.db")
    try:
        job, _ = await store_jobs.create_job(store, Request("crateq", "1"), origin="test")
        with pytest.raises(Exception, match="cannot become done"):
            await store_jobs.transition(store, job["id"], JobState.DONE)
        assert (await store_jobs.get_job(store, job["id"]))["state"] == "queued"
    finally:
        await store.close()


async def test_the_database_file_is_private(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "state" / "state.db")
    await store.close()
    assert (tmp_path / "state" / "state.db").stat().st_mode & 0o077 == 0


async def test_a_job_is_read_typed_and_shown_to_the_api_in_its_documented_shape(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state.db")
    try:
        made, _ = await store_jobs.create_job(
            store, Request("crateq", "7"), origin="auto", title="Song", artist="Band"
        )
        await store_jobs.update_job(store, made["id"], path="/lib/x.mp3", final_sha256="ab")
        job = await store_jobs.load_job(store, made["id"])
        assert (job.pool, job.kind, job.item_id, job.format) == ("crateq", "track", "7", "")
        assert job.state is JobState.QUEUED
        assert (job.path, job.final_sha256, job.not_before) == ("/lib/x.mp3", "ab", None)
        api = await store_jobs.get_job(store, made["id"])
        assert api == job.to_api()
        # docs/interface.md §4: the job object's keys; the plan's tokens and hashes stay inside.
        assert set(api) == {
            "id", "ref", "pool", "kind", "title", "artist", "state", "bytes_done",
            "bytes_total", "rate_bps", "attempts", "error", "error_code", "path", "origin",
            "created", "updated",
        }  # fmt: skip
        assert (api["ref"], api["state"], api["rate_bps"]) == ("crateq:7", "queued", 0)
        assert type(api["state"]) is str
        with pytest.raises(Exception, match="no job 999"):
            await store_jobs.load_job(store, 999)
    finally:
        await store.close()
