"""Request files: which names count, and what a submit() outcome may be (docs/interface.md §3)."""

from __future__ import annotations

import pytest

from pooldaemon.drop.parse import SubmitOutcome, is_request_name

# --- names and small pieces ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("requests.txt", True),
        ("REQUESTS.TXT", True),
        ("list.json", True),
        (".hidden.txt", False),
        ("requests.txt.tmp", False),
        ("requests.txt.part", False),
        ("requests.txt.crdownload", False),
        ("requests.txt~", False),
        ("notes.md", False),
        ("requests", False),
        ("requests.txt.result.json", True),
    ],
)
def test_request_names(name: str, taken: bool) -> None:
    assert is_request_name(name) is taken


def test_submit_outcome_is_a_job_or_a_reason() -> None:
    with pytest.raises(ValueError):
        SubmitOutcome()
    with pytest.raises(ValueError):
        SubmitOutcome(job=1, reason="both")
    assert SubmitOutcome(job=3).job == 3
