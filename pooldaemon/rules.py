"""Rules: new tracks from the mirrored catalogs, chosen the way a DJ would (docs/interface.md §7).

After each catalog pass (`sync.py` tells this module when one starts and ends) the rules look at
the tracks that entered the mirror since the last look — never a pool's first pass, which is its
back catalog — match them with the search's own filters (`store/search.py`), and hand what they
take to the download engine with origin `rule:NAME`. Per rule and track, the decision (queued,
skipped with its reason, or waiting for tomorrow's `max_per_day`) is recorded once
(`store/rules.py`), so a restart neither replays nor skips.

Choosing, in order: a song+version the library holds (downloaded, adopted or deleted by the user,
found by the library's own song keys, `store/library.py`) is skipped; a track that already has a
job is skipped (one job, whoever asked first); of one song+version offered by several pools in
the same look, the copy from the first of `[library] prefer_pools` is taken; with `one_version`,
of the versions of one song the first of `prefer_mix` is taken, and only once. A look waits until
no catalog pass is running, so pools synced together are "the same sync".

One concept in one module (~600 lines): the `Rules` component, whose matching, choosing and
daily cap share one look's state (`_Round`) and the per-rule decisions; the SQL is in
`store/rules.py` and `store/search.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from pooldaemon.config_rules import RuleConfig
from pooldaemon.errors import BadRequest, Conflict, NotFound, PoolDaemonError
from pooldaemon.events import EventBus
from pooldaemon.localzone import local_day, local_zone, seconds_to_midnight
from pooldaemon.log import get_logger
from pooldaemon.models import Request
from pooldaemon.search import parse_search, search_terms
from pooldaemon.songkey import Parsed, fold, parse_version, same_recording
from pooldaemon.store import rules as rule_rows
from pooldaemon.store.catalog import track_song
from pooldaemon.store.db import Store
from pooldaemon.store.library import Held, held_songs
from pooldaemon.store.search import CatalogQuery, key_range, matching_tracks, spellings
from pooldaemon.store.search import search as search_catalog
from pooldaemon.sync import Submit
from pooldaemon.tasks import cancel_and_wait

log = get_logger(__name__)

#: The most tracks a backfill takes from the mirror in one run (R1's 50,000 fit).
BACKFILL_LIMIT = 1_000_000
PREVIEW_MAX_LIMIT = 500
#: How long a look waits for other pools' catalog passes to end (to count as one sync).
QUIET_WAIT_S = 30.0


def _song(track: Mapping[str, Any]) -> Parsed:
    """Song, key and version of a track as the mirror's rows give it."""
    return track_song(
        track.get("artist"),
        track.get("title"),
        track.get("mix"),
        track.get("advisory"),
        track.get("video"),
        track.get("quality"),
    )


@dataclass
class _Tally:
    queued: int = 0
    skipped: int = 0
    waiting: int = 0

    def add(self, state: str) -> None:
        setattr(self, state, getattr(self, state) + 1)


@dataclass
class _Taken:
    """A song+version some rule has taken (queued or waiting), for de-duplication."""

    ref: str
    version: str
    length_s: int | None
    rule: str


@dataclass
class _Round:
    """What one look knows across its rules, read once: jobs, songs taken and held, decisions
    made, jobs started today, spellings in the mirror; and the decisions it makes."""

    today: str
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    taken: dict[str, list[_Taken]] = field(default_factory=dict)
    held: dict[str, list[Held]] = field(default_factory=dict)
    decided: set[tuple[str, str, str]] = field(default_factory=set)
    started: dict[str, int] = field(default_factory=dict)
    songs: dict[str, Parsed] = field(default_factory=dict)
    spellings: dict[str, list[str]] = field(default_factory=dict)
    decisions: list[rule_rows.Decision] = field(default_factory=list)


