"""Offline search: parameter validation, and results compared with the generator's own truth."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import sys
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pooldaemon.config import CrateQConfig
from pooldaemon.errors import BadRequest
from pooldaemon.pools.crateq import CrateQ
from pooldaemon.search import parse_search, search, search_terms
from pooldaemon.sim.catalog import Catalog
from pooldaemon.songkey import song_key
from pooldaemon.store import catalog as mirror
from pooldaemon.store import search as store_search
from pooldaemon.store.db import Store
from pooldaemon.store.schema import COUNT_INDEXES, SCHEMA_VERSION
from pooldaemon.store.search import CatalogQuery, NumberFilter, match_expression

SEED = "search-tests"
N = 2000


# -- parameters ---------------------------------------------------------------------------------


def test_defaults() -> None:
    query = parse_search({})
    assert query == CatalogQuery(limit=50, offset=0)


def test_every_parameter_parses() -> None:
    query = parse_search(
        {
            "q": "Beyoncé  déjà-vu",
            "pool": "crateq,promo",
            "genre": "House, Hip-Hop > East",
            "bpm": "120-128",
            "year": "2018,2019",
            "mix": "Extended",
            "advisory": "Dirty",
            "media": "Video",
            "limit": "500",
            "offset": "10",
        }
    )
    assert query.terms == ("Beyoncé", "déjà", "vu")
    assert query.pools == ("crateq", "promo")
    assert query.genres == ("House", "Hip-Hop > East")
    assert query.bpm == NumberFilter(low=120, high=128)
    assert query.year == NumberFilter(values=(2018, 2019))
    assert query.mixes == ("Extended",)
    assert query.advisories == ("Dirty", "Explicit")
    assert query.media == "video"
    assert (query.limit, query.offset) == (500, 10)


def test_repeated_parameters_count_as_a_list() -> None:
    query = parse_search({"genre": ["House", "Trap"], "q": ["big", "fire"]})
    assert query.genres == ("House", "Trap")
    assert query.terms == ("big", "fire")


def test_fts_syntax_in_words_is_stripped_never_interpreted() -> None:
    terms = search_terms('AC/DC "NEAR(x y)" col:umn * - ^ OR AND NOT ) (')
    assert terms == ("AC", "DC", "NEAR", "x", "y", "col", "umn", "OR", "AND", "NOT")
    assert match_expression(terms) == (
        '{artist title editor} : ("AC"* "DC"* "NEAR"* "x"* "y"* "col"* "umn"* "OR"* "AND"* "NOT"*)'
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bpm": "fast"}, "bpm: expected N, N,M,… or N-M (got 'fast')"),
        ({"bpm": "128-120"}, "bpm: range 128-120 runs backwards (write 120-128)"),
        ({"bpm": "120-"}, "bpm: expected N, N,M,… or N-M"),
        ({"bpm": "1000"}, "bpm: 1000 is outside 1-999"),
        ({"year": "2019,x"}, "year: expected N, N,M,… or N-M"),
        ({"advisory": "mild"}, "advisory: expected clean or dirty (got 'mild')"),
        ({"media": "image"}, "media: expected audio or video (got 'image')"),
        ({"limit": "0"}, "limit: must be between 1 and 500 (got 0)"),
        ({"limit": "501"}, "limit: must be between 1 and 500 (got 501)"),
        ({"limit": "ten"}, "limit: expected a whole number (got 'ten')"),
        ({"offset": "-1"}, "offset: expected a whole number (got '-1')"),
        ({"pool": "Bad Pool!"}, "pool: 'Bad Pool!' is not a pool name"),
        ({"sort": "bpm"}, "unknown search parameter 'sort'"),
        ({"q": "x" * 501}, "q: at most 500 characters"),
        ({"genre": ",,"}, "genre: no value given"),
    ],
)
def test_bad_parameters_are_bad_requests_with_clear_text(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest) as info:
        parse_search(params)
    assert message in info.value.message
    assert info.value.http_status == 400


# -- against the truth --------------------------------------------------------------------------


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", fold(text))


_WORDS: dict[int, list[str]] = {}


def haystack(record: dict[str, Any]) -> list[str]:
    found = _WORDS.get(record["mediaId"])
    if found is None:
        found = words(f"{record['artist']} {record['title']} {record['editor']}")
        _WORDS[record["mediaId"]] = found
    return found


def expected(records: list[dict[str, Any]], params: dict[str, str]) -> list[int]:
    """What docs/interface.md §4 says the search must return, computed from the generator's
    records."""
    query = parse_search(params)
    terms = [fold(t) for t in query.terms]
    out = []
    for record in records:
        if not all(any(w.startswith(t) for w in haystack(record)) for t in terms):
            continue
        if query.genres and record["genre"].casefold() not in {g.casefold() for g in query.genres}:
            continue
        if query.mixes and record["tool"].casefold() not in {m.casefold() for m in query.mixes}:
            continue
        if not number_ok(query.bpm, record["bpm"]) or not number_ok(
            query.year, record["releaseYear"]
        ):
            continue
        if query.advisories and record["advisory"].casefold() not in {
            a.casefold() for a in query.advisories
        }:
            continue
        if query.media and not record[query.media]:
            continue
        out.append(record)
    out.sort(key=lambda r: (r["date"], r["mediaId"]), reverse=True)
    return [r["mediaId"] for r in out]


def number_ok(spec: NumberFilter | None, value: int) -> bool:
    if spec is None:
        return True
    if spec.values:
        return value in spec.values
    assert spec.low is not None and spec.high is not None
    return spec.low <= value <= spec.high


#: Genres and mixes the generator writes in ASCII, rewritten per track into spellings that
#: differ in case outside ASCII (and, for ß, in length), so the oracle's `casefold` and an
#: ASCII-only fold disagree on them.
LOCALIZED: dict[tuple[str, str], tuple[str, ...]] = {
    ("genre", "Latin"): ("Música Latina", "MÚSICA LATINA", "música latina"),
    ("genre", "Soul"): ("Ψυχή", "ΨΥΧΉ"),
    ("genre", "Drill"): ("Straße", "STRASSE"),
    ("tool", "Club"): ("Clúb Édit", "CLÚB ÉDIT"),
}


class LocalizedCatalog(Catalog):
    """The generator's catalog, some of its genres and mixes spelled in other scripts."""

    def get(self, media_id: int) -> dict[str, Any] | None:
        record = super().get(media_id)
        if record is None:
            return None
        record = dict(record)
        for field in ("genre", "tool"):
            spellings = LOCALIZED.get((field, record[field]))
            if spellings:
                record[field] = spellings[record["mediaId"] % len(spellings)]
        return record


