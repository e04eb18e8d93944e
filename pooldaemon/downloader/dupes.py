"""One good copy of each song: whether a requested track duplicates one the library holds.

docs/interface.md §8: what is fetched automatically (rules, `auto_download_from = ["latest"]`)
never fetches a song+version the library already holds, nor one another pool's job is already
fetching; what the user asks for by name is downloaded anyway unless `duplicates = "skip_all"`.
When two pools offer the song in one sync, `prefer_pools` decides: a queued, automatic job of a
less preferred pool that has not started yet gives way to the preferred pool's copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from pooldaemon.library_config import LibraryConfig
from pooldaemon.models import JobState, Request
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store.db import Store

#: The policy when no [library] section is given to the engine: nothing is skipped.
NO_SKIPPING = LibraryConfig(duplicates="download")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The song a request is, whether to skip it (the reason), and a job it displaces."""

    song: tuple[str, str] | None = None
    skipped: str | None = None
    displace: int | None = None
    displace_reason: str | None = None


async def check(
    store: Store, policy: LibraryConfig, request: Request, *, automatic: bool
) -> Verdict:
    """The verdict on one request (see the module); only tracks the mirror knows are checked."""
    if request.kind != "track" or not request.item_id or request.redownload:
        return Verdict()
    song = await store_library.track_song_of(store, request.pool, request.item_id)
    if song is None or not song[0].strip("/") or song[0].startswith("/"):
        return Verdict()
    applies = policy.duplicates == "skip_all" or (automatic and policy.duplicates == "skip")
    if not applies:
        return Verdict(song)
    path = await store_library.library_has(store, *song)
    if path is not None:
        return Verdict(song, skipped=f"duplicate of {path}")
    other = await store_jobs.live_job_for_song(
        store, *song, not_item=(request.pool, request.item_id)
    )
    if other is None:
        return Verdict(song)
    job, other_automatic = other
    if (
        automatic
        and other_automatic
        and job["state"] == JobState.QUEUED
        and job["attempts"] == 0
        and policy.pool_rank(request.pool) < policy.pool_rank(job["pool"])
    ):
        return Verdict(
            song,
            displace=int(job["id"]),
            displace_reason=f"duplicate of {request.ref} (prefer_pools)",
        )
    where = job["path"] or f"job {job['id']} ({job['ref']})"
    return Verdict(song, skipped=f"duplicate of {where}")
