"""Rules (docs/interface.md §7) against the simulated pools and a real state database.

What a rule must match is computed here from the generator's records, apart from the search SQL
(as tests/test_search.py does); jobs go through the real engine's submit.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from pooldaemon.config import DaemonConfig
from pooldaemon.config_rules import RuleConfig
from pooldaemon.downloader.engine import Engine
from pooldaemon.errors import BadRequest, NotFound
from pooldaemon.events import EventBus
from pooldaemon.library.keeper import Library
from pooldaemon.library_config import LibraryConfig
from pooldaemon.localzone import local_day, local_zone
from pooldaemon.models import JobState, Request
from pooldaemon.pools.base import PoolAdapter
from pooldaemon.rules import Rules
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.media import write_media
from pooldaemon.songkey import parse
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store import rules as rule_rows
from pooldaemon.store.db import Store
from pooldaemon.store.jobs import list_jobs
from pooldaemon.sync import PoolSync, auto_download_jobs
from tests.conftest import crateq_adapter
from tests.library.test_adopt import no_submit, tag

RECORDS = 600


def rule(**fields: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": "r", **fields})


class Harness:
    """Store, engine (not started: its submit is what rules use), pool syncs and the rules."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        adapters: dict[str, PoolAdapter],
        tmp_path: Path,
        clock: Callable[[], float],
        zone: tzinfo | None = None,
    ) -> None:
        self.store = store
        self.bus = EventBus()
        config = DaemonConfig.model_validate({"download_dir": str(tmp_path / "library")})
        self.engine = Engine(store, session, adapters, config, self.bus)
        self.adapters = adapters
        self.clock = clock
        self.zone = zone
        self.rules: Rules | None = None
        self.syncs: dict[str, PoolSync] = {}

    async def submit(self, request: Request, origin: str, **known: str | None) -> dict[str, Any]:
        job, _created = await self.engine.submit(request, origin, **known)
        return job

    async def start(self, rules: list[RuleConfig], prefer_pools: tuple[str, ...] = ()) -> Rules:
        """(Re)start the rules, as a daemon start does."""
        if self.rules is not None:
            await self.rules.stop()
        self.rules = Rules(
            rules,
            self.store,
            self.submit,
            self.bus,
            pools=list(self.adapters),
            prefer_pools=prefer_pools,
            clock=self.clock,
            zone=self.zone,
        )
        await self.rules.start()
        self.syncs = {
            name: PoolSync(
                name,
                adapter,
                self.store,
                self.bus,
                auto_download_jobs(self.submit),
                clock=self.clock,
                catalog_watch=self.rules,
            )
            for name, adapter in self.adapters.items()
        }
        return self.rules

    async def sync(self, *pools: str) -> None:
        for name in pools or tuple(self.syncs):
            await self.syncs[name].sync_catalog()

    async def jobs(self) -> list[dict[str, Any]]:
        return await list_jobs(self.store)

    async def stop(self) -> None:
        if self.rules is not None:
            await self.rules.stop()


@pytest.fixture
async def sim() -> AsyncIterator[CrateQSim]:
    async with CrateQSim(records=RECORDS, seed="rules") as server:
        yield server


@pytest.fixture
async def harness(
    store: Store, session: aiohttp.ClientSession, sim: CrateQSim, tmp_path: Path
) -> AsyncIterator[Harness]:
    h = Harness(
        store, session, {"crateq": crateq_adapter(sim, session, rows=200)}, tmp_path, sim.clock
    )
    yield h
    await h.stop()


# -- the truth, computed apart from the SQL ------------------------------------------------------


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", fold(text))


def numbers_hold(spec: str | None, value: int) -> bool:
    if spec is None:
        return True
    if "-" in spec:
        low, high = (int(part) for part in spec.split("-"))
        return low <= value <= high
    return value in {int(part) for part in spec.split(",")}