@pytest.fixture(scope="module")
def truth() -> Catalog:
    return LocalizedCatalog(N, SEED)


def offline_adapter() -> CrateQ:
    """The CrateQ adapter for its normalization alone."""
    config = CrateQConfig.model_validate(
        {"type": "crateq", "api_key": "k" * 8, "username": "dj", "password": "pw" * 4}
    )
    return CrateQ("crateq", config, http=None)  # type: ignore[arg-type]  # no network here


async def build_mirror(path: Path, truth: Catalog) -> None:
    db = await Store.open(path)
    adapter = offline_adapter()
    records = list(truth.records())
    for start in range(0, len(records), 500):
        page = [adapter.track(record) for record in records[start : start + 500]]
        await mirror.apply_page(db, "crateq", page, seen_at=1.0)
    await db.close()


@pytest.fixture(scope="module")
def mirror_file(tmp_path_factory: pytest.TempPathFactory, truth: Catalog) -> Path:
    """The mirror built once through the adapter's normalization; each test gets a copy."""
    path = tmp_path_factory.mktemp("mirror") / "state.db"
    asyncio.run(build_mirror(path, truth))
    return path


@pytest.fixture
async def store(tmp_path: Path, mirror_file: Path) -> AsyncIterator[Store]:
    shutil.copy(mirror_file, tmp_path / "state.db")
    db = await Store.open(tmp_path / "state.db")
    yield db
    await db.close()


