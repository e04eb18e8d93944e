"""The drop folder: request files dropped into `drop_dir` become download jobs (docs/interface.md
§3).

The watcher hands parsed requests to a `submit(requests, idempotency_key)` callable and knows
nothing of the downloader. How it keeps the contract's promises:

- **Complete files only** (docs/reliability.md F2, watchdog#586): a file is read once its lstat
  signature (inode, size, mtime, ctime, mode, owner) has stayed the same for `stable_s` (1 s per
  docs/interface.md §3), as observed by this process; a file renamed into place is no different. The
  size and mtime are checked again after reading, so a writer that resumes mid-read only delays it.
- **Events are hints, the directory listing is the truth**: every watchfiles event batch, every
  due stability check and a periodic rescan (`rescan_interval_s`; network shares, inotify
  overflow) lead to the same full listing. Missing an event only costs latency.
- **Untrusted input** (docs/reliability.md F1): at most 1 MiB + 1 byte is ever read, before any
  parsing. Oversized, binary, UTF-16/32 and other non-UTF-8 files are rejected as a whole. Files are
  opened with O_NOFOLLOW | O_NONBLOCK and must be regular files owned by our effective uid.
- **Refused entries** (symlinks, other users' files, FIFOs and the like) are never read: the
  entry itself (for a symlink, the link, never its target) is moved to `rejected/` with an
  errors file saying why, so the refusal is visible and nothing is deleted.
- **Nothing deleted or overwritten**: files are moved with `link()` then `unlink()`, which cannot
  replace an existing name; where the filesystem has no hard links, `rename()` after an existence
  check. Result files are written to a temporary file, fsynced, then linked into place.
- **No request lost or doubled across a crash** (docs/reliability.md C5): the parsed lines are
  recorded under the content's sha256 *before* anything is submitted; the requests are submitted in
  calls of up to SUBMIT_CHUNK, each with the key `drop:<sha256>:<line of its first request>` (the
  submit side stores the outcomes under the key in the same transaction as the jobs and answers a
  key it has seen with those outcomes, creating nothing); then the result and the destination
  name with the exact result text are recorded; then the result file is written and the file
  moved; then the move is marked done. A restart resumes at whichever step was reached.
- **Duplicates**: a file whose content was already processed is answered from the record (same
  job ids, no new submission) and moved like any other. To ask again, change the file (a comment
  line will do).

The package, in the order a file travels through it:

- `parse.py`: which names are request files, bytes → parsed request lines (or why not), and the
  exact text of the result and errors files. Pure: no filesystem, no store.
- `files.py`: the filesystem side, run in threads: listing, reading a stable entry once, choosing
  free names, writing result files and moving entries without replacing anything.
- `watcher.py`: `DropWatcher`, the loop that ties them to the store and to `submit()`.
"""

from pooldaemon.drop.parse import PoolKinds, Submit, SubmitOutcome
from pooldaemon.drop.watcher import DropReport, DropWatcher

__all__ = ["DropReport", "DropWatcher", "PoolKinds", "Submit", "SubmitOutcome"]
