"""Download model files from the Hub: resumable, cancellable, verified, one or two at a time.

huggingface_hub's ``hf_hub_download`` cannot be cancelled, does not resume across runs and
checks sizes only, so this module keeps its URL and header helpers and adds its own HTTP
Range loop. A file is written to ``<file>.part``, hashed (SHA-256) as it arrives, and moved
into place only once its hash matches the Hub's; a split model is installed all parts or
none. Threads only, no Qt: the interface wraps the callbacks in signals.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import http.client
import json
import logging
import os
import queue
import re
import shutil
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

from .catalog import HUB_EXCEPTIONS, FilePart, ModelFile, hub_headers, resolve_endpoint, unsafe_repo_path
from .errors import OFFLINE_MESSAGE, HeaderLookup, HubError, status_error, translate

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".source.json"
PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK_SIZE = 1 << 20
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")

FreeSpace = Callable[[Path], int]
OpenPart = Callable[[Path, int], BinaryIO]
_T = TypeVar("_T")


def format_size(size: float) -> str:
    """A byte count as people read it: "950 MB", "4.1 GB"."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {unit}" if abs(size) < 100 else f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


def default_free_space(path: Path) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def open_part_file(path: Path, offset: int) -> BinaryIO:
    """Open ``path`` for writing at ``offset``, dropping anything after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("r+b" if path.exists() else "wb")
    handle.seek(offset)
    handle.truncate()
    return handle


def repo_folder_name(repo_id: str) -> str:
    """``owner/name`` -> ``owner__name``: one folder per repository under the models folder."""
    return repo_id.replace("/", "__")


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> dict[str, object] | None:
    """The source record written next to a downloaded file, if any."""
    try:
        data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


class _DownloadLock:
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


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """Certificate checks with certifi's CA list (the same one huggingface_hub's client uses)."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with huggingface_hub's HTTP client
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


class _HubRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (the Hub sends file bytes from a CDN) but keep the token on the Hub."""

    def __init__(self, endpoint: str, authorization: str | None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.authorization = authorization

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self.authorization and _origin(newurl) == _origin(self.endpoint):
            new.add_unredirected_header("Authorization", self.authorization)
        return new


class _HashThread:
    """SHA-256 on a helper thread, so hashing overlaps the network and the disk."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.thread = threading.Thread(target=self._run, name="download-sha256", daemon=True)
        self.thread.start()

    def update(self, data: bytes) -> None:
        self.queue.put(data)

    def close(self) -> None:
        """Wait until every queued byte is hashed."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            self.hasher.update(data)


def _close_quietly(thing: object) -> None:
    """Close a response (or an HTTPError holding one) nobody will read."""
    close = getattr(thing, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def _flush_to_disk(path: Path) -> None:
    """fsync a verified file before it is moved into place, so a power cut can't leave a hollow model."""
    try:
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())
    except OSError as exc:
        log.info("could not flush %s to disk: %s", path.name, exc.strerror or exc)


def _network_error(exc: BaseException) -> HubError:
    """A HubError for a connection that could not be made or broke."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return HubError(
            "The Hugging Face Hub did not answer in time: check your connection and try again. "
            "The part already downloaded is kept.",
            kind="offline",
        )
    return HubError(OFFLINE_MESSAGE, kind="offline")


class DownloadState(str, Enum):
    QUEUED = "queued"
    STARTING = "starting"  # asking the Hub for sizes and hashes
    HASHING = "hashing"  # re-reading the bytes a previous attempt left on disk
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """True when no thread works on the task (it may be resumed if paused or failed)."""
        return self in _FINISHED


_FINISHED = frozenset(
    {DownloadState.PAUSED, DownloadState.CANCELLED, DownloadState.DONE, DownloadState.FAILED}
)


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot of one download: bytes done of total (all parts), speed and time left."""

    task_id: str
    state: DownloadState
    done: int
    total: int
    speed: float = 0.0  # bytes per second over the last few seconds
    eta: float | None = None  # seconds left at that speed
    part: int = 1  # 1-based index of the file in progress
    parts: int = 1
    filename: str = ""
    message: str | None = None  # the error, when state is FAILED

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


ProgressCallback = Callable[[DownloadProgress], None]


class _Stopped(Exception):
    """Internal: the user paused or cancelled."""


