"""Finishing a download: verify the bytes, tag a copy, place it, record it — or adopt it.

A final path only ever receives a verified file, by a link that never replaces another file;
the intent (path and checksum) is recorded first, so a run that dies between placing and
recording finds the file and adopts it instead of downloading it again (docs/reliability.md C4).
Checksums are the library's (`<algorithm>:<hex>`, downloader/digest.py), of the bytes at the
final path, tags included.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pooldaemon.downloader import tags
from pooldaemon.downloader.digest import (
    LIBRARY_ALGORITHM,
    Digests,
    checksum_matches,
    checksum_value,
    file_checksum,
    file_digests,
    new_hash,
)
from pooldaemon.downloader.failpoints import failpoint
from pooldaemon.downloader.paths import (
    ensure_dirs,
    final_path,
    render_template,
    sanitize_component,
    sanitize_ext,
    template_fields,
    unique_path,
)
from pooldaemon.downloader.pool import DownloadPool
from pooldaemon.downloader.workfile import (
    WORK_AREA,
    disk_full,
    no_space,
    remove_tree,
    work_dir_for,
)
from pooldaemon.errors import IntegrityError, ProtocolError
from pooldaemon.fsutil import free_space, fsync_dir, full_fsync, link_no_clobber
from pooldaemon.log import get_logger
from pooldaemon.models import DownloadPlan, Job, JobState, PlanPart
from pooldaemon.store import jobs as store_jobs
from pooldaemon.store import library as store_library
from pooldaemon.store.db import Store, uncancelled

if TYPE_CHECKING:
    from pooldaemon.config import DaemonConfig

log = get_logger(__name__)

#: What a sniffed kind is called on disk when the plan names no extension.
_KIND_EXT = {"mp3": "mp3", "mp4": "mp4", "wav": "wav", "aiff": "aiff", "flac": "flac"}
_TAGGABLE = frozenset({"mp3", "mp4", "wav", "aiff", "flac"})


class Finisher:
    """Complete work files → a verified file (or folder) in the library, recorded as done."""

    def __init__(
        self,
        store: Store,
        config: DaemonConfig,
        *,
        set_state: Callable[..., Awaitable[dict[str, Any]]],
        publish_state: Callable[[dict[str, Any]], None],
        owed: Callable[[], None],
        folders: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        #: docs/interface.md §7: a job's origin ("rule:NAME") → a folder put before file_template.
        self.folders = dict(folders or {})
        self.download_dir = Path(config.download_dir)
        self.work_root = self.download_dir / WORK_AREA
        self._set_state = set_state
        self._publish_state = publish_state
        #: Called when the finished download left calls owed to its pool (the outbox's wake).
        self._owed = owed

    async def finish(
        self,
        job_id: int,
        plan: DownloadPlan,
        paths: dict[str, Path],
        adapter: DownloadPool,
        digests: dict[str, Digests],
    ) -> None:
        """Verify and place what the transfer fetched: one media file, or an archive's files."""
        if plan.archive:
            await self._archive(job_id, plan, paths, adapter, digests)
        else:
            await self._file(job_id, plan, paths, adapter, digests)

    def hash_while_downloading(self, plan: DownloadPlan) -> bool:
        """Whether the parts' hashes will be used: not when tags change the file after it."""
        if plan.archive or not self.config.write_tags or len(plan.parts) != 1:
            return True
        part = plan.parts[0]
        if part.sha256 or part.md5:
            return True  # the pool's checksum is of the untagged bytes
        ext = sanitize_ext(part.extension or plan.format or "")
        return not (ext and tags.expected_kinds(ext) & _TAGGABLE)

    async def _file(
        self,
        job_id: int,
        plan: DownloadPlan,
        paths: dict[str, Path],
        adapter: DownloadPool,
        digests: dict[str, Digests],
    ) -> None:
        """Verify the one media part, then land it as a track."""
        if len(plan.parts) != 1:
            raise ProtocolError(f"{plan.pool}: a download of {len(plan.parts)} parts is no archive")
        part = plan.parts[0]
        work = paths[part.key]
        kind, ext, sha, size = await asyncio.to_thread(
            _verify_media, work, part, plan.format, digests.get(part.key)
        )
        await self._track(job_id, plan, adapter, work, plan.meta, (kind, ext, sha, size))

    async def _track(
        self,
        job_id: int,
        plan: DownloadPlan,
        adapter: DownloadPool,
        work: Path,
        meta: Mapping[str, Any],
        verified: tuple[str | None, str, str | None, int],
    ) -> None:
        """Tag a copy of a verified file, place it at its template path, fsync the folder,
        record (docs/reliability.md C4)."""
        kind, ext, sha, size = verified
        source = work
        if self.config.write_tags and kind in _TAGGABLE:
            tagged = work.with_name("tagged.tmp")
            # docs/interface.md §9: the comment names the pool and the ref is "<pool>:<id>".
            tag_meta = {**meta, "pool": plan.pool, "id": plan.item_id}
            try:
                await asyncio.to_thread(_copy_and_tag, work, tagged, tag_meta)
                failpoint("after_tag_before_sync")
                # The copy is fsynced and hashed at once, in two threads (the disk and a core
                # work side by side): both end before the intent is recorded, so the checksum
                # describes durable bytes.
                _, (sha, size) = await asyncio.gather(
                    asyncio.to_thread(_fsync_file, tagged),
                    asyncio.to_thread(_hash_file, tagged),
                )
            except OSError as err:
                tagged.unlink(missing_ok=True)
                if no_space(err):
                    need = size + self.config.min_free_space_bytes
                    raise disk_full(self.work_root, need) from err
                raise
            except tags.TagError as err:
                log.warning("tags not written", job=job_id, error=str(err))
                tagged.unlink(missing_ok=True)
            else:
                source = tagged
        if sha is None:
            sha, size = await asyncio.to_thread(_hash_file, work)
        assert sha is not None
        job = await store_jobs.load_job(self.store, job_id)
        fields = template_fields(
            meta, pool=plan.pool, item_id=plan.item_id, ext=ext, origin=job.origin
        )
        template = self.config.file_template
        if folder := self.folders.get(job.origin):
            template = f"{folder}/{template}"
        dest, adopted = await asyncio.to_thread(self._destination, fields, ext, sha, size, template)
        # The intent: after a crash, a file at `path` with this hash is ours (C4).
        await store_jobs.update_job(self.store, job_id, path=str(dest), final_sha256=sha)
        failpoint("after_verify_before_rename")
        if not adopted:
            await asyncio.to_thread(_place, source, dest)
        failpoint("after_rename_before_dirsync")
        await asyncio.to_thread(fsync_dir, dest.parent)
        failpoint("after_rename_before_done")
        await self._record(job_id, plan, adapter, dest, size, sha)

    def _destination(
        self, fields: dict[str, Any], ext: str, sha: str, size: int, template: str
    ) -> tuple[Path, bool]:
        """The template path, sanitized, inside download_dir, ` (2)` if taken by another file; an
        identical file already there is adopted (returned with True). docs/interface.md §5."""
        components = render_template(template, fields, ext)
        ensure_dirs(self.download_dir, components)
        dest = final_path(self.download_dir, components)

        def same(path: Path) -> bool:
            return checksum_matches(path, sha, size)

        chosen = unique_path(dest, same_content=same)
        return chosen, os.path.lexists(chosen)

    async def _archive(
        self,
        job_id: int,
        plan: DownloadPlan,
        paths: dict[str, Path],
        adapter: DownloadPool,
        digests: dict[str, Digests],
    ) -> None:
        """Verify every ZIP part, extract into staging, rename to `<pool>/<name>/`.

        docs/interface.md §5.
        """
        summary: list[str] = []
        for part in plan.parts:
            digest = await asyncio.to_thread(
                _verify_zip_part, paths[part.key], part, digests.get(part.key)
            )
            summary.append(f"{part.key}:{digest}")
        # The set's checksum: of its parts' (no one file holds the whole set).
        whole = new_hash(LIBRARY_ALGORITHM)
        whole.update("\n".join(summary).encode())
        combined = checksum_value(LIBRARY_ALGORITHM, whole.hexdigest())
        archives = [paths[p.key] for p in plan.parts]
        # Imported by the first archive: an idle daemon does not carry it (issue 13: idle RSS).
        from pooldaemon.downloader.unzip import extract_parts, lone_entry

        if plan.kind == "track" and await asyncio.to_thread(lone_entry, archives) is not None:
            await self._track_from_archive(job_id, plan, adapter, archives)
            return
        components = [
            sanitize_component(plan.pool),
            sanitize_component(plan.name or plan.item_id or f"job {job_id}"),
        ]
        await asyncio.to_thread(ensure_dirs, self.download_dir, components)
        dest = unique_path(final_path(self.download_dir, components), split_ext=False)
        await store_jobs.update_job(self.store, job_id, path=str(dest), final_sha256=combined)
        limit = await self._extract_limit()
        staging = work_dir_for(self.download_dir, job_id) / "staging"
        failpoint("mid_extract")
        files = await asyncio.to_thread(
            extract_parts,
            archives,
            dest,
            staging,
            max_total_bytes=limit,
            max_entries=self.config.max_extract_entries,
            max_ratio=self.config.max_extract_ratio,
        )
        if files:
            dest = dest.parent / Path(files[0]).relative_to(dest.parent).parts[0]
        size = sum(f.stat().st_size for f in files)
        failpoint("after_rename_before_done")
        await self._record(job_id, plan, adapter, dest, size, combined)

    async def _track_from_archive(
        self, job_id: int, plan: DownloadPlan, adapter: DownloadPool, archives: list[Path]
    ) -> None:
        """A single track delivered as a one-file ZIP (Harvest) lands like any other track:
        named by file_template and tagged; only albums and sets become folders (§5, §9)."""
        from pooldaemon.downloader.unzip import extract_parts  # imported by the first archive

        work = work_dir_for(self.download_dir, job_id)
        limit = await self._extract_limit()
        failpoint("mid_extract")
        files = await asyncio.to_thread(
            extract_parts,
            archives,
            work / "track",
            work / "staging",
            max_total_bytes=limit,
        )
        media = files[0]
        stem, _, extension = media.name.rpartition(".")
        meta: dict[str, Any] = dict(plan.meta)
        if not meta.get("title"):
            # The pool's own name for the file ("Artist - Title.mp3") when the catalog row
            # was not at hand.
            artist, dash, title = (stem or media.name).partition(" - ")
            meta.update({"artist": artist, "title": title} if dash else {"title": artist})
        entry = PlanPart(key="track", sources=[], extension=extension if stem else None)
        verified = await asyncio.to_thread(_verify_media, media, entry, plan.format)
        await self._track(job_id, plan, adapter, media, meta, verified)

    async def _extract_limit(self) -> int:
        """max_extract_size, capped by the free space less the margin (docs/interface.md §5)."""
        room = await asyncio.to_thread(free_space, self.download_dir)
        limit = min(self.config.max_extract_size_bytes, room - self.config.min_free_space_bytes)
        if limit <= 0:
            raise disk_full(self.download_dir, self.config.min_free_space_bytes)
        return limit

    async def _record(
        self,
        job_id: int,
        plan: DownloadPlan,
        adapter: DownloadPool,
        dest: Path,
        size: int,
        sha: str,
    ) -> None:
        calls = adapter.after_download(plan)
        # Once begun, "done" is committed even if a stop arrives meanwhile (milliseconds):
        # readers on the shared connection may already have seen it inside the transaction.
        job = await uncancelled(
            store_library.record_download(
                self.store, job_id, path=str(dest), size=size, sha256=sha, calls=calls
            )
        )
        # The work area goes before anyone hears "done", and a stop arriving right after the
        # commit still lets it go (it takes milliseconds); only a crash in between leaves a
        # leftover, which start-up sweeps.
        await uncancelled(asyncio.to_thread(remove_tree, work_dir_for(self.download_dir, job_id)))
        self._publish_state(job)
        log.info("download finished", job=job_id, path=str(dest), size=size)
        if calls:
            self._owed()

    async def adopt(self, job: Job, plan: DownloadPlan, adapter: DownloadPool) -> bool:
        """The final file (or folder) exists from a run that died before "done": verify and
        adopt it, never download over it (docs/reliability.md C4)."""
        job_id = job.id
        path, sha = job.path, job.final_sha256
        if not path or not sha:
            return False
        dest = Path(path)
        adopted: tuple[int, str] | None = None
        if plan.archive and dest.is_dir() and not dest.is_symlink():
            size = await asyncio.to_thread(_tree_size, dest)
            adopted = (size, sha)
        elif (
            dest.is_file()
            and not dest.is_symlink()  # a track, or a one-track archive's file
            # Hashed with the algorithm the intent names: an intent recorded before the
            # library switched to BLAKE3 is still a SHA-256.
            and await asyncio.to_thread(checksum_matches, dest, sha)
        ):
            adopted = (dest.stat().st_size, sha)
        if adopted is None:
            await store_jobs.update_job(self.store, job_id, path=None, final_sha256=None)
            return False
        log.info("adopting a file finished before a crash", job=job_id, path=path)
        await self._set_state(job_id, JobState.VERIFYING)
        await asyncio.to_thread(fsync_dir, dest.parent)
        await self._record(job_id, plan, adapter, dest, adopted[0], adopted[1])
        return True


