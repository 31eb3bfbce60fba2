"""Find the files to index under the paths a user added, and the ones to skip with a reason.

Folders are walked in name order. Hidden names (a leading dot) are skipped inside folders, and a
symbolic link is followed only to a folder not already being walked, so a link loop ends with
one skipped entry instead of running forever. The walk keeps its own stack, so no folder depth
overflows Python's recursion limit; a name that is not valid UTF-8 is skipped with that reason,
since the index stores paths as text.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .extract import supported
from .types import SkippedFile

__all__ = ["NOT_REGULAR", "NotRegularFile", "Walk", "normalize", "read_regular", "storable", "under", "walk"]

NOT_REGULAR = "not a regular file (a device, pipe or socket)"
BAD_NAME = "the file name is not valid UTF-8 (rename it to index it)"


class NotRegularFile(OSError):
    """The path is (now) a device, pipe or socket: reading it could block or never end."""


def storable(path: str) -> bool:
    """Whether ``path`` can be stored as text (a name with undecodable bytes cannot)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in path


def read_regular(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``.

    Opened without blocking and checked after opening, so a file replaced by a pipe or a device
    since it was listed raises ``NotRegularFile`` instead of hanging or reading forever.
    """
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    )
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, NOT_REGULAR)
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        return handle.read(limit)


@dataclass
class Walk:
    """Files to read, files and folders skipped, and whether a cancel stopped the walk."""

    files: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # added paths that no longer exist
    cancelled: bool = False


def normalize(path: Path | str) -> str:
    """The absolute form of a path as stored in the index (links are kept, not resolved)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _stat_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken link (its target is missing)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "not readable (permission denied)"
    return f"not readable ({exc.strerror or exc})"


def walk(roots: Sequence[str], cancel: threading.Event | None = None) -> Walk:
    """Walk ``roots`` (normalized paths): every supported file, and each skipped entry with why."""
    result = Walk()
    seen_files: set[str] = set()
    visited: set[tuple[int, int]] = set()

    def add_file(path: str) -> None:
        if path in seen_files:
            return
        seen_files.add(path)
        if supported(Path(path)):
            result.files.append(path)
        else:
            suffix = Path(path).suffix.lower() or "no extension"
            result.skipped.append(SkippedFile(path, f"unsupported format ({suffix})"))

    Frame = tuple[str, tuple[tuple[int, int], ...], bool]

    def visit(path: str, active: tuple[tuple[int, int], ...], explicit: bool) -> list[Frame]:
        """Look at one path: record it, and return the entries to look at next if it is a folder."""
        if not storable(path):
            result.skipped.append(SkippedFile(path, BAD_NAME))
            return []
        try:
            st = os.stat(path)
        except OSError as exc:
            if explicit and exc.errno == errno.ENOENT and not os.path.lexists(path):
                result.missing.append(path)
            else:
                result.skipped.append(SkippedFile(path, _stat_reason(exc)))
            return []
        if stat.S_ISREG(st.st_mode):
            add_file(path)
            return []
        if not stat.S_ISDIR(st.st_mode):
            result.skipped.append(SkippedFile(path, NOT_REGULAR))
            return []
        key = (st.st_dev, st.st_ino)
        if key in active:
            result.skipped.append(SkippedFile(path, "symbolic link loop (a link back to a folder above it)"))
            return []
        if key in visited:
            if not explicit:  # an added folder inside another added folder is simply walked once
                result.skipped.append(SkippedFile(path, "folder already included through another path"))
            return []
        visited.add(key)
        try:
            with os.scandir(path) as entries:
                names = sorted(e.name for e in entries)
        except OSError as exc:
            result.skipped.append(SkippedFile(path, f"folder {_stat_reason(exc)}"))
            return []
        inner = (*active, key)
        return [(os.path.join(path, name), inner, False) for name in names]

    # Depth first in name order, as a recursive walk would go, on a stack of our own.
    stack: list[Frame] = [(root, (), True) for root in reversed(roots)]
    while stack:
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        path, active, explicit = stack.pop()
        if not explicit and os.path.basename(path).startswith("."):
            result.skipped.append(SkippedFile(path, "hidden"))
            continue
        stack.extend(reversed(visit(path, active, explicit)))
    return result
