"""Atomic file writes: permissions kept, symlinks written through, non-files refused."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from llamadesk.files import (
    PRIVATE_MODE,
    NotARegularFileError,
    atomic_write_bytes,
    atomic_write_text,
    default_file_mode,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions, links and FIFOs")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_is_private_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "notes.txt"
    atomic_write_text(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    assert [p.name for p in path.parent.iterdir()] == ["notes.txt"]
    if sys.platform != "win32":
        assert mode_of(path) == PRIVATE_MODE


@posix_only
def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.md"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and mode_of(path) == 0o640


@posix_only
def test_an_explicit_mode_wins(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)
    atomic_write_bytes(path, b"secret", mode=0o600)
    assert mode_of(path) == 0o600
    fresh = tmp_path / "export.md"
    atomic_write_text(fresh, "x", mode=default_file_mode())
    assert mode_of(fresh) == default_file_mode()


@posix_only
def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    real_dir = tmp_path / "dotfiles"
    real_dir.mkdir()
    target = real_dir / "settings.json"
    target.write_text("{}")
    target.chmod(0o644)
    link = tmp_path / "config" / "settings.json"
    link.parent.mkdir()
    link.symlink_to(target)
    atomic_write_text(link, '{"a": 1}')
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == '{"a": 1}' and mode_of(target) == 0o644
    assert sorted(p.name for p in real_dir.iterdir()) == ["settings.json"]  # temp file was beside it
    assert sorted(p.name for p in link.parent.iterdir()) == ["settings.json"]


@posix_only
def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "file.txt"
    target.parent.mkdir()
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_text(link, "made")
    assert link.is_symlink() and target.read_text() == "made"


@posix_only
def test_a_fifo_is_refused_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "pipes"
    folder.mkdir()
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="named pipe") as caught:
        atomic_write_text(fifo, "data")  # opening a FIFO for writing would block forever
    assert isinstance(caught.value, OSError) and caught.value.strerror and "pipe" in caught.value.strerror
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in folder.iterdir()] == ["pipe"]


@posix_only
def test_a_link_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "out.txt"
    link.symlink_to("/dev/null")
    with pytest.raises(NotARegularFileError, match="device"):
        atomic_write_text(link, "data")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


def test_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "a folder"
    folder.mkdir()
    with pytest.raises(NotARegularFileError, match="is a folder"):
        atomic_write_text(folder, "data")
    assert folder.is_dir() and list(folder.iterdir()) == []


@posix_only
def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    path = folder / "settings.json"
    path.write_text("old")
    folder.chmod(0o500)  # no new files here, so no temp file
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(PermissionError):
            atomic_write_text(path, "new")
    finally:
        folder.chmod(0o700)
    assert path.read_text() == "old" and [p.name for p in folder.iterdir()] == ["settings.json"]
