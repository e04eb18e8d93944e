"""Durable-filesystem helpers (docs/reliability.md D1, D2)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from pooldaemon import fsutil


def test_atomic_write_replaces_content_with_exact_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_bytes(b"old")
    target.chmod(0o644)
    old_umask = os.umask(0o000)
    try:
        fsutil.atomic_write_bytes(target, b"new contents")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new contents"
    # curl CVE-2022-32207: the rewrite must not keep or widen the old permissions.
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_atomic_write_honours_mode_and_large_data(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    target = tmp_path / "blob"
    fsutil.atomic_write_bytes(target, data, mode=0o640)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.mkdir()  # os.replace of a file onto a directory fails
    with pytest.raises(OSError):
        fsutil.atomic_write_bytes(target, b"x")
    assert target.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_full_fsync_and_fsync_dir(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with open(path, "wb") as fh:
        fh.write(b"data")
        fh.flush()
        fsutil.full_fsync(fh.fileno())
    fsutil.fsync_dir(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsutil.fsync_dir(fd)
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        fsutil.fsync_dir(tmp_path / "missing")


def test_full_fsync_on_a_closed_fd_raises() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        fsutil.full_fsync(w)


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate")
def test_preallocate_reserves_the_size(tmp_path: Path) -> None:
    path = tmp_path / "partial"
    with open(path, "wb") as fh:
        fsutil.preallocate(fh.fileno(), 1_000_000)
        fsutil.preallocate(fh.fileno(), 0)  # no-op
    assert path.stat().st_size == 1_000_000


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate")
def test_preallocate_beyond_free_space_raises_enospc_without_filling_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Never let this reach posix_fallocate: ext4 keeps what it allocated before failing, so a
    # real attempt fills the disk. The pre-check must refuse first.
    def guard(fd: int, offset: int, length: int) -> None:
        pytest.fail("posix_fallocate was called for more than the free space")

    monkeypatch.setattr(os, "posix_fallocate", guard)
    path = tmp_path / "huge"
    with open(path, "wb") as fh:
        fh.write(b"1234")
        fh.flush()
        vfs = os.fstatvfs(fh.fileno())
        too_much = vfs.f_bavail * vfs.f_frsize + (1 << 30)
        with pytest.raises(OSError) as info:
            fsutil.preallocate(fh.fileno(), too_much)
    assert info.value.errno == errno.ENOSPC
    assert path.stat().st_size == 4
    assert path.stat().st_blocks * 512 < 1 << 20


def test_preallocate_on_a_pipe_is_not_silently_accepted() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            fsutil.preallocate(w, 4096)
        assert info.value.errno == errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)


def test_free_space_uses_nearest_existing_ancestor(tmp_path: Path) -> None:
    expected = shutil.disk_usage(tmp_path).free
    got = fsutil.free_space(tmp_path / "not" / "yet" / "there.mp3")
    # Other processes write meanwhile; the same filesystem gives nearly the same number.
    assert abs(got - expected) < 64 * 1024 * 1024


def test_existing_ancestor(tmp_path: Path) -> None:
    assert fsutil.existing_ancestor(tmp_path / "a" / "b") == tmp_path
    assert fsutil.existing_ancestor(tmp_path) == tmp_path


def test_mount_point_is_an_ancestor_on_the_same_device(tmp_path: Path) -> None:
    mount = fsutil.mount_point(tmp_path / "x" / "y.mp3")
    real = Path(os.path.realpath(tmp_path))
    assert real == mount or mount in real.parents
    assert mount.stat().st_dev == real.stat().st_dev
    assert mount == Path("/") or mount.parent.stat().st_dev != mount.stat().st_dev
    assert fsutil.mount_point(Path("/")) == Path("/")


@pytest.mark.skipif(not Path("/proc").is_dir() or sys.platform != "linux", reason="needs /proc")
def test_mount_point_of_proc() -> None:
    assert fsutil.mount_point(Path("/proc/self/status")) == Path("/proc")


def test_same_filesystem(tmp_path: Path) -> None:
    assert fsutil.same_filesystem(tmp_path / "a", tmp_path / "b" / "c")
    if Path("/proc").is_dir():
        assert not fsutil.same_filesystem(tmp_path, Path("/proc/self"))


# -- linking without replacing ----------------------------------------------------------------


def test_link_no_clobber_gives_a_second_name(tmp_path: Path) -> None:
    src, dest = tmp_path / "work.part", tmp_path / "Artist - Title.mp3"
    src.write_bytes(b"verified")
    assert fsutil.link_no_clobber(src, dest) is True
    assert dest.read_bytes() == b"verified"
    assert os.path.samefile(src, dest)


def test_link_no_clobber_never_replaces_an_entry(tmp_path: Path) -> None:
    src, dest = tmp_path / "work.part", tmp_path / "taken.mp3"
    src.write_bytes(b"new")
    dest.write_bytes(b"the user's file")
    with pytest.raises(FileExistsError):
        fsutil.link_no_clobber(src, dest)
    assert dest.read_bytes() == b"the user's file"
    # A dangling symlink is an entry too: it is not replaced either.
    dangling = tmp_path / "dangling.mp3"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        fsutil.link_no_clobber(src, dangling)
    assert dangling.is_symlink()


def test_link_no_clobber_links_a_symlink_itself(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("not to be followed")
    link, dest = tmp_path / "link", tmp_path / "moved"
    link.symlink_to(target)
    fsutil.link_no_clobber(link, dest)
    assert dest.is_symlink() and os.readlink(dest) == str(target)


@pytest.mark.parametrize("code", sorted(fsutil.NO_HARD_LINKS))
def test_without_hard_links_a_free_name_is_taken_by_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # FAT and exFAT sticks and some network shares refuse link() with one of these.
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    src, dest, taken = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    src.write_bytes(b"data")
    taken.write_bytes(b"keep")
    monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(FileExistsError):
        fsutil.link_no_clobber(src, taken)
    assert taken.read_bytes() == b"keep" and src.exists()
    assert fsutil.link_no_clobber(src, dest) is False
    assert dest.read_bytes() == b"data" and not src.exists()


def test_other_link_errors_are_raised(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fsutil.link_no_clobber(tmp_path / "missing", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
