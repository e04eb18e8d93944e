"""Rules' bookkeeping (docs/interface.md §7): when each rule appeared, how far each pool's new
tracks have been looked at, and what each rule decided for each track it matched.

A decision (`queued`, `skipped`, `waiting`) is recorded once per rule and track, so a restart
neither replays a match nor loses a waiting one. What a rule matches is the search SQL's
business (`store/search.py`); what the library holds, `store/library.py`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pooldaemon.store.db import Store
from pooldaemon.store.jobs import LIVE_STATES

QUEUED, SKIPPED, WAITING = "queued", "skipped", "waiting"


@dataclass(frozen=True, slots=True)
class Decision:
    """What one rule did with one track it matched."""

    rule: str
    pool: str
    item_id: str
    song_key: str
    version: str
    length_s: int | None
    state: str
    reason: str | None = None
    job_id: int | None = None
    day: str | None = None


async def record_rules(store: Store, names: Iterable[str], now: float) -> dict[str, float]:
    """Note rules seen for the first time (now); every rule's first appearance, by name."""
    names = list(names)
    async with store.transaction() as db:
        await db.executemany(
            "INSERT OR IGNORE INTO rules (name, first_seen) VALUES (?, ?)",
            [(name, now) for name in names],
        )
    rows = await store.fetchall("SELECT name, first_seen FROM rules")
    return {str(row[0]): float(row[1]) for row in rows if row[0] in names}


async def cursors(store: Store) -> dict[str, float]:
    """Per pool: tracks first seen up to this time have been looked at by the rules."""
    rows = await store.fetchall("SELECT pool, seen_to FROM rule_cursors")
    return {str(row[0]): float(row[1]) for row in rows}


async def set_cursor(store: Store, pool: str, seen_to: float) -> None:
    """Advance a pool's cursor (never backwards)."""
    await store.execute(
        "INSERT INTO rule_cursors (pool, seen_to) VALUES (?, ?) ON CONFLICT (pool) "
        "DO UPDATE SET seen_to = max(seen_to, excluded.seen_to)",
        (pool, seen_to),
    )


async def new_tracks(store: Store, pool: str, after: float) -> list[tuple[int, float]]:
    """(rowid, first_seen) of the pool's tracks that entered the mirror after `after`
    (schema migration 14's index: no scan of the mirror)."""
    # Named: without statistics SQLite would rather walk the pool's (pool, id) index, every
    # track of it (~140 ms on 174,420 tracks) for the few new ones.
    rows = await store.fetchall(
        "SELECT rowid, first_seen FROM tracks INDEXED BY tracks_first_seen "
        "WHERE first_seen > ? AND pool = ? AND removed = 0",
        (after, pool),
    )
    return [(int(row[0]), float(row[1])) for row in rows]


async def decided(store: Store, refs: Collection[tuple[str, str]]) -> set[tuple[str, str, str]]:
    """(rule, pool, id) of every decision already recorded about these (pool, id)."""
    if not refs:
        return set()
    rows = await store.fetchall(
        "SELECT DISTINCT m.rule, m.pool, m.item_id FROM json_each(?) j CROSS JOIN rule_matches m "
        "ON m.pool = json_extract(j.value, '$[0]') AND m.item_id = json_extract(j.value, '$[1]')",
        (json.dumps([list(ref) for ref in refs]),),
    )
    return {(str(row[0]), str(row[1]), str(row[2])) for row in rows}


async def taken_versions(store: Store, song_keys: Collection[str]) -> list[dict[str, Any]]:
    """Rule decisions that take a track (queued or waiting) of these songs, any rule."""
    if not song_keys:
        return []
    rows = await store.fetchall(
        "SELECT rule, pool, item_id, song_key, version, length_s, state FROM rule_matches "
        "WHERE state IN ('queued', 'waiting') AND song_key IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(song_keys)),),
    )
    return [dict(row) for row in rows]


