"""``<file>.lock``: one writer per .part file, across windows and processes."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False if someone else holds it."""
    try:
        if sys.platform == "win32":
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class DownloadLock:
    """``<file>.lock``, held while a download writes the file's .part and installs it.

    Two writers on one .part file (a second window, or ``llamadesk hub download`` while the
    app downloads the same file) would interleave their bytes; the lock lets the second one
    stop with a clear message instead. The operating system drops it if the process dies.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._made: list[Path] = []  # folders created for the lock, removed with it when empty

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another download holds it."""
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            self._made.append(folder)
            folder = folder.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                return False
            try:  # the holder before us may have removed the file we locked: lock the new one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)
        return False

    def release(self) -> None:
        """Drop the lock, remove the lock file and the folders made for it (when empty)."""
        if self._fd is not None:
            if sys.platform == "win32":  # Windows can't remove an open file: close it first
                os.close(self._fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            if sys.platform != "win32":
                os.close(self._fd)
            self._fd = None
        for folder in self._made:  # innermost first; a folder with files in it stays
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []
