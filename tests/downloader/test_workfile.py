"""Work files: their names, and where a job keeps them."""

from __future__ import annotations

from pooldaemon.downloader.workfile import part_file_name


def test_part_file_names_are_safe_and_distinct() -> None:
    assert part_file_name("main") == "part-main.part"
    odd = part_file_name("../x")
    assert "/" not in odd and odd != part_file_name("__x")
