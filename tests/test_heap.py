"""The process's malloc settings (glibc only; a no-op elsewhere)."""

from __future__ import annotations

import platform
import sys

from pooldaemon import heap


def test_the_thresholds_are_set_on_glibc_and_skipped_elsewhere() -> None:
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert heap.tune_malloc() is on_glibc
    heap.trim()  # gives free memory back, or does nothing: never raises


def test_the_mmap_threshold_lies_above_a_socket_read_and_a_write_block() -> None:
    # aiohttp's reads are at most 256 KiB and the writers' blocks 1 MiB: both must come from the
    # heap (reused), not from an mmap of their own per allocation.
    assert heap.MMAP_THRESHOLD > (1 << 20) >= 256 * 1024
    assert heap.TRIM_THRESHOLD >= heap.MMAP_THRESHOLD