def rule_holds(r: RuleConfig, record: dict[str, Any]) -> bool:
    """docs/interface.md §7 and §4, read off a generator record (CrateQ field names)."""
    haystack = words(f"{record['artist']} {record['title']} {record['editor']}")
    for term in words(r.words):
        if not any(word.startswith(term) for word in haystack):
            return False
    for excluded in r.exclude_words:
        terms = words(excluded)
        if terms and all(any(w.startswith(t) for w in haystack) for t in terms):
            return False
    if r.genre and record["genre"].casefold() not in {g.casefold() for g in r.genre}:
        return False
    if r.mix and record["tool"].casefold() not in {m.casefold() for m in r.mix}:
        return False
    if record["tool"].casefold() in {m.casefold() for m in r.exclude_mix}:
        return False
    if not numbers_hold(r.bpm, record["bpm"]) or not numbers_hold(r.year, record["releaseYear"]):
        return False
    if r.advisory == "clean" and record["advisory"].casefold() != "clean":
        return False
    if r.advisory == "dirty" and record["advisory"].casefold() not in ("dirty", "explicit"):
        return False
    return not (r.media == "video" and not record["video"]) and not (
        r.media == "audio" and not record["audio"]
    )


def truth(sim: CrateQSim, r: RuleConfig, ids: list[int] | None = None) -> set[str]:
    records = sim.catalog.records() if ids is None else (sim.catalog[i] for i in ids)
    return {f"crateq:{rec['mediaId']}" for rec in records if rule_holds(r, rec)}


# Non-ASCII genres: case differs in other scripts, and accents are part of the value.
ODD_GENRES = ["Électro", "ÉLECTRO", "Electro", "électro", "Кино-Поп", "КИНО-ПОП", "Straße"]


def random_rule(rng: random.Random, sim: CrateQSim) -> RuleConfig:
    records = list(sim.catalog.records())
    pick = rng.choice(records)
    fields: dict[str, Any] = {}
    if rng.random() < 0.4:
        fields["words"] = rng.choice(words(f"{pick['artist']} {pick['title']}"))[:4]
    if rng.random() < 0.5:
        genres = {rng.choice(records)["genre"] for _ in range(rng.randint(1, 3))}
        if rng.random() < 0.5:
            genres.add(rng.choice(ODD_GENRES).swapcase())
        fields["genre"] = sorted({g.casefold(): g for g in sorted(genres)}.values())
    if rng.random() < 0.3:
        low = rng.randint(70, 130)
        fields["bpm"] = f"{low}-{low + rng.randint(0, 20)}"
    if rng.random() < 0.2:
        fields["year"] = f"{pick['releaseYear']}"
    if rng.random() < 0.4:
        fields["mix"] = sorted({rng.choice(records)["tool"] for _ in range(2)})
    if rng.random() < 0.3:
        fields["exclude_mix"] = [rng.choice(["Acapella", "Short Edit", "Intro"]).upper()]
    if rng.random() < 0.3:
        fields["exclude_words"] = [rng.choice(words(pick["title"]))]
    if rng.random() < 0.3:
        fields["advisory"] = rng.choice(["clean", "dirty"])
    if rng.random() < 0.3:
        fields["media"] = rng.choice(["audio", "video"])
    return rule(**fields)


# -- matching ------------------------------------------------------------------------------------


async def test_rules_match_what_the_records_say_including_non_ascii_genres(
    harness: Harness, sim: CrateQSim
) -> None:
    ids = sim.catalog.ids()
    rng = random.Random(14)
    for media_id in rng.sample(ids, 60):
        sim.catalog.update([media_id], genre=rng.choice(ODD_GENRES))
    rules = await harness.start([rule(name="warmup")])
    await harness.sync()
    fixed = [
        rule(name="odd", genre=["électro", "кино-поп"]),
        rule(name="strasse", genre=["STRASSE"]),  # casefold("Straße") is "strasse"
        rule(name="upper", genre=["ÉLECTRO"], exclude_mix=["intro"]),
    ]
    randoms = [random_rule(rng, sim).model_copy(update={"name": f"x{i}"}) for i in range(40)]
    for r in fixed + randoms:
        rules.rules = {r.name: r}
        answer = await rules.preview(r.name, limit=500)
        got = {item["ref"] for item in answer["items"]}
        want = truth(sim, r)
        assert answer["total"] == len(want), r
        if len(want) <= 500:
            assert got == want, r
        else:
            assert got <= want, r
    assert sum(bool(truth(sim, r)) for r in randoms) >= 10  # the rules are not all empty
    rules.rules = {"odd": fixed[0]}
    matched = {item["genre"] for item in (await rules.preview("odd", limit=500))["items"]}
    assert matched == {"Électro", "ÉLECTRO", "électro", "Кино-Поп", "КИНО-ПОП"}