# -- file helpers (run in threads) -------------------------------------------------------------


def _hash_file(path: Path) -> tuple[str, int]:
    """The library checksum (`<algorithm>:<hex>`) and size of a file."""
    return file_checksum(path)


def _check_checksum(path: Path, part: PlanPart, known: Digests | None, size: int) -> str | None:
    """Compare with the pool's checksum when it gives one; returns the library checksum if
    known.

    `known` holds the hashes taken while the part downloaded; the file is read again only
    when they are missing or do not cover it (a pool's SHA-256 is hashed apart from the
    library's BLAKE3)."""
    usable = (
        known is not None
        and known.size == size
        and (not part.md5 or known.md5 is not None)
        and (not part.sha256 or known.plain_sha256 is not None)
    )
    if not usable:
        if not part.sha256 and not part.md5:
            return None
        known = file_digests(path, md5=bool(part.md5), sha256=bool(part.sha256))
    assert known is not None
    if part.sha256 and part.sha256.lower() != known.plain_sha256:
        raise IntegrityError(
            f"part {part.key}: SHA-256 {known.plain_sha256} does not match the pool's"
        )
    if part.md5 and part.md5.lower() != known.md5:
        raise IntegrityError(f"part {part.key}: MD5 {known.md5} does not match the pool's")
    return known.checksum


