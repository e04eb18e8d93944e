"""The SQLite connections: one for everything, WAL, explicit transactions, migrations on open;
and a second, read-only one that catalog searches, `/v1/status` and job lists use."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from pooldaemon.errors import PoolDaemonError
from pooldaemon.store.schema import MIGRATIONS, SCHEMA_VERSION

T = TypeVar("T")


def _casefold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


async def uncancelled(statement: Awaitable[Any]) -> Any:
    """Await work to its end even when cancelled meanwhile, then re-raise the cancel.

    aiosqlite runs the statement in its thread whatever happens to the awaiting task; the
    transaction bookkeeping must follow what SQLite actually did.
    """
    future = asyncio.ensure_future(statement)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result


class StoreError(PoolDaemonError):
    """The state database cannot be used as it is."""

    code = "store"


class Reads:
    """The read-only connection of catalog searches and of the status and job-list reads
    (`Store.reads`).

    On the one connection a search queued in aiosqlite's thread behind whatever was there:
    during a full re-sync, a sync page's transaction before each of its statements (p50
    109 ms). In WAL mode a second connection reads the last commit at once, in its own
    thread, while the first one writes. It sees only committed data, and no TEMP table of
    the other connection.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        async with self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        async with self._conn.execute(sql, params) as cur:
            return await cur.fetchone()


class Store:
    """Owns the connections. Writers go through `transaction()`, which serializes them.

    One event loop, one connection for everything but searches (`reads`): there are no thread
    locks around SQLite, only an asyncio lock so two coroutines never interleave
    statements of two transactions.
    """

    def __init__(
        self, conn: aiosqlite.Connection, path: Path, reader: aiosqlite.Connection
    ) -> None:
        self._conn = conn
        self._reader = reader
        self.path = path
        self.reads = Reads(reader)
        self._own = Reads(conn)  # reads on this connection: they see its TEMP tables
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, migrate_to: int = SCHEMA_VERSION) -> Store:
        """Open (creating if needed) and migrate; refuse a database from a newer pooldaemon."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The state holds tokens: create it private before SQLite opens it.
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        reader: aiosqlite.Connection | None = None
        try:
            mode = await _scalar(conn, "PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: SQLite refused WAL mode (got {mode}); is it on NFS?")
            reader = await aiosqlite.connect(path, isolation_level=None)
            reader.row_factory = aiosqlite.Row
            # Unicode case folding for the writes that keep filter values' spellings (schema
            # migration 11); never used in the schema itself, so any SQLite can read the file.
            await conn.create_function("pd_casefold", 1, _casefold, deterministic=True)
            store = cls(conn, path, reader)
            await store._configure()
            await store._migrate(migrate_to)
        except BaseException:
            await conn.close()
            if reader is not None:
                await reader.close()
            raise
        return store

    async def _configure(self) -> None:
        # NORMAL in WAL is durable across process crashes; a power cut may lose the last commit,
        # which only costs a chunk re-download (docs/reliability.md C3).
        await self._conn.execute("PRAGMA synchronous = NORMAL")
        await self._conn.execute("PRAGMA foreign_keys = ON")
        await self._conn.execute("PRAGMA busy_timeout = 5000")
        # 8 MiB of page cache (SQLite's default is 2 MiB). Catalog searches read the word
        # index and a page of rows, not every match's row (schema migration 9): on a
        # 174,420-track mirror their p95 is the same with 8 or 32 MiB (5.0-6.7 ms, alternating)
        # and the daemon's RSS 14 MB lower; the OS's page cache holds the rest.
        await self._conn.execute("PRAGMA cache_size = -8192")
        if sys.platform == "darwin":
            await self._conn.execute("PRAGMA fullfsync = ON")  # docs/reliability.md §3 item 17
        # The searches' connection: it may not write, it waits out a checkpoint's lock, and
        # it has the page cache the searches were measured with; the writer's is mostly
        # pages it just wrote.
        await self._reader.execute("PRAGMA query_only = ON")
        await self._reader.execute("PRAGMA busy_timeout = 5000")
        await self._reader.execute("PRAGMA cache_size = -8192")

    async def _migrate(self, target: int) -> None:
        version = int(await self._scalar("PRAGMA user_version"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer pooldaemon (schema {version}, this one "
                f"knows up to {SCHEMA_VERSION}); upgrade pooldaemon, the database is left as is"
            )
        for number in range(version + 1, target + 1):
            async with self.transaction() as db:
                # Re-read under the write lock: another process may have migrated meanwhile.
                async with db.execute("PRAGMA user_version") as cur:
                    row = await cur.fetchone()
                if row is not None and int(row[0]) >= number:
                    continue
                for statement in MIGRATIONS[number - 1]:
                    await db.execute(statement)
                # user_version is part of the transaction: a crash leaves the old version.
                await db.execute(f"PRAGMA user_version = {number}")

    async def version(self) -> int:
        return int(await self._scalar("PRAGMA user_version"))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (including cancellation)."""
        async with self._lock:
            try:
                await uncancelled(self._conn.execute("BEGIN IMMEDIATE"))
            except asyncio.CancelledError:
                # BEGIN ran anyway in aiosqlite's thread: end it, or the connection stays
                # inside a transaction and every later BEGIN fails.
                await uncancelled(self._conn.execute("ROLLBACK"))
                raise
            try:
                yield self._conn
            except BaseException:
                await uncancelled(self._conn.execute("ROLLBACK"))
                raise
            await uncancelled(self._conn.execute("COMMIT"))

    async def run_in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` inside BEGIN IMMEDIATE … COMMIT, run whole in SQLite's thread.

        For a batch of statements that must not wait on the event loop between them: every
        awaited statement costs two hand-overs between threads, and while the loop parses the
        next catalog page each hand-over waits for the GIL (up to its 5 ms switch interval).
        A bulk load of 174,420 tracks, a page per call, went from 11.5 to 8.7 s (issue 3).
        `work` runs in aiosqlite's thread: it must not touch anything the event loop uses.
        """

        def run() -> T:
            db: sqlite3.Connection = self._conn._conn  # aiosqlite's own, in its own thread
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        async with self._lock:
            # aiosqlite runs every call as a function on its thread's queue; it has no public
            # name for queueing one of ours (tests/test_store.py fails loudly if that changes).
            queued: Awaitable[T] = self._conn._execute(run)  # type: ignore[no-untyped-call]
            return cast(T, await uncancelled(queued))

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return await self._own.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        return await self._own.fetchone(sql, params)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """One statement in its own transaction; returns the last row id."""
        async with self.transaction() as db:
            cur = await db.execute(sql, params)
            return cur.lastrowid or 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as db:
            await db.executemany(sql, rows)

    async def integrity_check(self) -> str:
        return str(await self._scalar("PRAGMA integrity_check"))

    async def close(self) -> None:
        async with self._lock:
            await self._reader.close()
            await self._conn.execute("PRAGMA optimize")
            await self._conn.close()

    async def _scalar(self, sql: str) -> Any:
        return await _scalar(self._conn, sql)


async def _scalar(conn: aiosqlite.Connection, sql: str) -> Any:
    async with conn.execute(sql) as cur:
        row = await cur.fetchone()
    return row[0] if row else None