async def test_new_tracks_are_matched_as_the_records_say(
    harness: Harness, sim: CrateQSim, store: Store
) -> None:
    """The look after a sync (driven from the new rows) agrees with the records too."""
    rng = random.Random(7)
    randoms = [random_rule(rng, sim).model_copy(update={"name": f"x{i}"}) for i in range(20)]
    await harness.start(randoms)
    await harness.sync()
    sim.advance(3600)
    new = sim.catalog.add(150)
    for media_id in new:
        if rng.random() < 0.3:
            sim.catalog.update([media_id], genre=rng.choice(ODD_GENRES))
    await harness.sync()
    rows = await store.fetchall("SELECT rule, pool, item_id FROM rule_matches")
    for r in randoms:
        got = {f"{row[1]}:{row[2]}" for row in rows if row[0] == r.name}
        assert got == truth(sim, r, new), r
    # Each matched track is one job, unless it is another copy of a song+version taken.
    jobs = [j["ref"] for j in await harness.jobs()]
    assert len(jobs) == len(set(jobs))
    skipped = await store.fetchall(
        "SELECT pool || ':' || item_id, reason FROM rule_matches WHERE state = 'skipped'"
    )
    for ref, reason in skipped:
        assert ref in jobs or reason.startswith("same song and version as crateq:"), reason
    assert {f"{row[1]}:{row[2]}" for row in rows} == set(jobs) | {row[0] for row in skipped}


async def test_new_tracks_become_jobs_the_back_catalog_never(
    harness: Harness, sim: CrateQSim
) -> None:
    everything = rule(name="everything")
    await harness.start([everything])
    await harness.sync()  # the first pass: back catalog
    assert await harness.jobs() == []
    sim.advance(3600)
    new = sim.catalog.add(4)
    await harness.sync()
    jobs = await harness.jobs()
    assert {j["ref"] for j in jobs} == {f"crateq:{i}" for i in new}
    assert {j["origin"] for j in jobs} == {"rule:everything"}
    listed = (await harness.rules.list())["items"]  # type: ignore[union-attr]
    assert listed[0]["matched"] == 4 and listed[0]["queued"] == 4
    assert listed[0]["last_match"] is not None


async def test_only_new_tracks_across_a_restart(
    harness: Harness, sim: CrateQSim, store: Store
) -> None:
    house = rule(name="house")
    await harness.start([house])
    await harness.sync()
    sim.advance(3600)
    first = sim.catalog.add(3)
    await harness.sync()
    assert len(await harness.jobs()) == 3
    # A restart: the same tracks are not matched again.
    await harness.start([house])
    await harness.sync()
    assert len(await harness.jobs()) == 3
    # Tracks that entered while no rule looked (a crash between the pass and the look) are
    # looked at after the next pass: nothing is skipped.
    sim.advance(3600)
    unseen = sim.catalog.add(2)
    plain = PoolSync("crateq", harness.adapters["crateq"], store, harness.bus, clock=sim.clock)
    await plain.sync_catalog()
    await harness.start([house])
    await harness.sync()
    refs = {j["ref"] for j in await harness.jobs()}
    assert refs == {f"crateq:{i}" for i in first + unseen}
    # A rule added later does not look at what entered before it appeared.
    later = rule(name="later")
    await harness.start([house, later])
    await harness.sync()
    listed = {item["name"]: item for item in (await harness.rules.list())["items"]}  # type: ignore[union-attr]
    assert listed["later"]["matched"] == 0
    sim.advance(3600)
    newest = sim.catalog.add(1)
    await harness.sync()
    listed = {item["name"]: item for item in (await harness.rules.list())["items"]}  # type: ignore[union-attr]
    assert listed["later"]["matched"] == 1
    assert listed["later"]["skipped"] == 1  # the house rule's job stands for it
    assert {j["ref"] for j in await harness.jobs()} == {
        f"crateq:{i}" for i in first + unseen + newest
    }


