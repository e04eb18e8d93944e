"""When to try again: the one back-off formula and the Retry-After header."""

from __future__ import annotations

import email.utils
import time

from pooldaemon.retry import backoff_s, parse_retry_after


def test_backoff_grows_and_is_capped() -> None:
    assert backoff_s(1, 1.0, 60.0, jitter=False) == 1.0
    assert backoff_s(4, 1.0, 60.0, jitter=False) == 8.0
    assert backoff_s(20, 1.0, 60.0, jitter=False) == 60.0
    assert 30.0 <= backoff_s(20, 1.0, 60.0) <= 60.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 60, usegmt=True)
    assert 55 <= (parse_retry_after(date, now=now) or 0) <= 61