class _Retry(Exception):
    """Internal: the transfer broke off; try again from the bytes on disk."""

    def __init__(self, reason: str, error: HubError | None = None, delay: float | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.delay = delay


@dataclass
class _Part:
    path: str  # path in the repo
    dest: Path
    size: int | None
    sha256: str | None
    done: int = 0
    verified: bool = False
    hasher: Any = field(default_factory=hashlib.sha256)

    @property
    def part_file(self) -> Path:
        return self.dest.with_name(self.dest.name + PART_SUFFIX)


class _Speed:
    """Bytes per second over a sliding window of a few seconds."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, count: int) -> None:
        self.total += count

    def rate(self) -> float:
        now = time.monotonic()
        self.samples.append((now, self.total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        first_t, first_b = self.samples[0]
        elapsed = now - first_t
        return (self.total - first_b) / elapsed if elapsed > 0.05 else 0.0


class Downloader:
    """Settings shared by downloads: where files go, the Hub, the token and the I/O hooks.

    ``free_space`` and ``open_part`` are replaceable so tests can simulate a full disk.
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        free_space: FreeSpace = default_free_space,
        open_part: OpenPart = open_part_file,
        retries: int = 5,
        backoff: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
        progress_interval: float = 0.2,
        timeout: float = 30.0,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.endpoint = resolve_endpoint(endpoint)
        self._token = token or None
        self.free_space = free_space
        self.open_part = open_part
        self.retries = retries
        self.backoff = tuple(backoff) or (1.0,)
        self.progress_interval = progress_interval
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the token
        return f"Downloader(models_dir={str(self.models_dir)!r}, endpoint={self.endpoint!r})"

    def repo_dir(self, repo_id: str) -> Path:
        return self.models_dir / repo_folder_name(repo_id)

    def _authorization(self) -> str | None:
        return f"Bearer {self._token}" if self._token else None

    def _opener(self) -> urllib.request.OpenerDirector:
        """urllib with env proxies, certifi's CAs, and a token that never leaves the Hub's origin."""
        return urllib.request.build_opener(
            _HubRedirects(self.endpoint, self._authorization()),
            urllib.request.HTTPSHandler(context=_ssl_context()),
        )

    def task(
        self,
        repo_id: str,
        files: str | FilePart | ModelFile | Sequence[str | FilePart],
        *,
        revision: str = "main",
        dest_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> DownloadTask:
        """A download of one file, a list of files, or every part of a ``ModelFile``."""
        return DownloadTask(self, repo_id, files, revision=revision, dest_dir=dest_dir, progress=progress)

    def download(
        self,
        repo_id: str,
        files: str | FilePart | ModelFile | Sequence[str | FilePart],
        *,
        revision: str = "main",
        dest_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download on this thread and return the installed (first) file; raise ``HubError``."""
        return self.task(repo_id, files, revision=revision, dest_dir=dest_dir, progress=progress).run()


class DownloadTask:
    """One download (a file, or all parts of a split model) that can pause, resume and cancel.

    ``start()`` runs it on its own thread; ``run()`` runs it on the caller's. Callbacks come
    from the download thread: at least four progress updates a second while bytes flow,
    and one on every state change (the last one is a finished state).
    """

    def __init__(
        self,
        downloader: Downloader,
        repo_id: str,
        files: str | FilePart | ModelFile | Sequence[str | FilePart],
        *,
        revision: str = "main",
        dest_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.downloader = downloader
        self.repo_id = repo_id
        self.revision = revision
        self.dest_dir = Path(dest_dir) if dest_dir is not None else downloader.repo_dir(repo_id)
        if isinstance(files, ModelFile):
            wanted: list[FilePart] = list(files.parts)
        elif isinstance(files, (str, FilePart)):
            wanted = [files if isinstance(files, FilePart) else FilePart(files, 0)]
        else:
            wanted = [f if isinstance(f, FilePart) else FilePart(f, 0) for f in files]
        if not wanted:
            raise HubError("Nothing to download: no file was chosen.", kind="other")
        self._parts = [
            _Part(f.path, self._destination(f.path), f.size or None, (f.sha256 or "").lower() or None)
            for f in wanted
        ]
        self._listeners: list[ProgressCallback] = [progress] if progress else []
        self._lock = threading.Lock()
        self._emit_lock = threading.RLock()  # one progress report at a time, in order
        self._stop = threading.Event()
        self._stop_reason = ""
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._active = False
        self._exit_hooks: list[Callable[[DownloadTask], None]] = []
        self._speed = _Speed()
        self._last_emit = 0.0
        self._current = 0
        self.state = DownloadState.QUEUED
        self.error: HubError | None = None
        self.commit: str | None = None
        self.progress = DownloadProgress(
            self.id, self.state, 0, self._known_total(), parts=len(self._parts), filename=self._parts[0].path
        )

    def __repr__(self) -> str:
        return f"DownloadTask({self.repo_id!r}, {self.filenames!r}, state={self.state.value})"

    # -- public API ------------------------------------------------------------------------

    @property
    def filenames(self) -> list[str]:
        return [p.path for p in self._parts]

    @property
    def paths(self) -> list[Path]:
        """Where the files are installed (all parts)."""
        return [p.dest for p in self._parts]

    @property
    def path(self) -> Path:
        """The installed file to open (the first part of a split model)."""
        return self._parts[0].dest

    @property
    def running(self) -> bool:
        """True while a thread works on this download."""
        return self._active

    def add_listener(self, callback: ProgressCallback) -> None:
        self._listeners.append(callback)

    def add_exit_hook(self, hook: Callable[[DownloadTask], None]) -> None:
        """Call ``hook(task)`` on the download thread once it has finished its work."""
        self._exit_hooks.append(hook)

    def start(self) -> None:
        """Run (or resume) the download on a new thread; returns at once."""
        with self._lock:
            if self._active or self.state in (DownloadState.DONE, DownloadState.CANCELLED):
                return
            self._begin()
            self._thread = threading.Thread(target=self._thread_main, name=f"download-{self.id}", daemon=True)
            self._thread.start()

    def pause(self) -> None:
        """Stop soon (within a second), keeping the partial files for a later ``start()``."""
        self._request_stop("pause")

    def cancel(self) -> None:
        """Stop soon (within a second) and delete the partial files."""
        self._request_stop("cancel")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the download thread to end; True if it has."""
        thread = self._thread
        if thread is None:
            return not self._active
        thread.join(timeout)
        return not thread.is_alive()

    def run(self) -> Path:
        """Download, verify and install on this thread; raise ``HubError`` on failure or stop."""
        with self._lock:
            if self._active:
                raise HubError("This download is already running.", kind="other")
            self._begin()
        try:
            return self._execute()
        finally:
            self._finish()

    # -- the work --------------------------------------------------------------------------

    def _begin(self) -> None:
        self._active = True
        self._stop.clear()
        self._stop_reason = ""
        self.error = None

    def _finish(self) -> None:
        with self._lock:
            self._active = False
        for hook in list(self._exit_hooks):
            try:
                hook(self)
            except Exception:
                log.exception("download exit hook failed")

    def _thread_main(self) -> None:
        try:
            self._execute()
        except HubError:
            pass  # reported through the state, ``error`` and the listeners
        except Exception as exc:  # a bug must still reach the user as a failed download
            log.exception("download of %s crashed", self.repo_id)
            self.error = HubError(f"The download failed unexpectedly ({type(exc).__name__}).", kind="other")
            self._set_state(DownloadState.FAILED, message=str(self.error))
        finally:
            self._finish()

    def _execute(self) -> Path:
        try:
            result = self._run()
        except _Stopped:
            paused = self._stop_reason != "cancel"
            if not paused:
                self._delete_parts()
            self._set_state(DownloadState.PAUSED if paused else DownloadState.CANCELLED)
            message = "Download paused." if paused else "Download cancelled."
            raise HubError(message, kind="cancelled") from None
        except HubError as exc:
            self.error = exc
            self._set_state(DownloadState.FAILED, message=str(exc))
            raise
        self._set_state(DownloadState.DONE)
        return result

    def _run(self) -> Path:
        self._set_state(DownloadState.STARTING)
        if constants.is_offline_mode():
            raise translate(ConnectionError("offline"), endpoint=self.downloader.endpoint)
        locks = self._lock_files()
        try:
            return self._run_locked()
        finally:
            for lock in reversed(locks):
                lock.release()

    def _lock_files(self) -> list[_DownloadLock]:
        """Lock every destination for this attempt, or raise if another download holds one."""
        locks: list[_DownloadLock] = []
        try:
            for part in self._parts:
                lock = _DownloadLock(part.dest.with_name(part.dest.name + LOCK_SUFFIX))
                try:
                    acquired = lock.acquire()
                except OSError as exc:
                    raise self._write_error(exc, part) from None
                if not acquired:
                    raise HubError(
                        f"{PurePosixPath(part.path).name} is already being downloaded by another LlamaDesk "
                        "window or command: let that download finish, or stop it there first.",
                        kind="other",
                    )
                locks.append(lock)
        except BaseException:
            for lock in reversed(locks):
                lock.release()
            raise
        return locks

    def _run_locked(self) -> Path:
        self._resolve()
        todo = [p for p in self._parts if not self._installed(p)]
        for part in todo:
            stale = self._stale_part(part)
            if stale is not None:
                self._restart(part, stale)
        self._check_space(todo)
        for part in todo:
            self._write_record(part.part_file, part, complete=False)
        opener = self.downloader._opener()
        ticking = threading.Event()
        ticker = threading.Thread(
            target=self._tick, args=(ticking,), name=f"download-{self.id}-tick", daemon=True
        )
        ticker.start()
        try:
            for index, part in enumerate(self._parts):
                if part in todo:
                    self._current = index
                    self._fetch(opener, part)
        finally:
            ticking.set()
            ticker.join()
        self._install(todo)
        return self.path

    def _tick(self, stop: threading.Event) -> None:
        """Keep progress (and a falling speed) flowing while the network is silent."""
        while not stop.wait(min(0.05, self.downloader.progress_interval / 4)):
            with self._emit_lock:
                if self.state in (DownloadState.DOWNLOADING, DownloadState.HASHING):
                    self._emit()

    def _resolve(self) -> None:
        """Ask the Hub for each file's size, hash and the commit, pinning later requests to it."""
        endpoint, token = self.downloader.endpoint, self.downloader._token
        for part in self._parts:
            self._check_stop()
            url = self._url(part)
            try:
                meta = self._interruptible(
                    functools.partial(
                        get_hf_file_metadata,
                        url,
                        token=token or False,
                        timeout=self.downloader.timeout,
                        endpoint=endpoint,
                        library_name="llamadesk",
                    )
                )
            except HUB_EXCEPTIONS as exc:
                raise translate(
                    exc,
                    repo_id=self.repo_id,
                    endpoint=endpoint,
                    token=token,
                    filename=part.path,
                    revision=self.revision,
                ) from exc
            self.commit = self.commit or meta.commit_hash
            if meta.size is not None:
                part.size = meta.size
            etag = (meta.etag or "").lower()
            if _SHA256_RE.match(etag):
                if part.sha256 is not None and part.sha256 != etag:
                    # The file list the user picked from is older than the repo: the file was
                    # replaced since. Verify against what will actually be downloaded.
                    log.info(
                        "%s: %s changed on the Hub since its file list was read", self.repo_id, part.path
                    )
                part.sha256 = etag
        self._emit(force=True)

    def _installed(self, part: _Part) -> bool:
        """True if a verified copy of this file is already in place (nothing to do)."""
        try:
            size = part.dest.stat().st_size
        except OSError:
            return False
        record = read_sidecar(part.dest) or {}
        same_hash = part.sha256 is None or record.get("sha256") == part.sha256
        if size == part.size and same_hash and record.get("repo_id") == self.repo_id:
            part.done, part.verified = size, True
            return True
        return False

    def _stale_part(self, part: _Part) -> str | None:
        """Why the bytes in ``part.part_file`` can't be resumed (another version of the file), if so.

        The .part file's sidecar records the file an earlier attempt was fetching; when the
        repo has replaced that file since, those bytes belong to the old version.
        """
        if not part.part_file.exists():
            return None
        record = read_sidecar(part.part_file)
        if record is None:
            return None  # nothing to compare with: the checksum still guards the result
        if record.get("repo_id") != self.repo_id or record.get("path_in_repo") != part.path:
            return "the partial file belongs to another download"
        old_sha, old_size, old_commit = record.get("sha256"), record.get("size"), record.get("commit")
        if part.sha256 is not None and isinstance(old_sha, str) and old_sha.lower() != part.sha256:
            return f"the file changed on the Hub (SHA-256 {old_sha[:12]}… is now {part.sha256[:12]}…)"
        if part.size is not None and isinstance(old_size, int) and old_size != part.size:
            return f"the file changed on the Hub ({old_size:,} bytes are now {part.size:,})"
        if (part.sha256 is None or not old_sha) and self.commit and old_commit and old_commit != self.commit:
            return (
                f"the file may have changed on the Hub (commit {str(old_commit)[:12]} "
                f"is now {self.commit[:12]})"
            )
        return None

    def _check_space(self, todo: list[_Part]) -> None:
        needed = 0
        for part in todo:
            have = part.part_file.stat().st_size if part.part_file.exists() else 0
            part.done = min(have, part.size or have)
            needed += max(0, (part.size or 0) - part.done)
        free = self.downloader.free_space(self.dest_dir)
        if needed > free:
            raise HubError(
                f"Not enough space: needs {format_size(needed)}, have {format_size(free)} free on "
                f"{self._volume()}. Free some space or choose a smaller file.",
                kind="disk",
            )

    def _fetch(self, opener: urllib.request.OpenerDirector, part: _Part) -> None:
        """Bring ``part.part_file`` to the full verified file, resuming from what is on disk."""
        part.hasher = hashlib.sha256()
        part.done = self._hash_existing(part)
        failures = 0
        while part.size is None or part.done < part.size:  # a complete .part needs no request
            self._check_stop()
            before = part.done
            try:
                if self._transfer(opener, part):
                    break
            except _Retry as retry:
                if part.done > before:
                    failures = 0  # progress was made: this is a new problem, not the same one
                failures += 1
                if failures > self.downloader.retries:
                    if retry.error is not None:
                        raise retry.error from None
                    raise HubError(
                        f"The connection to the Hugging Face Hub kept breaking ({retry}). The part already "
                        "downloaded is kept: resume the download when your connection is back.",
                        kind="offline",
                    ) from None
                delay = retry.delay
                if delay is None:
                    delay = self.downloader.backoff[min(failures - 1, len(self.downloader.backoff) - 1)]
                log.info("download of %s interrupted (%s); retrying in %.1fs", part.path, retry, delay)
                if self._stop.wait(delay):
                    self._check_stop()
        self._check_stop()
        self._set_state(DownloadState.VERIFYING)
        digest = part.hasher.hexdigest()
        if part.sha256 is not None and digest != part.sha256:
            part.part_file.unlink(missing_ok=True)
            sidecar_path(part.part_file).unlink(missing_ok=True)
            part.done = 0
            raise HubError(
                f"{PurePosixPath(part.path).name} arrived damaged: its SHA-256 checksum does not match the "
                "Hub's. The damaged file was deleted; download it again.",
                kind="checksum",
            )
        _flush_to_disk(part.part_file)
        part.verified = True

    def _hash_existing(self, part: _Part) -> int:
        """Hash the bytes an earlier attempt left in the .part file; return how many there are."""
        path = part.part_file
        try:
            size = path.stat().st_size
        except OSError:
            return 0
        if part.size is not None and size > part.size:
            path.unlink()
            return 0
        if size == 0:
            return 0
        self._set_state(DownloadState.HASHING)
        done = 0
        with path.open("rb") as handle:
            while chunk := handle.read(4 << 20):
                self._check_stop()
                part.hasher.update(chunk)
                done += len(chunk)
                part.done = done
                self._emit()
        return done

    def _transfer(self, opener: urllib.request.OpenerDirector, part: _Part) -> bool:
        """One HTTP request; True when the file is complete, ``_Retry`` when it broke off."""
        self._match_disk(part)
        offset = part.done
        request = urllib.request.Request(self._url(part), method="GET")
        for key, value in hub_headers(None).items():
            request.add_header(key, value)
        request.add_header("Accept-Encoding", "identity")
        if offset > 0:
            request.add_header("Range", f"bytes={offset}-")
        authorization = self.downloader._authorization()
        if authorization:  # never forwarded on a redirect, except back to the Hub itself
            request.add_unredirected_header("Authorization", authorization)
        try:
            response = self._interruptible(
                functools.partial(opener.open, request, timeout=self.downloader.timeout)
            )
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 416 and offset > 0:
                    if part.size is not None and offset == part.size:
                        return True
                    self._restart(part, "the server refused to resume")
                    raise _Retry("range not satisfiable", delay=0) from None
                if exc.code in (401, 403) and _origin(exc.url) != _origin(self.downloader.endpoint):
                    # The file server the Hub redirected to refused its signed link (it expired,
                    # typically on a resume): the next request asks the Hub for a fresh one.
                    raise _Retry(
                        f"HTTP {exc.code} from the file server",
                        HubError(
                            "The Hugging Face Hub's file server refused the download link "
                            f"(HTTP {exc.code}): try again later. The part already downloaded is kept.",
                            kind="server",
                        ),
                        delay=0 if offset > 0 else None,
                    ) from None
                raise self._http_error(exc.code, exc.headers, part) from None
        except (OSError, http.client.HTTPException) as exc:
            self._check_stop()
            raise _Retry(type(exc).__name__, _network_error(exc)) from None
        with response:
            self._watch_socket(response)
            try:
                start = self._start_offset(response.status, response.headers.get("Content-Range"), offset)
                if start != offset:
                    self._restart(part, "the server does not support resuming")
                    if start != 0:
                        raise _Retry("the server sent an unexpected range", delay=0)
                if part.size is None:
                    length = response.headers.get("Content-Length") or ""
                    part.size = start + int(length) if length.isdigit() else None
                self._set_state(DownloadState.DOWNLOADING)
                self._receive(response, part)
            except (OSError, http.client.HTTPException) as exc:
                self._check_stop()
                raise _Retry(type(exc).__name__) from None
            finally:
                self._watch_socket(None)
        self._check_stop()
        if part.size is not None and part.done < part.size:
            raise _Retry(f"connection closed at {part.done:,} of {part.size:,} bytes")
        return True

    def _http_error(self, status: int, headers: HeaderLookup, part: _Part) -> HubError | _Retry:
        error = status_error(
            status,
            repo_id=self.repo_id,
            endpoint=self.downloader.endpoint,
            token=self.downloader._token,
            error_code=headers.get("X-Error-Code"),
            server_message=headers.get("X-Error-Message"),
            headers=headers,
            filename=part.path,
            revision=self.revision,
        )
        if status == 429 or status >= 500:
            return _Retry(f"HTTP {status}", error, delay=self._retry_delay(error))
        return error

    def _receive(self, response: http.client.HTTPResponse, part: _Part) -> None:
        """Write the body to the .part file; SHA-256 runs on a helper thread alongside."""
        try:
            handle = self.downloader.open_part(part.part_file, part.done)
        except OSError as exc:
            raise self._write_error(exc, part) from None
        hasher = _HashThread(part.hasher)
        received = False
        try:
            with handle:
                try:
                    while not self._stop.is_set():
                        chunk = response.read1(CHUNK_SIZE)
                        if not chunk:
                            break
                        if part.size is not None and part.done + len(chunk) > part.size:
                            raise _Retry("the server sent more bytes than the file has")
                        try:
                            handle.write(chunk)
                        except OSError as exc:
                            raise self._write_error(exc, part) from None
                        hasher.update(chunk)
                        part.done += len(chunk)
                        self._speed.add(len(chunk))
                        self._emit()
                finally:
                    hasher.close()
                received = True
        except OSError as exc:
            if not received:
                raise  # the network broke: retried
            # Closing flushes the last buffered bytes: they may not be on disk.
            raise self._write_error(exc, part) from None

    def _install(self, todo: list[_Part]) -> None:
        """Move every verified part into place and record where it came from: all parts or none.

        The records are written first and the first part (the one people open) is moved last,
        so a split model never looks installed before every part is; if a move fails, the
        parts already moved go back to their .part files and the old records come back.
        """
        self._check_stop()
        previous: dict[Path, str | None] = {}  # each destination's record before the install
        for part in todo:
            try:
                previous[part.dest] = sidecar_path(part.dest).read_text(encoding="utf-8")
            except OSError:
                previous[part.dest] = None
        for part in self._parts:
            if part in todo or read_sidecar(part.dest) is None:
                self._write_record(part.dest, part, complete=True)
        moved: list[_Part] = []
        try:
            for part in sorted(todo, key=lambda p: p is self._parts[0]):
                try:
                    os.replace(part.part_file, part.dest)
                except OSError as exc:
                    raise self._write_error(exc, part) from None
                moved.append(part)
        except BaseException:
            self._roll_back(moved, previous)
            raise
        for part in self._parts:
            sidecar_path(part.part_file).unlink(missing_ok=True)

    def _roll_back(self, moved: list[_Part], previous: dict[Path, str | None]) -> None:
        """Undo a failed install: moved parts back to their .part files, records as they were."""
        for part in reversed(moved):
            try:
                os.replace(part.dest, part.part_file)
            except OSError as exc:  # the verified file stays installed, with its new record
                log.warning("could not move %s back: %s", part.dest.name, exc.strerror or exc)
                previous.pop(part.dest, None)
        for dest, text in previous.items():
            record = sidecar_path(dest)
            try:
                if text is not None and dest.exists():
                    record.write_text(text, encoding="utf-8")
                else:
                    record.unlink(missing_ok=True)
            except OSError as exc:
                log.info("could not restore %s: %s", record.name, exc.strerror or exc)

    def _write_record(self, path: Path, part: _Part, *, complete: bool) -> None:
        """The JSON sidecar that tells the library (and a later resume) where a file comes from."""
        record = {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "path_in_repo": part.path,
            "sha256": part.sha256,
            "size": part.size,
            "parts": self.filenames,
            "complete": complete,
            "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sidecar_path(path).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            log.info("could not write %s: %s", sidecar_path(path).name, exc.strerror or exc)

    # -- helpers ---------------------------------------------------------------------------

    def _url(self, part: _Part) -> str:
        revision = self.commit or self.revision
        return hf_hub_url(self.repo_id, part.path, revision=revision, endpoint=self.downloader.endpoint)

    def _destination(self, path: str) -> Path:
        if unsafe_repo_path(path):
            raise HubError(f"Refusing to download {path!r}: the name points outside the model's folder.")
        return self.dest_dir.joinpath(*PurePosixPath(path).parts)

    def _known_total(self) -> int:
        return sum(p.size or 0 for p in self._parts)

    def _volume(self) -> str:
        """The nearest existing folder of the destination (the disk the space is counted on)."""
        probe = self.dest_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return str(probe)

    def _retry_delay(self, error: HubError) -> float | None:
        if error.retry_after is not None:
            return float(min(error.retry_after, 60))
        return None

    @staticmethod
    def _start_offset(status: int, content_range: str | None, requested: int) -> int:
        """The byte offset the response body starts at (0 when the server ignored Range)."""
        if status != 206:
            return 0
        match = _CONTENT_RANGE_RE.match(content_range or "")
        if match:
            return int(match.group(1))
        return -1 if requested else 0

    def _match_disk(self, part: _Part) -> None:
        """Make ``part.done`` and the hash describe the bytes really in the .part file.

        They can differ after a failed write or close; resuming from a count the disk does not
        hold would leave a gap of zeros in a file whose streamed checksum still matches.
        """
        try:
            on_disk = part.part_file.stat().st_size
        except FileNotFoundError:
            on_disk = 0
        except OSError as exc:
            raise self._write_error(exc, part) from None
        if on_disk != part.done:
            log.info(
                "%s: %s holds %d bytes, not %d; checking them again",
                self.repo_id,
                part.path,
                on_disk,
                part.done,
            )
            part.hasher = hashlib.sha256()
            part.done = self._hash_existing(part)

    def _interruptible(self, call: Callable[[], _T]) -> _T:
        """Run a blocking network call on a helper thread so pause and cancel need not wait for it.

        A server that accepts the connection and never answers would otherwise hold the
        download for the whole timeout. An abandoned call's response is closed when it comes.
        """
        lock = threading.Lock()
        done = threading.Event()
        outcome: list[tuple[bool, Any]] = []
        abandoned = False

        def work() -> None:
            try:
                value: tuple[bool, Any] = (True, call())
            except BaseException as exc:
                value = (False, exc)
            with lock:
                if abandoned:
                    _close_quietly(value[1])
                else:
                    outcome.append(value)
            done.set()

        threading.Thread(target=work, name=f"download-{self.id}-request", daemon=True).start()
        try:
            while not done.wait(0.05):
                self._check_stop()
        except BaseException:
            with lock:
                abandoned = True
                for _ok, value in outcome:
                    _close_quietly(value)
            raise
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def _restart(self, part: _Part, reason: str) -> None:
        """Start this file again from byte 0 (the server will not resume it)."""
        log.info("%s: %s; starting %s again from the beginning", self.repo_id, reason, part.path)
        part.done = 0
        part.hasher = hashlib.sha256()
        part.part_file.unlink(missing_ok=True)

    def _write_error(self, exc: OSError, part: _Part) -> HubError:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            needed = max(0, (part.size or 0) - part.done) + sum(
                max(0, (p.size or 0) - p.done) for p in self._parts if p is not part and not p.verified
            )
            try:
                free = self.downloader.free_space(self.dest_dir)
            except OSError:
                free = 0
            return HubError(
                f"Not enough space: needs {format_size(needed)} more, have {format_size(free)} free on "
                f"{self._volume()}. The part already downloaded is kept: free some space and resume.",
                kind="disk",
            )
        return HubError(
            f"Can't write {part.part_file}: {exc.strerror or exc}. The part already downloaded is kept.",
            kind="disk",
        )

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped()

    def _request_stop(self, reason: str) -> None:
        with self._lock:
            self._stop_reason = reason
            self._stop.set()
            sock = self._socket
            active = self._active
        if sock is not None:  # wake a read blocked on a silent server at once
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if active:
            return  # the download thread reports the new state when it stops
        if reason == "cancel" and self.state is not DownloadState.DONE:
            self._delete_parts()
            self._set_state(DownloadState.CANCELLED)
        elif reason == "pause" and self.state is DownloadState.QUEUED:
            self._set_state(DownloadState.PAUSED)

    def _watch_socket(self, response: http.client.HTTPResponse | None) -> None:
        """Remember the response's socket so ``pause``/``cancel`` can wake a blocked read."""
        sock = None
        if response is not None:
            raw = getattr(getattr(response, "fp", None), "raw", None)
            sock = getattr(raw, "_sock", None)
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
        if response is not None and self._stop.is_set():
            self._check_stop()

    def _delete_parts(self) -> None:
        """Delete the partial files (on cancel), unless another download is writing them now."""
        for part in self._parts:
            part.done, part.verified = 0, False
        if not any(p.part_file.exists() or sidecar_path(p.part_file).exists() for p in self._parts):
            return
        try:
            locks = self._lock_files()
        except HubError as exc:
            log.info("%s: partial files left in place: %s", self.repo_id, exc)
            return
        try:
            for part in self._parts:
                part.part_file.unlink(missing_ok=True)
                sidecar_path(part.part_file).unlink(missing_ok=True)
        finally:
            for lock in reversed(locks):
                lock.release()

    def _set_state(self, state: DownloadState, message: str | None = None) -> None:
        with self._emit_lock:
            with self._lock:
                self.state = state
            self._emit(force=True, message=message)

    def _emit(self, *, force: bool = False, message: str | None = None) -> None:
        with self._emit_lock:
            self._emit_locked(force, message)

    def _emit_locked(self, force: bool, message: str | None) -> None:
        now = time.monotonic()
        if not force and now - self._last_emit < self.downloader.progress_interval:
            return
        self._last_emit = now
        total = self._known_total()
        done = sum(p.done if p.size is None else min(p.done, p.size) for p in self._parts)
        speed = self._speed.rate() if self.state is DownloadState.DOWNLOADING else 0.0
        eta = (total - done) / speed if speed > 0 and total >= done else None
        self.progress = DownloadProgress(
            self.id,
            self.state,
            done,
            total,
            speed,
            eta,
            self._current + 1,
            len(self._parts),
            self._parts[self._current].path,
            message,
        )
        for listener in list(self._listeners):
            try:
                listener(self.progress)
            except Exception:  # a broken listener must not break the download
                log.exception("download progress listener failed")


class DownloadQueue:
    """Runs downloads on background threads, ``max_parallel`` at a time, in the order added.

    ``on_progress(task, progress)`` and ``on_finished(task)`` are called from download
    threads; ``on_finished`` fires when a task stops for any reason (``task.state`` says which).
    """

    def __init__(
        self,
        downloader: Downloader,
        *,
        max_parallel: int = 1,
        on_progress: Callable[[DownloadTask, DownloadProgress], None] | None = None,
        on_finished: Callable[[DownloadTask], None] | None = None,
    ) -> None:
        self.downloader = downloader
        self._max_parallel = max(1, int(max_parallel))
        self.on_progress = on_progress
        self.on_finished = on_finished
        self._tasks: list[DownloadTask] = []
        self._waiting: deque[DownloadTask] = deque()
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._closed = False

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    @max_parallel.setter
    def max_parallel(self, value: int) -> None:
        self._max_parallel = max(1, int(value))
        self._schedule()

    @property
    def tasks(self) -> list[DownloadTask]:
        with self._lock:
            return list(self._tasks)

    def active(self) -> list[DownloadTask]:
        """Tasks queued or running."""
        with self._lock:
            return [t for t in self._tasks if not t.state.finished]

    def add(
        self,
        repo_id: str,
        files: str | FilePart | ModelFile | Sequence[str | FilePart],
        *,
        revision: str = "main",
        dest_dir: Path | None = None,
    ) -> DownloadTask:
        """Queue a download, or return the task already queued for the same files.

        A paused or failed task for the same files is resumed (and returned) instead.
        """
        task = self.downloader.task(repo_id, files, revision=revision, dest_dir=dest_dir)
        with self._lock:
            if self._closed:
                raise HubError("Downloads are shutting down.", kind="cancelled")
            for existing in self._tasks:
                if existing.paths != task.paths:
                    continue
                if not existing.state.finished:
                    return existing
                if existing.state in (DownloadState.PAUSED, DownloadState.FAILED):
                    # It still owns the .part files: a second task would write them too.
                    self.resume(existing)
                    return existing
            task.add_listener(functools.partial(self._progress, task))
            task.add_exit_hook(self._task_exited)
            self._tasks.append(task)
            self._waiting.append(task)
        self._schedule()
        return task

    def pause(self, task: DownloadTask) -> None:
        with self._lock:
            if task in self._waiting:
                self._waiting.remove(task)
        task.pause()

    def resume(self, task: DownloadTask) -> None:
        """Queue a paused or failed task again; it continues from its partial files."""
        with self._lock:
            if (
                task.running
                or task in self._waiting
                or task.state in (DownloadState.DONE, DownloadState.CANCELLED)
            ):
                return
            task._set_state(DownloadState.QUEUED)
            self._waiting.append(task)
        self._schedule()

    def cancel(self, task: DownloadTask) -> None:
        with self._lock:
            if task in self._waiting:
                self._waiting.remove(task)
        task.cancel()

    def remove(self, task: DownloadTask) -> None:
        """Forget a finished task (cancel it first if it is still active)."""
        if not task.state.finished:
            self.cancel(task)
            task.wait(5)
        with self._lock:
            if task in self._tasks:
                self._tasks.remove(task)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running; True if that happened in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._waiting or any(t.running for t in self._tasks):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(0.05 if left is None else min(left, 0.05))
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Pause every download (partial files are kept) and wait for the threads to end."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            running = [t for t in self._tasks if t.running]
        for task in waiting:
            task.pause()
        for task in running:
            task.pause()
        deadline = time.monotonic() + timeout
        for task in running:
            task.wait(max(0.0, deadline - time.monotonic()))

    def _schedule(self) -> None:
        to_start: list[DownloadTask] = []
        with self._lock:
            if self._closed:
                return
            running = sum(1 for t in self._tasks if t.running)
            while self._waiting and running < self._max_parallel:
                task = self._waiting.popleft()
                to_start.append(task)
                running += 1
            for task in to_start:
                task.start()

    def _progress(self, task: DownloadTask, progress: DownloadProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(task, progress)
        if progress.state.finished and self.on_finished is not None and not task.running:
            self.on_finished(task)  # stopped while queued: no thread will report it

    def _task_exited(self, task: DownloadTask) -> None:
        if self.on_finished is not None:
            self.on_finished(task)
        self._schedule()
        with self._idle:
            self._idle.notify_all()