async def test_backfill_with_and_without_since(harness: Harness, sim: CrateQSim) -> None:
    club = rule(name="club", mix=["Club"], advisory="clean")
    rules = await harness.start([club])
    await harness.sync()
    assert await harness.jobs() == []
    dates = sorted({rec["date"] for rec in sim.catalog.records()})
    since = dates[len(dates) // 2]
    want_since = {
        f"crateq:{rec['mediaId']}"
        for rec in sim.catalog.records()
        if rule_holds(club, rec) and rec["date"] >= since
    }
    result = await rules.run("club", backfill=True, since=since)
    assert result == {"queued": len(want_since), "skipped": 0}
    assert {j["ref"] for j in await harness.jobs()} == want_since
    want_all = truth(sim, club)
    again = await rules.run("club", backfill=True)
    assert again == {"queued": len(want_all - want_since), "skipped": 0}
    assert {j["ref"] for j in await harness.jobs()} == want_all
    assert await rules.run("club", backfill=True) == {"queued": 0, "skipped": 0}
    with pytest.raises(BadRequest, match="backfill"):
        await rules.run("club", backfill=False)
    with pytest.raises(BadRequest, match="YYYY-MM-DD"):
        await rules.run("club", backfill=True, since="last week")
    with pytest.raises(NotFound, match="no rule 'nope' \\(rules: club\\)"):
        await rules.run("nope", backfill=True)


# -- choosing ------------------------------------------------------------------------------------


async def test_max_per_day_waits_across_a_faked_midnight_and_a_restart(
    store: Store, session: aiohttp.ClientSession, sim: CrateQSim, tmp_path: Path
) -> None:
    now = [time.mktime((2026, 3, 1, 23, 0, 0, 0, 0, -1))]
    h = Harness(
        store, session, {"crateq": crateq_adapter(sim, session, rows=200)}, tmp_path, lambda: now[0]
    )
    capped = rule(name="capped", max_per_day=3)
    rules = await h.start([capped])
    await h.sync()
    sim.advance(3600)
    now[0] += 60
    new = sim.catalog.add(8)
    await h.sync()
    assert len(await h.jobs()) == 3
    listed = (await rules.list())["items"][0]
    assert (listed["queued"], listed["waiting"]) == (3, 5)
    # Still the same day after a restart: nothing more starts.
    rules = await h.start([capped])
    assert len(await h.jobs()) == 3
    # Past local midnight: three more, then the last two the day after.
    now[0] += 3600
    assert local_day(now[0], local_zone(os.environ)) == "2026-03-02"
    assert await rules.release_waiting() == 3
    assert await rules.release_waiting() == 0
    now[0] += 86_400
    rules = await h.start([capped])  # a restart on the next day starts what waited
    jobs = await h.jobs()
    assert {j["ref"] for j in jobs} == {f"crateq:{i}" for i in new}
    days = await store.fetchall("SELECT day, COUNT(*) FROM rule_matches GROUP BY day ORDER BY day")
    assert [tuple(row) for row in days] == [("2026-03-01", 3), ("2026-03-02", 3), ("2026-03-03", 2)]
    await h.stop()


async def test_max_per_day_days_are_the_configured_zones(
    store: Store, session: aiohttp.ClientSession, sim: CrateQSim, tmp_path: Path
) -> None:
    # Auckland's midnight is 11:00 UTC in March: a day counted in UTC (or in the machine's zone,
    # UTC here) would not change across it.
    auckland = ZoneInfo("Pacific/Auckland")
    now = [datetime(2026, 3, 1, 23, 0, tzinfo=auckland).timestamp()]
    h = Harness(
        store,
        session,
        {"crateq": crateq_adapter(sim, session, rows=200)},
        tmp_path,
        lambda: now[0],
        auckland,
    )
    capped = rule(name="capped", max_per_day=2)
    rules = await h.start([capped])
    await h.sync()
    sim.advance(3600)
    now[0] += 60
    sim.catalog.add(5)
    await h.sync()
    assert len(await h.jobs()) == 2
    assert await rules.release_waiting() == 0
    now[0] += 3600  # 00:01 on 2 March in Auckland, 11:01 on 1 March in UTC
    assert await rules.release_waiting() == 2
    assert len(await h.jobs()) == 4
    days = await store.fetchall("SELECT day, COUNT(*) FROM rule_matches GROUP BY day ORDER BY day")
    assert [tuple(row) for row in days] == [(None, 1), ("2026-03-01", 2), ("2026-03-02", 2)]
    await h.stop()


async def test_three_rules_and_a_queue_item_on_one_track_make_one_job(
    harness: Harness, sim: CrateQSim, store: Store
) -> None:
    sim.advance(0)
    rules = [rule(name="a"), rule(name="b", words=""), rule(name="c")]
    await harness.start(rules)
    await harness.sync()
    sim.advance(3600)
    (track,) = sim.catalog.add(1)
    sim.add_to_queue([track])
    await harness.syncs["crateq"].sync()  # catalog (rules), then the queue
    jobs = await harness.jobs()
    assert [(j["ref"], j["origin"]) for j in jobs] == [(f"crateq:{track}", "rule:a")]
    decided = await store.fetchall("SELECT rule, state, reason FROM rule_matches ORDER BY rule")
    assert [tuple(row) for row in decided] == [
        ("a", "queued", None),
        ("b", "skipped", "taken by rule a"),
        ("c", "skipped", "taken by rule a"),
    ]


async def test_a_queue_item_first_then_the_rule_points_at_its_job(
    harness: Harness, sim: CrateQSim, store: Store
) -> None:
    await harness.start([rule(name="a")])
    await harness.sync()
    sim.advance(3600)
    (track,) = sim.catalog.add(1)
    sim.add_to_queue([track])
    await harness.syncs["crateq"].sync_queue()
    await harness.sync()
    jobs = await harness.jobs()
    assert [(j["ref"], j["origin"]) for j in jobs] == [(f"crateq:{track}", "auto")]
    (row,) = await store.fetchall("SELECT state, reason FROM rule_matches")
    assert row[0] == "skipped" and row[1].startswith(f"already job {jobs[0]['id']} (auto")


async def test_a_song_and_version_in_the_library_is_skipped(
    harness: Harness, sim: CrateQSim, store: Store
) -> None:
    await harness.start([rule(name="a")])
    await harness.sync()
    sim.advance(3600)
    glow = {"length": "4:00", "editor": "", "video": False, "quality": ""}
    (kept,) = sim.catalog.add(
        1, artist="Ana Lee", title="Glow [Clean Extended]", tool="Extended", **glow
    )
    (again,) = sim.catalog.add(1, artist="ana lee", title="Glow (Clean Extended)", **glow)
    (longer,) = sim.catalog.add(
        1, artist="Ana Lee", title="Glow [Clean Extended]", length="4:30", editor=""
    )
    now = time.time()
    # The entry carries its song as the library keyed it (docs/songs.md: case and spacing fold
    # into the key; a clean `Extended` is `extended clean`).
    await store.execute(
        "INSERT INTO library (pool, kind, item_id, format, path, size, sha256, state, created, "
        "updated, song_key, version) VALUES ('crateq', 'track', ?, '', '/music/glow.mp3', 1, "
        "'x', 'deleted', ?, ?, 'analee/glow', 'extended clean')",
        (str(kept), now, now),
    )
    await harness.sync()
    # Another recording (30 s longer) of the same song and version is not the library's.
    assert [j["ref"] for j in await harness.jobs()] == [f"crateq:{longer}"]
    rows = await store.fetchall("SELECT item_id, state, reason FROM rule_matches ORDER BY item_id")
    assert {row[0]: row[2] for row in rows} == {
        str(kept): "in the library (deleted): /music/glow.mp3",
        str(again): "in the library (deleted): /music/glow.mp3",
        str(longer): None,
    }
    preview = await harness.rules.preview("a", limit=500)  # type: ignore[union-attr]
    marked = {item["id"]: item["in_library"] for item in preview["items"]}
    assert marked[str(kept)] and marked[str(again)] and not marked[str(longer)]
    assert sum(marked.values()) == 2


async def test_a_song_adopted_under_another_spelling_is_skipped(
    harness: Harness, sim: CrateQSim, store: Store, tmp_path: Path
) -> None:
    # A 6-second recording: the file written below is as long (128 kbit/s, 16,000 bytes a second).
    glow = {"length": "0:06", "editor": "", "video": False, "quality": ""}
    spelled = {"artist": "Ana Lee feat. Bo", "title": "Glow [Clean Extended]", "tool": "Extended"}
    (old,) = sim.catalog.add(1, **spelled, **glow)
    await harness.start([rule(name="a")])
    await harness.sync()  # the back catalog: nothing taken
    # The DJ's own copy, tagged their way: case, the featured artist and the brackets differ.
    path = tmp_path / "music" / "glow.mp3"
    path.parent.mkdir()
    write_media(path, "mp3", "glow", 96_010)
    tag(path, "ANA LEE ft. Bo", "Glow (Extended Clean)")
    library = Library(store, LibraryConfig(), EventBus(), no_submit)
    report = await library.adopt([str(path.parent)])
    assert (report["matched"], report["problems"]) == (1, [])
    sim.advance(3600)
    (again,) = sim.catalog.add(1, **spelled, **glow)  # the same recording uploaded again
    await harness.sync()
    assert await harness.jobs() == []
    rows = await store.fetchall("SELECT item_id, state, reason FROM rule_matches")
    assert [tuple(row) for row in rows] == [
        (str(again), "skipped", f"in the library (adopted): {path}")
    ]
    preview = await harness.rules.preview("a", limit=500)  # type: ignore[union-attr]
    marked = {item["id"] for item in preview["items"] if item["in_library"]}
    assert marked == {str(old), str(again)}


async def test_a_download_just_finished_is_held_at_once(
    harness: Harness, sim: CrateQSim, store: Store
) -> None:
    # No library background pass runs here: the entry must know its song when it is recorded.
    await harness.start([rule(name="a")])
    await harness.sync()
    sim.advance(3600)
    glow = {"artist": "Ana Lee", "title": "Glow [Clean Extended]", "tool": "Extended"}
    glow |= {"length": "4:00", "editor": "", "video": False, "quality": ""}
    (first,) = sim.catalog.add(1, **glow)
    await harness.sync()
    (job,) = await harness.jobs()
    assert job["ref"] == f"crateq:{first}"
    for step in (JobState.RESOLVING, JobState.DOWNLOADING, JobState.VERIFYING):
        await store_jobs.transition(store, job["id"], step)
    await store_library.record_download(
        store, job["id"], path="/music/Ana Lee - Glow.mp3", size=1, sha256="x"
    )
    sim.advance(3600)
    (again,) = sim.catalog.add(1, **glow)
    await harness.sync()
    assert [j["ref"] for j in await harness.jobs()] == [f"crateq:{first}"]
    (row,) = await store.fetchall(
        "SELECT state, reason FROM rule_matches WHERE item_id = ?", (str(again),)
    )
    assert tuple(row) == ("skipped", "in the library (downloaded): /music/Ana Lee - Glow.mp3")


# -- one version of each song ----------------------------------------------------------------------


async def test_one_version_takes_the_first_preferred_mix_once(
    harness: Harness, sim: CrateQSim
) -> None:
    one = rule(name="one", one_version=True, prefer_mix=["Extended", "Intro", "Main"])
    await harness.start([one])
    await harness.sync()
    sim.advance(3600)
    song = {"artist": "Mo Reyes ft Kay", "genre": "House"}
    intro = sim.catalog.add(1, title="Heat Wave [Clean Intro]", tool="Intro", **song)
    ext = sim.catalog.add(1, title="Heat Wave [Clean Extended]", tool="Extended", **song)
    sim.catalog.add(1, title="Heat Wave [Clean]", tool="Single", **song)
    await harness.sync()
    assert [j["ref"] for j in await harness.jobs()] == [f"crateq:{ext[0]}"]
    # A later, more preferred version (none is more preferred than Extended, so: another
    # Extended spelling, and the intro again) adds no second copy.
    sim.advance(3600)
    sim.catalog.add(1, title="Heat Wave (Extended Mix) - Dirty", tool="Extended", **song)
    await harness.sync()
    assert [j["ref"] for j in await harness.jobs()] == [f"crateq:{ext[0]}"]
    assert intro  # the intro was matched and skipped, not taken


async def test_a_later_more_preferred_version_adds_no_second_copy(
    harness: Harness, sim: CrateQSim
) -> None:
    one = rule(name="one", one_version=True, prefer_mix=["Extended", "Intro"])
    await harness.start([one])
    await harness.sync()
    sim.advance(3600)
    song = {"artist": "Lu Park", "genre": "House"}
    intro = sim.catalog.add(1, title="Blue Hour [Dirty Intro]", tool="Intro", **song)
    await harness.sync()
    sim.advance(3600)
    sim.catalog.add(1, title="Blue Hour [Dirty Extended]", tool="Extended", **song)
    await harness.sync()
    assert [j["ref"] for j in await harness.jobs()] == [f"crateq:{intro[0]}"]


async def test_one_version_over_every_version_the_simulator_writes(
    harness: Harness, sim: CrateQSim
) -> None:
    """Every generated song (three versions of one groupId) yields exactly one job, the one
    whose mix comes first in prefer_mix as the song key parser reads it."""
    prefer = ["Extended", "Xtendz", "Club", "Intro", "Main", "Acapella"]
    one = rule(name="one", one_version=True, prefer_mix=prefer)
    rules = await harness.start([one])
    await harness.sync()
    result = await rules.run("one", backfill=True)
    records = list(sim.catalog.records())
    by_song: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        parsed = parse(
            rec["artist"],
            rec["title"],
            mix=rec["tool"],
            advisory=rec["advisory"],
            media="video" if rec["video"] else None,
            quality=rec["quality"],
        )
        by_song.setdefault(parsed.key, []).append({**rec, "parsed": parsed})
    jobs = {j["ref"] for j in await harness.jobs()}
    assert result["queued"] == len(by_song) == len(jobs)
    assert result["skipped"] == len(records) - len(by_song)
    ranks = {"extended": 0, "xtendz": 1, "club": 2, "intro": 3, None: 4, "acapella": 5}
    for versions in by_song.values():
        taken = [v for v in versions if f"crateq:{v['mediaId']}" in jobs]
        assert len(taken) == 1
        best = min(ranks.get(v["parsed"].version.mix, 6) for v in versions)
        assert ranks.get(taken[0]["parsed"].version.mix, 6) == best


async def test_rule_rows_are_recorded_once(store: Store) -> None:
    decision = rule_rows.Decision("r", "crateq", "1", "a/b", "", None, "skipped", "x")
    await rule_rows.record(store, [decision, decision])
    await rule_rows.record(store, [decision])
    assert (await rule_rows.counts(store))["r"]["matched"] == 1


async def test_the_same_song_from_two_pools_in_one_sync_comes_from_the_preferred_pool(
    store: Store, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """docs/reliability.md R2: pools synced together are one sync; prefer_pools decides."""
    async with CrateQSim(records=50, seed="one") as one, CrateQSim(records=50, seed="two") as two:
        adapters: dict[str, PoolAdapter] = {
            "cq1": crateq_adapter(one, session, "cq1", rows=200),
            "cq2": crateq_adapter(two, session, "cq2", rows=200),
        }
        h = Harness(store, session, adapters, tmp_path, one.clock)
        await h.start([rule(name="all")], prefer_pools=("cq2", "cq1"))
        await h.sync()
        song = {
            "artist": "Rae Sol",
            "title": "Night Drive [Clean Intro]",
            "length": "3:30",
            "video": False,
            "quality": "",
        }
        for sim in (one, two):
            sim.advance(3600)
        (from_one,) = one.catalog.add(1, **song)
        (from_two,) = two.catalog.add(1, **song)
        await asyncio.gather(h.syncs["cq1"].sync_catalog(), h.syncs["cq2"].sync_catalog())
        assert [j["ref"] for j in await h.jobs()] == [f"cq2:{from_two}"]
        rows = await store.fetchall("SELECT pool, state, reason FROM rule_matches ORDER BY pool")
        assert [tuple(row) for row in rows] == [
            ("cq1", "skipped", f"same song and version as cq2:{from_two} (rule all)"),
            ("cq2", "queued", None),
        ]
        # A later sync of the other pool brings nothing new: that song is taken.
        one.advance(3600)
        one.catalog.add(1, **{**song, "title": "Night Drive (Clean Intro Edit)"})
        await h.sync("cq1")
        assert [j["ref"] for j in await h.jobs()] == [f"cq2:{from_two}"]
        assert from_one
        await h.stop()


@pytest.mark.parametrize(
    ("mixes", "prefer", "expected"),
    [
        # Promo Only's mixes (the pool's mix field; advisory words in it are not mixes).
        (
            ("Clean", "Dirty", "Extended Mix", "Intro - Clean", "Quick Hit", "Original Mix"),
            ["Intro", "Extended"],
            "Intro - Clean",
        ),
        # "Clean" and "Original Mix" are both the plain song (Main): the newest of them.
        (("Clean", "Quick Hit", "Original Mix"), ["Extended", "Main"], "Original Mix"),
        # Harvest's versions.
        (("Main", "Instrumental", "30 sec", "Underscore"), ["Underscore", "Main"], "Underscore"),
        (("Instrumental", "30 sec"), ["30 sec"], "30 sec"),
        # CrateQ's tools, with an editor's name the vocabulary does not know.
        (("Acapella In", "Transition", "DMS", "Xtendz"), ["DMS", "Xtendz"], "DMS"),
        # None of them listed: the newest.
        (("Acapella In", "Transition"), ["Xtendz"], "Transition"),
    ],
)
async def test_one_version_over_each_simulators_mix_names(
    harness: Harness,
    sim: CrateQSim,
    store: Store,
    mixes: tuple[str, ...],
    prefer: list[str],
    expected: str,
) -> None:
    """The versions of one song, named the way each simulated pool names them; the first of
    prefer_mix wins, the newest among equals (each added after the one before)."""
    await harness.start([rule(name="one", one_version=True, prefer_mix=prefer)])
    await harness.sync()
    sim.advance(3600)
    song = {"artist": "Iva Stone", "title": "Paper Moon", "video": False, "quality": ""}
    ids = {mix: sim.catalog.add(1, tool=mix, **song)[0] for mix in mixes}
    await harness.sync()
    assert [j["ref"] for j in await harness.jobs()] == [f"crateq:{ids[expected]}"]
    rows = await store.fetchall("SELECT state, reason FROM rule_matches WHERE state = 'skipped'")
    assert len(rows) == len(mixes) - 1
    assert all(reason.startswith("one version: took crateq:") for _, reason in rows)


async def test_a_look_waits_for_other_passes_but_not_for_ever(
    harness: Harness, sim: CrateQSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pooldaemon.rules as rules_module

    monkeypatch.setattr(rules_module, "QUIET_WAIT_S", 0.2)
    rules = await harness.start([rule(name="a")])
    await harness.sync()
    sim.advance(3600)
    (new,) = sim.catalog.add(1)
    rules.pass_started("elsewhere")  # another pool's pass that does not end
    started = asyncio.get_running_loop().time()
    await harness.sync()
    assert asyncio.get_running_loop().time() - started >= 0.2
    assert [j["ref"] for j in await harness.jobs()] == [f"crateq:{new}"]
    rules.pass_aborted("elsewhere")