def _verify_media(
    path: Path, part: PlanPart, fmt: str, known: Digests | None = None
) -> tuple[str | None, str, str | None, int]:
    """Size, magic bytes against the extension (docs/reliability.md H9), checksum.

    Returns (kind, ext, the library checksum when computed, size)."""
    size = path.stat().st_size
    if part.expected_size is not None and size != part.expected_size:
        raise IntegrityError(f"part {part.key}: {size} bytes, the pool says {part.expected_size}")
    with open(path, "rb") as fh:
        kind = tags.sniff_media(fh.read(tags.SNIFF_BYTES))
    ext = sanitize_ext(part.extension or fmt or "")
    expected = tags.expected_kinds(ext) if ext else set()
    if kind in (None, "html", "json") and (expected or kind is not None):
        raise IntegrityError(
            f"the downloaded bytes are {kind.upper() if kind else 'not recognizable media'}, "
            f"not a .{ext or 'media'} file"
        )
    if expected and kind not in expected:
        raise IntegrityError(f"the downloaded file is {kind}, not .{ext}")
    if not ext:
        ext = _KIND_EXT.get(kind or "", "bin")
    sha = _check_checksum(path, part, known, size)
    return kind, ext, sha, size


def _verify_zip_part(path: Path, part: PlanPart, known: Digests | None = None) -> str:
    """A part must be a ZIP (magic bytes) of the promised size, and match any checksum."""
    size = path.stat().st_size
    if part.expected_size is not None and size != part.expected_size:
        raise IntegrityError(f"part {part.key}: {size} bytes, the pool says {part.expected_size}")
    with open(path, "rb") as fh:
        kind = tags.sniff_media(fh.read(tags.SNIFF_BYTES))
    if kind != "zip":
        raise IntegrityError(f"part {part.key} is {kind or 'not recognizable'}, not a ZIP")
    sha = _check_checksum(path, part, known, size)
    return sha if sha is not None else _hash_file(path)[0]