async def live_jobs(
    store: Store, refs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The job standing for each of these tracks, if any (queued to done): `{id, state, origin}`."""
    if not refs:
        return {}
    marks = ",".join("?" * len(LIVE_STATES))
    rows = await store.fetchall(
        "SELECT j.pool, j.item_id, j.id, j.state, j.origin FROM json_each(?) r "
        "CROSS JOIN jobs j ON j.pool = json_extract(r.value, '$[0]') "
        "AND j.kind = 'track' AND j.item_id = json_extract(r.value, '$[1]') "
        f"WHERE j.state IN ({marks}) ORDER BY j.id",
        (json.dumps([list(ref) for ref in refs]), *LIVE_STATES),
    )
    return {
        (str(row[0]), str(row[1])): {"id": row[2], "state": row[3], "origin": row[4]}
        for row in rows
    }


async def record(store: Store, decisions: Sequence[Decision], now: float | None = None) -> None:
    """Record decisions; one already recorded for the same rule and track is kept as it was."""
    if not decisions:
        return
    stamp = time.time() if now is None else now
    async with store.transaction() as db:
        await db.executemany(
            "INSERT OR IGNORE INTO rule_matches (rule, pool, item_id, song_key, version, "
            "length_s, state, reason, job_id, day, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    d.rule,
                    d.pool,
                    d.item_id,
                    d.song_key,
                    d.version,
                    d.length_s,
                    d.state,
                    d.reason,
                    d.job_id,
                    d.day,
                    stamp,
                )
                for d in decisions
            ],
        )


async def settle(
    store: Store,
    rule: str,
    pool: str,
    item_id: str,
    *,
    state: str,
    reason: str | None = None,
    job_id: int | None = None,
    day: str | None = None,
) -> None:
    """A waiting match is started or skipped after all."""
    await store.execute(
        "UPDATE rule_matches SET state = ?, reason = ?, job_id = ?, day = ? "
        "WHERE rule = ? AND pool = ? AND item_id = ?",
        (state, reason, job_id, day, rule, pool, item_id),
    )


async def started_on(store: Store, rule: str, day: str) -> int:
    """Jobs the rule started on this local calendar day."""
    row = await store.fetchone(
        "SELECT COUNT(*) FROM rule_matches WHERE rule = ? AND state = 'queued' AND day = ?",
        (rule, day),
    )
    return int(row[0])


async def started_by_rule(store: Store, day: str) -> dict[str, int]:
    """Per rule: jobs it started on this local calendar day."""
    rows = await store.fetchall(
        "SELECT rule, COUNT(*) FROM rule_matches WHERE state = 'queued' AND day = ? GROUP BY rule",
        (day,),
    )
    return {str(row[0]): int(row[1]) for row in rows}


async def waiting(store: Store, rule: str, limit: int) -> list[dict[str, Any]]:
    """The rule's oldest waiting matches, first come first served."""
    rows = await store.fetchall(
        "SELECT pool, item_id, song_key, version, length_s FROM rule_matches "
        "WHERE rule = ? AND state = 'waiting' ORDER BY created, pool, item_id LIMIT ?",
        (rule, limit),
    )
    return [dict(row) for row in rows]


async def counts(store: Store) -> dict[str, dict[str, Any]]:
    """Per rule: `matched`, `queued`, `skipped`, `waiting` and `last_match` (unix time)."""
    rows = await store.fetchall(
        "SELECT rule, COUNT(*), SUM(state = 'queued'), SUM(state = 'skipped'), "
        "SUM(state = 'waiting'), MAX(created) FROM rule_matches GROUP BY rule"
    )
    return {
        str(row[0]): {
            "matched": int(row[1]),
            "queued": int(row[2] or 0),
            "skipped": int(row[3] or 0),
            "waiting": int(row[4] or 0),
            "last_match": row[5],
        }
        for row in rows
    }
