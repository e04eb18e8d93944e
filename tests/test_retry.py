"""When to try again: the one back-off formula and the Retry-After header."""

from __future__ import annotations

from pooldaemon.retry import backoff_s


def test_backoff_grows_and_is_capped() -> None:
    assert backoff_s(1, 1.0, 60.0, jitter=False) == 1.0
    assert backoff_s(4, 1.0, 60.0, jitter=False) == 8.0
    assert backoff_s(20, 1.0, 60.0, jitter=False) == 60.0
    assert 30.0 <= backoff_s(20, 1.0, 60.0) <= 60.0
