"""Drop-folder bookkeeping: requests by content hash, and where each dropped file is being moved.

Two tables (schema migration 4). `drop_requests` holds one row per distinct content (sha256): the
lines parsed from it, then the result of submitting them. `drop_files` holds one row per dropped
file (identified by its name and inode, not just its name) with the destination chosen for it and
the exact result/errors text to write beside it, so a restart finishes the same move instead of
choosing a second name (docs/reliability.md C5).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pooldaemon.store.db import Store

#: drop_requests.state: parsed and recorded, not yet (fully) submitted.
PENDING = "pending"
#: Every request submitted and the result recorded; the file may not have moved yet.
SUBMITTED = "submitted"
#: The first file with this content has been moved into processed/ or rejected/.
DONE = "done"

#: drop_files.state values.
PLACING = "placing"
MOVED = "moved"
VANISHED = "vanished"


@dataclass(frozen=True, slots=True)
class DropRecord:
    """One distinct request-file content and what became of its requests."""

    sha256: str
    name: str
    received: float
    state: str
    #: Parsed lines: `{"line", "text", "request": {…}}` or `{"line", "text", "reason"}`.
    lines: list[dict[str, Any]]
    #: `{"accepted": […], "rejected": […]}` once submitted, else None.
    result: dict[str, Any] | None
    moved_to: str | None


@dataclass(frozen=True, slots=True)
class Placement:
    """A dropped file on its way to processed/ or rejected/."""

    id: int
    name: str
    dev: int
    ino: int
    sha256: str | None
    dest: str  # relative to drop_dir: "processed/NAME" or "rejected/NAME"
    sidecar: str  # exact text of NAME.result.json or NAME.errors.txt
    state: str


_DROP_COLUMNS = "sha256, name, received, state, lines, result, moved_to"
_FILE_COLUMNS = "id, name, dev, ino, sha256, dest, sidecar, state"


def _drop(row: Any) -> DropRecord:
    result = json.loads(row["result"]) if row["state"] != PENDING else None
    return DropRecord(
        sha256=row["sha256"],
        name=row["name"],
        received=row["received"],
        state=row["state"],
        lines=json.loads(row["lines"]),
        result=result,
        moved_to=row["moved_to"],
    )


def _placement(row: Any) -> Placement:
    return Placement(**{key: row[key] for key in row.keys()})  # noqa: SIM118 (sqlite Row)


async def get_drop(store: Store, sha256: str) -> DropRecord | None:
    """The record for this content, if it was ever read."""
    row = await store.fetchone(
        f"SELECT {_DROP_COLUMNS} FROM drop_requests WHERE sha256 = ?", (sha256,)
    )
    return _drop(row) if row else None


async def get_drops(store: Store, shas: Iterable[str]) -> dict[str, DropRecord]:
    """The records for these contents, those that exist."""
    wanted = sorted(set(shas))
    if not wanted:
        return {}
    rows = await store.fetchall(
        f"SELECT {_DROP_COLUMNS} FROM drop_requests "
        f"WHERE sha256 IN ({','.join('?' * len(wanted))})",
        wanted,
    )
    return {row["sha256"]: _drop(row) for row in rows}


async def add_drops(
    store: Store, new: Mapping[str, tuple[str, list[dict[str, Any]]]]
) -> dict[str, DropRecord]:
    """Record parsed lines (sha256 → (file name, lines)) as pending, before any is submitted.

    An existing record is kept as it is; the records as they now stand are returned.
    """
    if not new:
        return {}
    received = time.time()
    inserted: dict[str, DropRecord] = {}
    async with store.transaction() as db:
        for sha256, (name, lines) in new.items():
            cur = await db.execute(
                "INSERT INTO drop_requests (sha256, name, received, result, state, lines) "
                "VALUES (?, ?, ?, '{}', ?, ?) ON CONFLICT (sha256) DO NOTHING",
                (sha256, name, received, PENDING, json.dumps(lines, ensure_ascii=False)),
            )
            if cur.rowcount == 1:
                inserted[sha256] = DropRecord(sha256, name, received, PENDING, lines, None, None)
    others = [sha for sha in new if sha not in inserted]
    return {**inserted, **await get_drops(store, others)}


async def pending_drops(store: Store) -> list[DropRecord]:
    """Content recorded but not yet fully submitted (a crash came in between)."""
    rows = await store.fetchall(
        f"SELECT {_DROP_COLUMNS} FROM drop_requests WHERE state = ? ORDER BY received",
        (PENDING,),
    )
    return [_drop(row) for row in rows]


async def record_result(store: Store, sha256: str, result: dict[str, Any]) -> None:
    """Every request of this content is submitted: keep the result for the result file."""
    await store.execute(
        "UPDATE drop_requests SET result = ?, state = ? WHERE sha256 = ? AND state = ?",
        (json.dumps(result, ensure_ascii=False), SUBMITTED, sha256, PENDING),
    )


#: (name, dev, ino, sha256): one dropped file as read.
FileKey = tuple[str, int, int, str | None]


async def find_placements(store: Store, keys: Iterable[FileKey]) -> dict[FileKey, Placement]:
    """Unfinished moves of these very files (same name, inode and content), if any."""
    wanted = set(keys)
    names = sorted({key[0] for key in wanted})
    if not names:
        return {}
    rows = await store.fetchall(
        f"SELECT {_FILE_COLUMNS} FROM drop_files WHERE state = ? "
        f"AND name IN ({','.join('?' * len(names))}) ORDER BY id",
        (PLACING, *names),
    )
    found: dict[FileKey, Placement] = {}
    for row in rows:
        placement = _placement(row)
        key = (placement.name, placement.dev, placement.ino, placement.sha256)
        if key in wanted:
            found[key] = placement  # the latest wins
    return found


@dataclass(frozen=True, slots=True)
class NewPlacement:
    """Where a dropped file is about to go, and the text to write beside it."""

    name: str
    dev: int
    ino: int
    sha256: str | None
    dest: str
    sidecar: str


async def add_placements(
    store: Store,
    placements: Sequence[NewPlacement],
    results: Mapping[str, dict[str, Any]],
) -> list[Placement]:
    """In one transaction: the results of contents just submitted (sha256 → result), and where
    each file goes, before anything is written to disk."""
    created: list[Placement] = []
    if not placements and not results:
        return created
    now = time.time()
    async with store.transaction() as db:
        for sha256, result in results.items():
            await db.execute(
                "UPDATE drop_requests SET result = ?, state = ? WHERE sha256 = ? AND state = ?",
                (json.dumps(result, ensure_ascii=False), SUBMITTED, sha256, PENDING),
            )
        for new in placements:
            cur = await db.execute(
                "INSERT INTO drop_files (name, dev, ino, sha256, dest, sidecar, state, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (new.name, new.dev, new.ino, new.sha256, new.dest, new.sidecar, PLACING, now),
            )
            created.append(
                Placement(
                    cur.lastrowid or 0,
                    new.name,
                    new.dev,
                    new.ino,
                    new.sha256,
                    new.dest,
                    new.sidecar,
                    PLACING,
                )
            )
    return created


async def change_dest(store: Store, placement: Placement, dest: str) -> Placement:
    """The chosen name was taken meanwhile: record the next one before trying it."""
    await store.execute("UPDATE drop_files SET dest = ? WHERE id = ?", (dest, placement.id))
    return Placement(
        placement.id,
        placement.name,
        placement.dev,
        placement.ino,
        placement.sha256,
        dest,
        placement.sidecar,
        placement.state,
    )


async def unfinished_placements(store: Store) -> list[Placement]:
    """Moves a crash interrupted."""
    rows = await store.fetchall(
        f"SELECT {_FILE_COLUMNS} FROM drop_files WHERE state = ? ORDER BY id", (PLACING,)
    )
    return [_placement(row) for row in rows]


async def finish_placements(
    store: Store, *, moved: Sequence[Placement] = (), vanished: Sequence[Placement] = ()
) -> None:
    """Files now at their destination (the first of a content completes its record), and
    files that disappeared before they were moved (the user took them back)."""
    if not moved and not vanished:
        return
    now = time.time()
    async with store.transaction() as db:
        for placement in moved:
            await db.execute(
                "UPDATE drop_files SET state = ?, dest = ?, moved = ? WHERE id = ?",
                (MOVED, placement.dest, now, placement.id),
            )
            if placement.sha256 is not None:
                await db.execute(
                    "UPDATE drop_requests SET state = ?, moved_to = COALESCE(moved_to, ?) "
                    "WHERE sha256 = ? AND state = ?",
                    (DONE, placement.dest, placement.sha256, SUBMITTED),
                )
        for placement in vanished:
            await db.execute(
                "UPDATE drop_files SET state = ?, moved = ? WHERE id = ?",
                (VANISHED, now, placement.id),
            )