def random_params(rng: random.Random, records: list[dict[str, Any]]) -> dict[str, str]:
    params: dict[str, str] = {}
    sample = rng.choice(records)
    if rng.random() < 0.5:
        tokens = haystack(sample)
        chosen = rng.sample(tokens, k=min(len(tokens), rng.randint(1, 2)))
        params["q"] = " ".join(t[: rng.randint(1, len(t))] for t in chosen)
        if rng.random() < 0.3:
            params["q"] = params["q"].upper() + " !*"
    if rng.random() < 0.35:
        genres = {sample["genre"], rng.choice(records)["genre"]}
        params["genre"] = ",".join(rng.choice([g, g.lower(), g.upper()]) for g in genres)
    if rng.random() < 0.3:
        mix = rng.choice(records)["tool"]
        params["mix"] = rng.choice([mix, mix.lower(), mix.upper()])
    if rng.random() < 0.35:
        low = rng.randint(60, 140)
        form = rng.choice(["range", "one", "list"])
        params["bpm"] = {
            "range": f"{low}-{low + rng.randint(0, 15)}",
            "one": str(low),
            "list": ",".join(str(low + d) for d in (0, 3, 7)),
        }[form]
    if rng.random() < 0.3:
        year = sample["releaseYear"]
        params["year"] = rng.choice([str(year), f"{year - 2}-{year}", f"{year},{year - 5}"])
    if rng.random() < 0.3:
        params["advisory"] = rng.choice(["clean", "dirty", "Explicit"])
    if rng.random() < 0.3:
        params["media"] = rng.choice(["audio", "video"])
    return params


@pytest.mark.parametrize(
    ("probe_bias", "sort_limit", "walk_slack"),
    [(1.0, 20_000, 4.0), (1e9, 20_000, 1e9), (0.0, 0, 4.0), (1.0, 20_000, 0.05)],
    ids=[
        "by-cost",
        "read-matches-and-column-index",
        "probe-and-walk-date-order",
        "short-walks-that-mostly-give-up",
    ],
)
async def test_fifty_random_filter_combinations_match_the_truth(
    store: Store,
    truth: Catalog,
    monkeypatch: pytest.MonkeyPatch,
    probe_bias: float,
    sort_limit: int,
    walk_slack: float,
) -> None:
    """Every plan the search may pick (by match counts) gives the truth's answer."""
    monkeypatch.setattr(store_search, "_PROBE_BIAS", probe_bias)
    monkeypatch.setattr(store_search, "_SORT_LIMIT", sort_limit)
    monkeypatch.setattr(store_search, "_WALK_SLACK", walk_slack)
    records = list(truth.records())
    rng = random.Random(20240601)
    nonempty = 0
    for _ in range(50):
        params = random_params(rng, records)
        want = expected(records, params)
        got = await search(store, {**params, "limit": "500"})
        assert got["total"] == len(want), params
        assert [int(item["id"]) for item in got["items"]] == want[:500], params
        nonempty += bool(want)
    assert nonempty >= 25  # the combinations really exercise matches, not only empty answers