class Rules:
    """Every `[[rules]]` table, evaluated after catalog passes and on request."""

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        store: Store,
        submit: Submit,
        events: EventBus,
        *,
        pools: Collection[str],
        prefer_pools: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        zone: tzinfo | None = None,
    ) -> None:
        self.rules = {rule.name: rule for rule in rules}
        self.store = store
        self.submit = submit
        self.events = events
        #: The enabled pools that have a catalog: "every pool" for a rule that names none.
        self.pools = tuple(pools)
        self.prefer_pools = tuple(prefer_pools)
        self.clock = clock
        #: max_per_day's days are in the zone the schedule windows use (the daemon passes it).
        self.zone = zone if zone is not None else local_zone(os.environ)
        self._first_seen: dict[str, float] = {}
        self._running: set[str] = set()
        #: Set while no catalog pass runs.
        self._idle = asyncio.Event()
        self._idle.set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Note rules seen for the first time; start what waited for today; watch midnight."""
        self._first_seen = await rule_rows.record_rules(self.store, self.rules, self.clock())
        await self.release_waiting()
        self._task = asyncio.create_task(self._midnights(), name="rules-midnight")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _midnights(self) -> None:
        """max_per_day: what waited starts when the local day changes."""
        while True:
            await asyncio.sleep(seconds_to_midnight(self.clock(), self.zone) + 1.0)
            try:
                await self.release_waiting()
            except PoolDaemonError as err:
                log.warning("rules: waiting matches not started", error=err.message)

    # -- the catalog passes (sync.CatalogWatch) -------------------------------------------------

    def pass_started(self, pool: str) -> None:
        """A catalog pass of `pool` began: its new tracks are not looked at until it ends."""
        self._running.add(pool)
        self._idle.clear()

    def pass_aborted(self, pool: str) -> None:
        """A catalog pass failed or was cancelled: what it wrote is looked at after the next."""
        self._running.discard(pool)
        if not self._running:
            self._idle.set()

    async def pass_ended(self, pool: str, seen_at: float, back_catalog: bool) -> None:
        """A catalog pass ended: look at the new tracks once no other pass is running, so
        pools synced together count as one sync (prefer_pools decides between them)."""
        if back_catalog:
            # A pool's first pass is its back catalog: no rule sees it (docs/reliability.md R1).
            await rule_rows.set_cursor(self.store, pool, seen_at)
        elif pool not in await rule_rows.cursors(self.store):
            # Rules added to a daemon whose mirror this pool already filled: new tracks are
            # those since the first rule appeared.
            await rule_rows.set_cursor(
                self.store, pool, min(self._first_seen.values(), default=seen_at)
            )
        self.pass_aborted(pool)
        with contextlib.suppress(TimeoutError):
            # Not for ever: a long pass elsewhere (a 174,420-track full sync takes ~10 s) must
            # not hold this sync's answer; its pool is looked at after its own pass.
            await asyncio.wait_for(self._idle.wait(), QUIET_WAIT_S)
        try:
            await self.evaluate()
        except Exception:  # a rule's failure must not fail the sync; the next pass retries
            log.exception("rules: looking at new tracks failed", pool=pool)

    # -- looking at new tracks ------------------------------------------------------------------

    async def evaluate(self) -> dict[str, dict[str, int]]:
        """Look at every pool's tracks that entered the mirror since the last look."""
        async with self._lock:
            return await self._evaluate(list(self.rules.values()))

    async def _evaluate(self, rules: list[RuleConfig]) -> dict[str, dict[str, int]]:
        cursors = await rule_rows.cursors(self.store)
        fresh: dict[str, list[tuple[int, float]]] = {}
        newest: dict[str, float] = {}
        for pool in self.pools:
            if pool in self._running:
                continue  # looked at after its own pass
            after = cursors.get(pool)
            if after is None:
                continue  # no pass since the rules began: nothing is new yet
            rows = await rule_rows.new_tracks(self.store, pool, after)
            if rows:
                fresh[pool] = rows
                newest[pool] = max(first_seen for _, first_seen in rows)
        tallies: dict[str, dict[str, int]] = {}
        if fresh:
            state = _Round(today=local_day(self.clock(), self.zone))
            keys = await key_range(self.store, [r for rows in fresh.values() for r, _ in rows])
            matched: dict[str, list[dict[str, Any]]] = {}
            for rule in rules:
                if not rule.enabled:
                    continue
                since = self._first_seen.get(rule.name, self.clock())
                candidates = [
                    rowid
                    for pool in self._pools_of(rule)
                    for rowid, first_seen in fresh.get(pool, [])
                    if first_seen > since
                ]
                matched[rule.name] = await self._matches(rule, state, candidates, keys)
            await self._prefetch(state, matched)
            for name, tracks in matched.items():
                tally = await self._decide(self.rules[name], tracks, state)
                tallies[name] = dataclasses.asdict(tally)
                if tracks:
                    self.events.publish("rule", name=name, **tallies[name])
            # One transaction for the look. A crash before it leaves jobs whose origin is their
            # rule, which the next look records as queued; the rest is decided again.
            await rule_rows.record(self.store, state.decisions, self.clock())
        for pool, top in newest.items():
            await rule_rows.set_cursor(self.store, pool, top)
        return tallies

    async def _prefetch(self, state: _Round, matched: Mapping[str, list[dict[str, Any]]]) -> None:
        """Read once what deciding about these matches needs (a handful of queries a look)."""
        tracks = {t["ref"]: t for found in matched.values() for t in found}
        for ref, track in tracks.items():
            if ref not in state.songs:
                state.songs[ref] = _song(track)
        refs = {(t["pool"], t["id"]) for t in tracks.values()}
        keys = {song.key for song in state.songs.values()}
        state.held = await held_songs(self.store, keys)
        state.jobs.update(await rule_rows.live_jobs(self.store, refs - state.jobs.keys()))
        for row in await rule_rows.taken_versions(self.store, keys - state.taken.keys()):
            state.taken.setdefault(row["song_key"], []).append(
                _Taken(
                    f"{row['pool']}:{row['item_id']}", row["version"], row["length_s"], row["rule"]
                )
            )
        state.decided |= await rule_rows.decided(self.store, refs)
        state.started = await rule_rows.started_by_rule(self.store, state.today)

    def _pools_of(self, rule: RuleConfig) -> tuple[str, ...]:
        return tuple(p for p in (rule.pools or self.pools) if p in self.pools)

    # -- matching -------------------------------------------------------------------------------

    async def query(
        self, rule: RuleConfig, state: _Round | None = None, *, limit: int = 50, offset: int = 0
    ) -> CatalogQuery | None:
        """The rule as a catalog query (docs/interface.md §4 semantics); None: it can match
        nothing (no pool of it enabled, or a genre or mix no track has)."""
        state = state or _Round(today=local_day(self.clock(), self.zone))
        pools = self._pools_of(rule)
        if not pools:
            return None
        base = parse_search(
            {
                "q": rule.words,
                "bpm": rule.bpm or "",
                "year": rule.year or "",
                "advisory": rule.advisory or "",
                "media": rule.media or "",
            }
        )
        genres = await self._spelled(state, "genre", rule.genre)
        mixes = await self._spelled(state, "mix", rule.mix)
        if (rule.genre and not genres) or (rule.mix and not mixes):
            return None
        return dataclasses.replace(
            base,
            pools=pools,
            genres=genres,
            mixes=mixes,
            exclude_terms=tuple(t for t in map(search_terms, rule.exclude_words) if t),
            exclude_mixes=await self._spelled(state, "mix", rule.exclude_mix),
            limit=limit,
            offset=offset,
        )

    async def _spelled(self, state: _Round, column: str, values: Sequence[str]) -> tuple[str, ...]:
        """The mirror's spellings of these genre or mix values: whole values, case-insensitive
        in every script (casefold), accents significant (docs/interface.md §7)."""
        if not values:
            return ()
        known = state.spellings.get(column)
        if known is None:
            known = state.spellings[column] = await spellings(
                self.store, "genre" if column == "genre" else "mix"
            )
        wanted = {value.casefold() for value in values}
        return tuple(value for value in known if value.casefold() in wanted)

    async def _matches(
        self,
        rule: RuleConfig,
        state: _Round,
        rowids: list[int],
        keys: tuple[int, int] | None,
    ) -> list[dict[str, Any]]:
        if not rowids or keys is None:
            return []
        query = await self.query(rule, state)
        if query is None:
            return []
        return await matching_tracks(self.store, query, rowids, keys)

    # -- choosing -------------------------------------------------------------------------------

    def _mix_rank(self, rule: RuleConfig, track: Mapping[str, Any], mix: str | None) -> int:
        """Position of the track's mix in prefer_mix, read as a version (docs/songs.md: "Main"
        is the plain song) or as the pool's own mix name; after all of them when not listed."""
        pool_mix = fold(str(track.get("mix") or ""))
        for rank, wanted in enumerate(rule.prefer_mix):
            if parse_version(wanted).mix == mix or (pool_mix and fold(wanted) == pool_mix):
                return rank
        return len(rule.prefer_mix)

    def _pool_rank(self, pool: str) -> int:
        return (
            self.prefer_pools.index(pool) if pool in self.prefer_pools else len(self.prefer_pools)
        )

    async def _decide(
        self, rule: RuleConfig, tracks: list[dict[str, Any]], state: _Round
    ) -> _Tally:
        """Queue, skip or hold each matched track (in `tracks`' order, newest first); what is
        known comes from `_prefetch`, and the decisions go to `state.decisions`."""
        tally = _Tally()
        tracks = [t for t in tracks if (rule.name, t["pool"], t["id"]) not in state.decided]
        if not tracks:
            return tally
        songs = [state.songs[t["ref"]] for t in tracks]
        order = sorted(
            range(len(tracks)),
            key=lambda i: (
                self._mix_rank(rule, tracks[i], songs[i].version.mix) if rule.one_version else 0,
                self._pool_rank(tracks[i]["pool"]),
            ),
        )
        held = state.held
        started = state.started.get(rule.name, 0)
        decisions = state.decisions
        for i in order:
            track, song = tracks[i], songs[i]
            ref, version, length = track["ref"], song.version.label, track.get("length_s")
            decision = _decision_for(rule, track, song.key, version, length)
            reason = self._skip_reason(
                rule, state, held.get(song.key, []), ref, song.key, version, length
            )
            job = state.jobs.get((track["pool"], track["id"]))
            if reason is None and job is not None:
                if job["origin"] == rule.origin:
                    # Started by this rule before a crash kept it from saying so.
                    decisions.append(decision(state="queued", job_id=job["id"], day=state.today))
                    tally.add("queued")
                    continue
                reason = f"already job {job['id']} ({job['origin']}, {job['state']})"
            if reason is not None:
                decisions.append(decision(state="skipped", reason=reason))
                tally.add("skipped")
                continue
            taken = _Taken(ref, version, length, rule.name)
            if rule.max_per_day is not None and started >= rule.max_per_day:
                state.taken.setdefault(song.key, []).append(taken)
                decisions.append(decision(state="waiting", reason="max_per_day reached today"))
                tally.add("waiting")
                continue
            try:
                job = await self.submit(
                    Request(track["pool"], track["id"]),
                    rule.origin,
                    title=track.get("title"),
                    artist=track.get("artist"),
                )
            except PoolDaemonError as err:
                decisions.append(decision(state="skipped", reason=err.message))
                tally.add("skipped")
                continue
            state.taken.setdefault(song.key, []).append(taken)
            state.jobs[(track["pool"], track["id"])] = {
                "id": job["id"],
                "state": job["state"],
                "origin": job.get("origin", rule.origin),
            }
            started += 1
            decisions.append(decision(state="queued", job_id=job["id"], day=state.today))
            tally.add("queued")
        state.started[rule.name] = started
        state.decided |= {(d.rule, d.pool, d.item_id) for d in decisions if d.rule == rule.name}
        return tally

    def _skip_reason(
        self,
        rule: RuleConfig,
        state: _Round,
        held: list[Any],
        ref: str,
        key: str,
        version: str,
        length: int | None,
    ) -> str | None:
        for entry in held:
            if entry.version == version and same_recording(entry.length_s, length):
                return f"in the library ({entry.state}): {entry.path}"
        if rule.one_version and held:
            shown = held[0].version or "main"
            return f"one version: the library has {held[0].ref} ({shown})"
        for taken in state.taken.get(key, []):
            if rule.one_version and taken.rule == rule.name and taken.ref != ref:
                shown = taken.version or "main"
                return f"one version: took {taken.ref} ({shown})"
            if taken.version == version and same_recording(taken.length_s, length):
                if taken.ref == ref:
                    return f"taken by rule {taken.rule}"
                return f"same song and version as {taken.ref} (rule {taken.rule})"
        return None

    # -- asked for by the user ------------------------------------------------------------------

    def rule(self, name: str) -> RuleConfig:
        """The rule of that name; NotFound names the rules there are."""
        rule = self.rules.get(name)
        if rule is None:
            known = ", ".join(self.rules) or "none configured"
            raise NotFound(f"no rule {name!r} (rules: {known})")
        return rule

    async def list(self) -> dict[str, Any]:
        """`GET /v1/rules`: each rule with its counts since it appeared."""
        counts = await rule_rows.counts(self.store)
        items = []
        for name, rule in self.rules.items():
            seen = counts.get(name, {})
            items.append(
                {
                    "name": name,
                    "enabled": rule.enabled,
                    "matched": seen.get("matched", 0),
                    "queued": seen.get("queued", 0),
                    "skipped": seen.get("skipped", 0),
                    "waiting": seen.get("waiting", 0),
                    "last_match": _iso(seen.get("last_match")),
                }
            )
        return {"items": items}

    async def preview(self, name: str, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """`GET /v1/rules/{name}/preview`: the mirror's tracks the rule matches — what a
        backfill would take — newest first, each marked `in_library`; nothing is downloaded."""
        rule = self.rule(name)
        if not 1 <= limit <= PREVIEW_MAX_LIMIT:
            raise BadRequest(f"limit: must be between 1 and {PREVIEW_MAX_LIMIT} (got {limit})")
        if offset < 0:
            raise BadRequest(f"offset: must be 0 or more (got {offset})")
        query = await self.query(rule, limit=limit, offset=offset)
        if query is None:
            return {"total": 0, "items": []}
        answer = await search_catalog(self.store, query)
        songs = [_song(track) for track in answer["items"]]
        held = await held_songs(self.store, {song.key for song in songs})
        for track, song in zip(answer["items"], songs, strict=True):
            label = song.version.label
            track["song"] = song.song
            track["version"] = label
            track["in_library"] = any(
                h.version == label and same_recording(h.length_s, track.get("length_s"))
                for h in held.get(song.key, [])
            )
        return answer

    async def run(self, name: str, *, backfill: bool, since: str | None = None) -> dict[str, int]:
        """`POST /v1/rules/{name}/run`: `{"queued", "skipped"}` — every track of the mirror the
        rule matches (dated `since` or later), which only an explicit backfill takes (R1)."""
        rule = self.rule(name)
        if not backfill:
            raise BadRequest(
                'give "backfill": true to take the tracks already in the mirror (new tracks '
                "are looked at after every catalog sync)"
            )
        if not rule.enabled:
            raise Conflict(f"rule {name!r} is disabled in the config (enabled = false)")
        if since is not None:
            try:
                since = dt.date.fromisoformat(since.strip()).isoformat()
            except ValueError:
                raise BadRequest(
                    f"since: expected a date as YYYY-MM-DD (got {since[:40]!r})"
                ) from None
        async with self._lock:
            state = _Round(today=local_day(self.clock(), self.zone))
            query = await self.query(rule, state, limit=BACKFILL_LIMIT)
            if query is None:
                return {"queued": 0, "skipped": 0}
            if since is not None:
                query = dataclasses.replace(query, since_date=since)
            tracks = (await search_catalog(self.store, query))["items"]
            await self._prefetch(state, {rule.name: tracks})
            result = await self._decide(rule, tracks, state)
            await rule_rows.record(self.store, state.decisions, self.clock())
        log.info("rule backfill", rule=name, since=since, **dataclasses.asdict(result))
        return {"queued": result.queued, "skipped": result.skipped}

    async def release_waiting(self) -> int:
        """Start what waited for a new day, up to each rule's max_per_day; returns how many."""
        started_now = 0
        async with self._lock:
            state = _Round(today=local_day(self.clock(), self.zone))
            for rule in self.rules.values():
                if not rule.enabled:
                    continue
                started = await rule_rows.started_on(self.store, rule.name, state.today)
                room = (rule.max_per_day - started) if rule.max_per_day is not None else 1_000_000
                if room <= 0:
                    continue
                rows = await rule_rows.waiting(self.store, rule.name, room)
                if not rows:
                    continue
                refs = [(row["pool"], row["item_id"]) for row in rows]
                jobs = await rule_rows.live_jobs(self.store, refs)
                held = await held_songs(self.store, {row["song_key"] for row in rows})
                for row in rows:
                    pool, item_id = row["pool"], row["item_id"]
                    job = jobs.get((pool, item_id))
                    reason = next(
                        (
                            f"in the library ({h.state}): {h.path}"
                            for h in held.get(row["song_key"], [])
                            if h.version == row["version"]
                            and same_recording(h.length_s, row["length_s"])
                        ),
                        None,
                    )
                    if reason is None and job is not None and job["origin"] != rule.origin:
                        reason = f"already job {job['id']} ({job['origin']}, {job['state']})"
                    if reason is not None:
                        await rule_rows.settle(
                            self.store, rule.name, pool, item_id, state="skipped", reason=reason
                        )
                        continue
                    if job is None:
                        try:
                            job = await self.submit(Request(pool, item_id), rule.origin)
                        except PoolDaemonError as err:
                            await rule_rows.settle(
                                self.store,
                                rule.name,
                                pool,
                                item_id,
                                state="skipped",
                                reason=err.message,
                            )
                            continue
                    await rule_rows.settle(
                        self.store,
                        rule.name,
                        pool,
                        item_id,
                        state="queued",
                        job_id=job["id"],
                        day=state.today,
                    )
                    started_now += 1
        return started_now


def _decision_for(
    rule: RuleConfig, track: Mapping[str, Any], key: str, version: str, length: int | None
) -> Callable[..., rule_rows.Decision]:
    """A Decision about this track, waiting for its state (and reason, job, day)."""

    def make(**fields: Any) -> rule_rows.Decision:
        return rule_rows.Decision(
            rule=rule.name,
            pool=str(track["pool"]),
            item_id=str(track["id"]),
            song_key=key,
            version=version,
            length_s=length,
            **fields,
        )

    return make


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return (
        dt.datetime.fromtimestamp(stamp, dt.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )
