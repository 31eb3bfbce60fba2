"""Remember what each model file's header says, in this process and across runs.

Reading a header is cheap but not free (a big vocabulary takes tens of milliseconds), and
the library lists every model on every start and every command. The facts are kept per
file, keyed by its resolved path and stamped with its size, mtime, inode and ctime, so a
changed, replaced or removed file is read again. Only facts are kept (``GGUFInfo`` fields
and why a file can't be used), never the vocabulary.

The persistent copy is a small JSON file (``configure(path)``, once per process, from the
app or the command line). Writes merge with what is on disk under a lock file and replace
the file atomically, so two processes writing at once lose nothing and never leave half a
file; a damaged file is logged once and rebuilt.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import safejson
from ..files import FileTooLargeError, NotARegularFileError, read_regular_bytes

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl

log = logging.getLogger(__name__)

CACHE_FILE_NAME = "gguf-headers.json"
FORMAT = 1
READER_VERSION = 2  # bump when the facts read from a header change, so old entries are read again
MAX_ENTRIES = 4096
MAX_FILE_BYTES = 64 << 20

Stamp = tuple[int, int, int, int]  # size, mtime_ns, inode, ctime_ns
Facts = dict[str, Any]


def stamp_of(status: os.stat_result) -> Stamp:
    """What identifies one version of a file: any rewrite or replacement changes one of these."""
    return (status.st_size, status.st_mtime_ns, status.st_ino, status.st_ctime_ns)


def _key(path: Path) -> str:
    return os.path.realpath(path)


class HeaderCache:
    """Facts by file, in memory and (when ``file`` is set) in a JSON file shared between runs."""

    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        self.reads = 0  # headers read from model files by this process (``put`` calls)
        self._memory: dict[str, tuple[Stamp, Facts]] = {}
        self._dirty: set[str] = set()
        self._loaded = file is None
        self._rebuild = False
        self._lock = threading.RLock()

    def get(self, path: Path, status: os.stat_result) -> Facts | None:
        """The facts remembered for ``path`` if it is still the file they were read from."""
        key, stamp = _key(path), stamp_of(status)
        with self._lock:
            if not self._loaded:
                self._load()
            found = self._memory.get(key)
        if found is None or found[0] != stamp:
            return None
        return found[1]

    def put(self, path: Path, status: os.stat_result, facts: Facts) -> None:
        """Remember the facts just read from ``path`` (``status`` is the open file's)."""
        key = _key(path)
        with self._lock:
            if not self._loaded:
                self._load()
            self.reads += 1
            if len(self._memory) >= MAX_ENTRIES and key not in self._memory:
                self._memory.pop(next(iter(self._memory)))
            self._memory[key] = (stamp_of(status), facts)
            self._dirty.add(key)

    def flush(self) -> None:
        """Write new facts to the cache file, merged with what other processes wrote meanwhile."""
        with self._lock:
            if self.file is None or not (self._dirty or self._rebuild):
                return
            ours = {key: self._memory[key] for key in self._dirty if key in self._memory}
            file = self.file
            try:
                with _locked(file):
                    merged = _read_entries(file)[0]
                    merged.update({key: _encode(stamp, facts) for key, (stamp, facts) in ours.items()})
                    _write(file, _prune(merged))
            except OSError as exc:
                log.warning("could not save the model header cache %s: %s", file, exc)
                return
            self._dirty.clear()
            self._rebuild = False

    def _load(self) -> None:
        """Read the cache file once; a damaged one is logged and rebuilt at the next flush."""
        self._loaded = True
        if self.file is None:
            return
        entries, problem = _read_entries(self.file)
        if problem:
            log.warning("the model header cache %s is damaged (%s); rebuilding it", self.file, problem)
            self._rebuild = True
        for key, entry in entries.items():
            decoded = _decode(entry)
            if decoded is not None and key not in self._memory:
                self._memory[key] = decoded


def _encode(stamp: Stamp, facts: Facts) -> dict[str, Any]:
    return {"stamp": list(stamp), "facts": facts}


def _decode(entry: object) -> tuple[Stamp, Facts] | None:
    if not isinstance(entry, dict):
        return None
    stamp, facts = entry.get("stamp"), entry.get("facts")
    if not isinstance(facts, dict) or not isinstance(stamp, list) or len(stamp) != 4:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in stamp):
        return None
    return (stamp[0], stamp[1], stamp[2], stamp[3]), facts


