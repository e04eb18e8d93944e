"""The process's malloc settings (glibc only; a no-op elsewhere)."""

from __future__ import annotations

import platform
import sys

from pooldaemon import heap


def test_the_thresholds_are_set_on_glibc_and_skipped_elsewhere() -> None:
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert heap.tune_malloc() is on_glibc
    heap.trim()  # gives free memory back, or does nothing: never raises


def test_the_mmap_threshold_lies_above_a_socket_read() -> None:
    # asyncio reads a socket in pieces of at most 256 KiB: they must come from the heap (and be
    # reused), not from an mmap of their own each; and the heap keeps at least that much free.
    assert heap.MMAP_THRESHOLD > 256 * 1024
    assert heap.TRIM_THRESHOLD >= heap.MMAP_THRESHOLD