async def test_small_pages_found_by_walking_the_newest_tracks_are_exact(
    store: Store, truth: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the word index cannot answer (here: not built yet), a page of a filter-only
    query may come from a bounded walk in date order; whether it finds enough or gives up
    for the sort, the page is the truth's, ties on a date included. (A slack of 1 on this
    2,000-track mirror makes both happen.)"""
    monkeypatch.setattr(store_search, "_WALK_SLACK", 1.0)
    monkeypatch.setitem(mirror._WORDS_READY, store, False)
    walks: list[bool] = []
    walk = store_search._walk_newest

    async def noted(*args: Any) -> list[int] | None:
        found = await walk(*args)
        walks.append(found is not None)
        return found

    monkeypatch.setattr(store_search, "_walk_newest", noted)
    records = list(truth.records())
    rng = random.Random(20261124)
    for _ in range(40):
        params = {k: v for k, v in random_params(rng, records).items() if k != "q"}
        want = expected(records, params)
        for offset, limit in ((0, 10), (13, 7)):
            got = await search(store, {**params, "limit": str(limit), "offset": str(offset)})
            assert got["total"] == len(want), params
            page = [int(item["id"]) for item in got["items"]]
            assert page == want[offset : offset + limit], params
    assert any(walks) and not all(walks), walks  # both ends of the walk were exercised


async def test_pages_read_off_the_date_ordered_word_index_are_exact_across_ties(
    store: Store, truth: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The word index hands out matches by date (schema migration 9) and the page's last day
    is sorted exactly: a day holding hundreds of tracks, undated tracks (last) and a date in
    other digits (first, as text sorts it) page exactly like the truth, at every offset."""
    records = list(truth.records())
    busy = [r for r in records if r["genre"] in ("House", "Pop")][:300]
    ids = [str(r["mediaId"]) for r in busy]
    await store.execute(
        f"UPDATE tracks SET date = '2024-05-17' WHERE id IN ({','.join('?' * len(ids))})", ids
    )
    # Within the day, the order of the tracks' ids is the reverse of their rowids' (which
    # the word index's keys follow): the page's boundary must be sorted, not cut.
    swap = dict(zip(ids, reversed(ids), strict=True))
    monkeypatch.setattr(sys.modules[__name__], "_WORDS", {})  # its words are cached by id
    await store.executemany(
        "UPDATE tracks SET id = ? WHERE pool = 'crateq' AND id = ?", [(f"t{i}", i) for i in ids]
    )
    await store.executemany(
        "UPDATE tracks SET id = ? WHERE pool = 'crateq' AND id = ?",
        [(new, f"t{old}") for old, new in swap.items()],
    )
    records = [{**r, "mediaId": int(swap.get(str(r["mediaId"]), r["mediaId"]))} for r in records]
    undated = [str(r["mediaId"]) for r in records[300:320]]
    await store.execute(
        f"UPDATE tracks SET date = NULL WHERE id IN ({','.join('?' * len(undated))})", undated
    )
    odd = str(records[400]["mediaId"])
    await store.execute("UPDATE tracks SET date = '٢٠٢٤-٠١-٠١' WHERE id = ?", (odd,))
    dates = dict.fromkeys(ids, "2024-05-17") | dict.fromkeys(undated, "") | {odd: "\uffff"}
    changed = [{**r, "date": dates.get(str(r["mediaId"]), r["date"])} for r in records]
    for params in ({"genre": "House,Pop"}, {"media": "audio"}, {"q": "a"}, {"bpm": "90-130"}):
        want = expected(changed, params)
        for limit in (7, 50):
            seen: list[int] = []
            for offset in range(0, len(want) + limit, limit):
                page = {**params, "limit": str(limit), "offset": str(offset)}
                got = await search(store, page)
                assert got["total"] == len(want), params
                seen += [int(item["id"]) for item in got["items"]]
            assert seen == want, (params, limit)