def _read_entries(file: Path) -> tuple[dict[str, Any], str | None]:
    """The entries in the cache file and, if it could not be used, why (a missing file is fine)."""
    try:
        # Checked on the open file too: a named pipe swapped in after a stat would block the read.
        data = safejson.loads(read_regular_bytes(file, limit=MAX_FILE_BYTES))
    except FileNotFoundError:
        return {}, None
    except NotARegularFileError:
        return {}, "it is not a regular file"
    except FileTooLargeError:
        return {}, f"it is larger than {MAX_FILE_BYTES >> 20} MB"
    except (OSError, ValueError) as exc:
        return {}, str(exc) or type(exc).__name__
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        return {}, "it is not a header cache"
    if data.get("format") != FORMAT or data.get("reader") != READER_VERSION:
        return {}, None  # written by another version: start afresh, quietly
    return data["entries"], None


def _prune(entries: dict[str, Any]) -> dict[str, Any]:
    """Keep the entries whose file is still there, unchanged (at most ``MAX_ENTRIES``)."""
    kept: dict[str, Any] = {}
    for key, entry in entries.items():
        decoded = _decode(entry)
        if decoded is None:
            continue
        try:
            current = stamp_of(os.stat(key))
        except OSError:
            continue
        if current == decoded[0]:
            kept[key] = entry
    while len(kept) > MAX_ENTRIES:
        kept.pop(next(iter(kept)))
    return kept


def _write(file: Path, entries: dict[str, Any]) -> None:
    body = {"format": FORMAT, "reader": READER_VERSION, "entries": entries}
    try:
        text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a value JSON can't hold: drop what can't be written
        entries = {k: e for k, e in entries.items() if _dumps_ok(e)}
        text = json.dumps({**body, "entries": entries}, allow_nan=False, separators=(",", ":"))
    fd, temp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, file)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _dumps_ok(entry: object) -> bool:
    try:
        json.dumps(entry, allow_nan=False)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def _locked(file: Path) -> Iterator[None]:
    """Hold ``<file>.lock`` while reading, merging and replacing the cache file."""
    file.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(file.with_name(file.name + ".lock"), flags, 0o600)
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_current = HeaderCache()
_atexit_registered = False
_configure_lock = threading.Lock()


def current() -> HeaderCache:
    """The process-wide cache ``inspect_gguf`` uses."""
    return _current


def configure(file: Path | None) -> HeaderCache:
    """Keep header facts in ``file`` across runs (None: in memory only); call once at start-up.

    The app and the command line pass ``paths.data_dir / CACHE_FILE_NAME``. New facts are
    written by ``flush()``, which the library calls after listing and which runs at exit.
    """
    global _current, _atexit_registered
    with _configure_lock:
        if _current.file == file:
            return _current
        _current.flush()
        fresh = HeaderCache(file)
        with _current._lock:
            fresh._memory.update(_current._memory)  # facts read so far stay valid
            fresh._dirty.update(_current._memory)
            fresh.reads = _current.reads
        _current = fresh
        if not _atexit_registered:
            atexit.register(_flush_at_exit)
            _atexit_registered = True
        return fresh


def flush() -> None:
    """Write the process-wide cache's new facts to its file (if configured)."""
    _current.flush()


def _flush_at_exit() -> None:
    with contextlib.suppress(Exception):
        _current.flush()
