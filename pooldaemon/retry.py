"""When to try again: one exponential back-off formula, and the `Retry-After` header read.

A leaf: the pool adapters' HTTP helper, the downloader and the scheduler all wait by these rules,
and none of them imports another to get them.
"""

from __future__ import annotations

import email.utils
import random
import time


def backoff_s(attempt: int, base_s: float, max_s: float, *, jitter: bool = True) -> float:
    """Exponential back-off for the `attempt`th failure (1-based), with full jitter above half.

    Jitter keeps many workers from retrying in step; the lower half is kept so a back-off is
    never close to zero (no tight loops, docs/reliability.md).
    """
    delay = float(min(max_s, base_s * 2 ** max(0, attempt - 1)))
    if jitter:
        delay = delay / 2 + random.uniform(0, delay / 2)
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