async def test_a_bulk_load_feeds_the_word_index_as_it_goes(
    tmp_path: Path, truth: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches during a first sync find the tracks of every word batch committed so far,
    exactly as the truth over those tracks; after the load, the whole truth."""
    monkeypatch.setattr(mirror, "_WORDS_BATCH", 700)  # pages of 500: after the 2nd and 4th
    adapter = offline_adapter()
    records = list(truth.records())
    rng = random.Random(20261207)

    async def check(store: Store, indexed: list[dict[str, Any]], rounds: int) -> None:
        for _ in range(rounds):
            params = random_params(rng, indexed)
            params.setdefault("q", rng.choice(haystack(rng.choice(indexed)))[:3])
            want = expected(indexed, params)
            got = await search(store, {**params, "limit": "500"})
            assert got["total"] == len(want), params
            assert [int(item["id"]) for item in got["items"]] == want[:500], params

    store = await Store.open(tmp_path / "state.db")
    try:
        async with mirror.bulk_load(store):
            for start in range(0, N, 500):
                page = [adapter.track(record) for record in records[start : start + 500]]
                await mirror.apply_page(store, "crateq", page, seen_at=1.0, bulk=True)
                if start + 500 == 1500:  # 1,000 tracks in the word index, the 3rd page not yet
                    assert not await mirror.words_complete(store)
                    await check(store, records[:1000], 30)
        assert await mirror.words_complete(store)
        await check(store, records, 20)
    finally:
        await store.close()


@pytest.mark.parametrize("mode", ["wide-ranges-on-rows", "word-index-not-ready"])
async def test_filters_the_word_index_does_not_answer_still_match_the_truth(
    store: Store, truth: Catalog, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A bpm/year range too wide to list as words, or a word index a bulk load has not built
    yet: the rows are filtered and counted instead, with the same answers."""
    if mode == "wide-ranges-on-rows":
        monkeypatch.setattr(store_search, "_MAX_FACET_VALUES", 0)
    else:
        monkeypatch.setitem(mirror._WORDS_READY, store, False)
    records = list(truth.records())
    rng = random.Random(20261123)
    for _ in range(30):
        params = random_params(rng, records)
        want = expected(records, params)
        got = await search(store, {**params, "limit": "500"})
        assert got["total"] == len(want), params
        assert [int(item["id"]) for item in got["items"]] == want[:500], params


async def test_a_changed_filter_value_is_searchable_at_once(store: Store, truth: Catalog) -> None:
    """The word index holds the filter values: changing one re-indexes the track."""
    record = next(iter(truth.records()))
    ident = str(record["mediaId"])
    await store.execute(
        "UPDATE tracks SET genre = 'Polka', bpm = 333 WHERE pool = 'crateq' AND id = ?", (ident,)
    )
    found = await search(store, {"genre": "polka"})
    assert [item["id"] for item in found["items"]] == [ident] and found["total"] == 1
    assert (await search(store, {"bpm": "333", "q": words(record["artist"])[0]}))["total"] == 1
    old = await search(store, {"genre": record["genre"], "limit": "500"})
    assert old["total"] == len(expected(list(truth.records()), {"genre": record["genre"]})) - 1
    await mirror.mark_removed(store, "crateq", [ident])
    assert (await search(store, {"genre": "polka"}))["total"] == 0


async def test_paging_walks_the_same_order(store: Store, truth: Catalog) -> None:
    params = {"genre": "House,Hip-Hop,R&B"}
    want = expected(list(truth.records()), params)
    seen: list[int] = []
    for offset in range(0, len(want) + 40, 40):
        page = await search(store, {**params, "limit": "40", "offset": str(offset)})
        assert page["total"] == len(want)
        seen += [int(item["id"]) for item in page["items"]]
    assert seen == want


async def test_accents_and_case_do_not_matter(store: Store, truth: Catalog) -> None:
    records = list(truth.records())
    special = [r for r in records if r["artist"].startswith("Beyonc")]
    assert special
    for query in ("beyonce", "BEYONCÉ", "beyo", "Beyoncé déj"):
        got = await search(store, {"q": query, "limit": "500"})
        assert got["total"] == len(expected(records, {"q": query})) > 0
    motor = await search(store, {"q": "motorhead ace"})
    assert {item["artist"] for item in motor["items"]} == {"Motörhead"}


async def test_track_dict_is_exactly_the_contract(store: Store, truth: Catalog) -> None:
    got = await search(store, {"limit": "1"})
    newest = max(truth.records(), key=lambda r: (r["date"], r["mediaId"]))
    assert got["total"] == N
    item = got["items"][0]
    assert list(item) == [
        "ref",
        "pool",
        "id",
        "artist",
        "title",
        "genre",
        "bpm",
        "year",
        "mix",
        "editor",
        "advisory",
        "length_s",
        "size_bytes",
        "audio",
        "video",
        "quality",
        "date",
        "source",
        "downloaded",
        "removed",
        "song",
        "version",
    ]
    minutes, _, seconds = newest["length"].partition(":")
    assert item == {
        "ref": f"crateq:{newest['mediaId']}",
        "pool": "crateq",
        "id": str(newest["mediaId"]),
        "artist": newest["artist"],
        "title": newest["title"],
        "genre": newest["genre"],
        "bpm": newest["bpm"],
        "year": newest["releaseYear"],
        "mix": newest["tool"],
        "editor": newest["editor"] or None,
        "advisory": newest["advisory"],
        "length_s": int(minutes) * 60 + int(seconds),
        "size_bytes": round(float(newest["size"].split()[0]) * 1024 * 1024),
        "audio": True,
        "video": newest["video"],
        "quality": newest["quality"] or None,
        "date": newest["date"],
        "source": newest["source"],
        "downloaded": False,
        "removed": False,
        # docs/interface.md §8: the song key and version, as docs/songs.md defines them
        "song": song_key(newest["artist"], newest["title"]),
        "version": item["version"],
    }
    assert isinstance(item["version"], str)


async def test_removed_tracks_are_hidden_unless_asked_for(store: Store, truth: Catalog) -> None:
    first = await search(store, {"limit": "3"})
    gone = [item["id"] for item in first["items"][:2]]
    await mirror.mark_removed(store, "crateq", gone)
    after = await search(store, {"limit": "3"})
    assert after["total"] == N - 2
    assert not set(gone) & {item["id"] for item in after["items"]}
    both = await search(store, {"limit": "3", "removed": "true"})
    assert both["total"] == N
    assert [item["removed"] for item in both["items"][:2]] == [True, True]
    # The same through the word index: its match count less the removed ones.
    removed = first["items"][0]
    word = words(removed["artist"])[0]
    live = [r for r in truth.records() if str(r["mediaId"]) not in gone]
    found = await search(store, {"q": word, "limit": "500"})
    assert found["total"] == len(expected(live, {"q": word})) > 0
    assert removed["id"] not in {item["id"] for item in found["items"]}
    with_removed = await search(store, {"q": word, "limit": "500", "removed": "true"})
    assert with_removed["total"] == len(expected(list(truth.records()), {"q": word}))


async def test_pool_filter_and_an_unknown_pool(store: Store) -> None:
    assert (await search(store, {"pool": "crateq", "limit": "1"}))["total"] == N
    assert await search(store, {"pool": "promoonly"}) == {"total": 0, "items": []}


async def test_broad_filters_are_counted_exactly_through_the_word_index(
    store: Store, truth: Catalog
) -> None:
    """Advisory, media and pool alone are counted as words of the word index (migration 8)."""
    names = {row[0] for row in await store.fetchall("SELECT name FROM sqlite_master")}
    assert not set(COUNT_INDEXES) & names  # migration 8 dropped them: nothing reads them
    records = list(truth.records())
    gone = [str(record["mediaId"]) for record in records[:3]]
    await mirror.mark_removed(store, "crateq", gone)
    live = [record for record in records if str(record["mediaId"]) not in gone]
    for params in (
        {"advisory": "dirty"},
        {"advisory": "clean"},
        {"media": "video"},
        {"media": "audio", "advisory": "Explicit"},
        {"pool": "crateq"},
        {"pool": "crateq", "media": "video"},
        {"pool": "crateq", "advisory": "clean"},
    ):
        want = expected(live, params)
        got = await search(store, {**params, "limit": "500"})
        assert got["total"] == len(want) > 0, params
        assert [int(item["id"]) for item in got["items"]] == want[:500], params


async def test_nothing_matches_gives_an_empty_page(store: Store) -> None:
    assert await search(store, {"q": "zzzqqqxxx"}) == {"total": 0, "items": []}
    assert await search(store, {"offset": str(N + 5)}) == {"total": N, "items": []}


async def test_a_mirror_from_schema_4_is_migrated_and_still_searchable(tmp_path: Path) -> None:
    """Migration 5 moves `raw` beside the rows and swaps the indexes; nothing is lost."""
    path = tmp_path / "old.db"
    old = await Store.open(path, migrate_to=4)
    await old.execute(
        "INSERT INTO tracks (pool, id, artist, title, genre, bpm, date, audio, video, raw, "
        "first_seen, last_seen) VALUES ('crateq', '42', 'Beyoncé', 'Déjà Vu', 'R&B', 105, "
        '\'2024-01-02\', 1, 0, \'{"mediaId":42,"size":"75.26 MB"}\', 1, 1)'
    )
    await old.close()
    store = await Store.open(path)
    try:
        assert await store.version() == SCHEMA_VERSION
        found = await search(store, {"q": "beyonce deja", "genre": "r&b", "bpm": "100-110"})
        assert [item["ref"] for item in found["items"]] == ["crateq:42"]
        assert await mirror.track_raw(store, "crateq", "42") == {
            "mediaId": 42,
            "size": "75.26 MB",
        }
        assert await mirror.words_complete(store)
        assert await store.integrity_check() == "ok"
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("params", "spellings"),
    [
        ({"genre": "música latina"}, LOCALIZED[("genre", "Latin")]),
        ({"genre": "MÚSICA LATINA"}, LOCALIZED[("genre", "Latin")]),
        ({"genre": "ψυχή"}, LOCALIZED[("genre", "Soul")]),
        ({"genre": "strasse"}, LOCALIZED[("genre", "Drill")]),
        ({"mix": "clúb édit"}, LOCALIZED[("tool", "Club")]),
        ({"mix": "Clúb Édit", "removed": "1"}, LOCALIZED[("tool", "Club")]),
    ],
)
async def test_filters_fold_case_in_every_script_but_keep_accents(
    store: Store, truth: Catalog, params: dict[str, str], spellings: tuple[str, ...]
) -> None:
    field = "mix" if "mix" in params else "genre"
    want = [r for r in truth.records() if r["genre" if field == "genre" else "tool"] in spellings]
    got = await search(store, {**params, "limit": "500"})
    assert got["total"] == len(want) > 0
    assert {item[field] for item in got["items"]} == set(spellings)
    # Accents are significant: without them it is another value.
    plain = unicodedata.normalize("NFKD", params[field])
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    if plain != params[field]:
        assert (await search(store, {**params, field: plain}))["total"] == 0


async def test_a_mirror_from_schema_10_learns_its_spellings_when_migrated(tmp_path: Path) -> None:
    """Migration 11 folds the values already mirrored, so an upgrade finds them at once."""
    path = tmp_path / "old.db"
    old = await Store.open(path, migrate_to=10)
    for n, genre in enumerate(("Música Latina", "MÚSICA LATINA", "Musica Latina")):
        await old.execute(
            "INSERT INTO tracks (pool, id, genre, mix, first_seen, last_seen) "
            "VALUES ('crateq', ?, ?, 'ÉDIT', 1, 1)",
            (str(n), genre),
        )
    await old.close()
    store = await Store.open(path)
    try:
        found = await search(store, {"genre": "música latina", "mix": "édit", "removed": "1"})
        assert sorted(item["id"] for item in found["items"]) == ["0", "1"]
    finally:
        await store.close()