def _copy_and_tag(src: Path, dst: Path, meta: Mapping[str, Any]) -> None:
    """Tags go into a copy in the work area, merged (never clobbering); the caller fsyncs it.

    The work file is never changed: a crash while tagging leaves it whole, and the next run
    tags a fresh copy (docs/reliability.md C4)."""
    dst.unlink(missing_ok=True)
    _copy_file(src, dst)
    tags.write_tags(dst, meta)


def _copy_file(src: Path, dst: Path) -> None:
    """Copy inside the kernel: `copy_file_range` shares the blocks where the filesystem can
    (XFS, Btrfs: no bytes move, and the fsync after has only metadata to write) and copies
    without a trip through user space elsewhere; `shutil.copyfile` where it is missing or
    refused (macOS, another filesystem)."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            size = os.fstat(fin.fileno()).st_size
            done = 0
            try:
                while done < size:
                    n = copy_range(fin.fileno(), fout.fileno(), size - done, done, done)
                    if n == 0:
                        break
                    done += n
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
            else:
                if done == size:
                    return
    shutil.copyfile(src, dst)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        full_fsync(fd)
    finally:
        os.close(fd)


def _place(src: Path, dest: Path) -> None:
    """Move the verified file to its final name without ever replacing another file."""
    if link_no_clobber(src, dest):
        os.unlink(src)


def _tree_size(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total
