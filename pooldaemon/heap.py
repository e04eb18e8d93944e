"""The process's heap: glibc malloc's thresholds, and giving freed memory back to the OS.

Downloading, aiohttp reads each socket's bytes into fresh buffers of up to 256 KiB. glibc
serves every allocation above its dynamic mmap threshold with its own mmap and gives it back
on free, and trims the heap top whenever 128 KiB are free there: 70-90k page faults per 512 MiB
downloaded, ~0.2 CPU-s per GiB of the event loop's time (tests/benchmarks/README.md, issue 13).
Fixed thresholds keep those buffers in the heap and reuse them. Elsewhere (musl, macOS) this
does nothing.
"""

from __future__ import annotations

import ctypes
import sys

#: Allocations from this size up get their own mmap: above the largest socket read (256 KiB).
#: (A fixed value also stops glibc's dynamic threshold, which follows freed mmaps up to 32 MiB.)
MMAP_THRESHOLD = 512 << 10
#: Free memory at the heap's top beyond this is given back to the OS. Larger values kept more
#: (tests/benchmarks/README.md: 2 MiB / 8 MiB cost three jobs' peak RSS +16 MB).
TRIM_THRESHOLD = 2 << 20
_M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018  (musl has no mallopt: AttributeError)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> bool:
    """Set the daemon's malloc thresholds (glibc only); whether they were set."""
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok)


def trim() -> None:
    """Give the heap's free memory back to the OS now (glibc only)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
