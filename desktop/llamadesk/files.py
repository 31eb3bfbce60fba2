"""Saving files so that a crash, a full disk or a power cut leaves the old content or the new, never half.

A file is written to a temporary file beside it, flushed to disk and renamed over the old one.
A symbolic link is written through (its target gets the new content and the link stays), an
existing file keeps its permissions, and something that is not a regular file (a folder, a FIFO,
a device) is refused rather than replaced.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600  # a new file is readable by its owner only unless the caller asks otherwise


class NotARegularFileError(OSError):
    """The path names a folder, FIFO, socket or device: writing there is refused.

    An ``OSError`` so that callers which already report failed writes (``exc.strerror``) show it.
    """


def default_file_mode() -> int:
    """The permissions a file created the usual way gets: 0o666 less the process umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def resolve_target(path: Path) -> Path:
    """The file a write to ``path`` should change: the end of its symlinks, if it is one."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path``'s content with ``data`` atomically.

    ``mode`` sets the permissions; without it an existing file keeps its own and a new file gets
    0o600. Raises ``NotARegularFileError`` when ``path`` is not a regular file, ``OSError`` otherwise.
    """
    target = resolve_target(Path(path))
    try:
        current = os.stat(target)
    except FileNotFoundError:
        current = None
    if current is not None and not stat.S_ISREG(current.st_mode):
        what = _kind(current.st_mode)
        raise NotARegularFileError(
            errno.EISDIR if stat.S_ISDIR(current.st_mode) else errno.EINVAL,
            f"{target} is {what}, not a regular file, so it is not replaced",
            str(target),
        )
    if mode is None:
        mode = stat.S_IMODE(current.st_mode) if current is not None else PRIVATE_MODE
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:  # Windows before Python 3.13; its chmod only knows read-only, the folder ACL protects it
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace ``path``'s content with ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def _sync_folder(folder: Path) -> None:
    """Flush the rename to disk too (POSIX); folders cannot be opened on Windows, which is fine."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
