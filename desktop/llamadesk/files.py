"""Saving files so that a crash, a full disk or a power cut leaves the old content or the new, never half,
and reading files others may have placed without ever blocking or reading without end.

A file is written to a temporary file beside it, flushed to disk and renamed over the old one.
A symbolic link is written through (its target gets the new content and the link stays), an
existing file keeps its permissions, and something that is not a regular file (a folder, a FIFO,
a device) is refused rather than replaced. :func:`read_regular_bytes` reads a regular file up to a
size limit: a named pipe, device or folder in its place is refused before it is opened (opening a
pipe waits for a writer) and again on the open file, in case the name was swapped in between.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600  # a new file is readable by its owner only unless the caller asks otherwise


class NotARegularFileError(OSError):
    """The path names a folder, FIFO, socket or device: writing (or reading) there is refused.

    An ``OSError`` so that callers which already report failed writes (``exc.strerror``) show it.
    """


class FileTooLargeError(OSError):
    """A file is larger than the reader of that kind of file accepts; its ``strerror`` says how large."""


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


def _not_regular(path: Path, mode: int, verb: str) -> NotARegularFileError:
    return NotARegularFileError(
        errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
        f"{path} is {_kind(mode)}, not a regular file, so it is not {verb}",
        str(path),
    )


def _size_text(limit: int) -> str:
    return (
        f"{limit >> 20} MB"
        if limit >= 1 << 20
        else f"{limit >> 10} KB"
        if limit >= 1 << 10
        else f"{limit} bytes"
    )


def read_regular_bytes(path: Path | str, *, limit: int) -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes; it never waits on the file.

    Raises ``FileNotFoundError`` when it is missing, ``NotARegularFileError`` for a folder, named
    pipe, socket or device, ``FileTooLargeError`` past ``limit`` (also when it grows while read) and
    ``OSError`` otherwise. Every one is an ``OSError`` whose ``strerror`` is a readable reason.
    """
    path = Path(path)
    try:
        before = os.stat(path)
    except ValueError as exc:  # a NUL or an unencodable character: no such file can exist
        raise FileNotFoundError(errno.ENOENT, f"{path!r} is not a usable file name", str(path)) from exc
    if not stat.S_ISREG(before.st_mode):
        raise _not_regular(path, before.st_mode, "read")
    too_large = FileTooLargeError(
        errno.EFBIG, f"{path} is larger than {_size_text(limit)}, so it is not read", str(path)
    )
    if before.st_size > limit:
        raise too_large
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    )
    fd = os.open(path, flags)
    try:
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode):
            raise _not_regular(path, after.st_mode, "read")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise too_large
    return b"".join(chunks)


def write_regular_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` in place, creating it; for small records, not atomic.

    Never waits: a named pipe (which would wait for a reader), folder or device with that name is
    refused with ``NotARegularFileError`` and left as it is. ``atomic_write_text`` is the safe way
    to replace a file the user cares about.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a pipe nobody reads, a folder
            raise _not_regular(path, os.stat(path).st_mode, "written") from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode, "written")
        os.ftruncate(fd, 0)
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


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
        raise _not_regular(target, current.st_mode, "replaced")
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
