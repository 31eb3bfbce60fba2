"""The state every download task holds, and how it stops and reports progress.

``DownloadTask`` is assembled from this core and two halves that work on it: the transfer
(``transfer.py``: sizes, hashes and the HTTP Range loop) and the install (``install.py``:
space, records, all-or-nothing moves).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from huggingface_hub import hf_hub_url

from ..catalog import FilePart, ModelFile
from ..errors import HubError, check_repo_id, check_revision, is_utf8, unsafe_repo_path, valid_size
from .files import LOCK_SUFFIX, format_size, nearest_existing, sidecar_path
from .lock import DownloadLock
from .part import Part
from .progress import DownloadProgress, DownloadState, ProgressCallback, Speed
from .transport import Stopped, interruptible

if TYPE_CHECKING:
    from .downloader import Downloader

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Files: TypeAlias = str | FilePart | ModelFile | Sequence[str | FilePart]


class TaskCore:
    """A download's files, state, listeners and stop flag, shared by the transfer and the install."""

    def __init__(
        self,
        downloader: Downloader,
        repo_id: str,
        files: Files,
        *,
        revision: str = "main",
        dest_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.downloader = downloader
        self.repo_id = check_repo_id(repo_id)
        self.revision = check_revision(revision)
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
            Part(
                f.path,
                self._destination(f.path),
                valid_size(f.size) or None,
                (f.sha256 or "").lower() or None,
                (f.git_sha1 or "").lower() or None,
            )
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
        self._speed = Speed()
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

    # -- helpers ---------------------------------------------------------------------------

    def _url(self, part: Part) -> str:
        revision = self.commit or self.revision
        return hf_hub_url(self.repo_id, part.path, revision=revision, endpoint=self.downloader.endpoint)

    def _destination(self, path: str) -> Path:
        if not is_utf8(path):
            raise HubError(f"Refusing to download {path!r}: it is not a name a file can have.")
        if unsafe_repo_path(path):
            raise HubError(f"Refusing to download {path!r}: the name points outside the model's folder.")
        return self.dest_dir.joinpath(*PurePosixPath(path).parts)

    def _known_total(self) -> int:
        return sum(p.size or 0 for p in self._parts)

    def _volume(self) -> str:
        """The nearest existing folder of the destination (the disk the space is counted on)."""
        return str(nearest_existing(self.dest_dir))

    def _interruptible(self, call: Callable[[], _T], deadline: float | None = None) -> _T:
        """Run a blocking network call so that pause, cancel and ``deadline`` need not wait for it."""
        return interruptible(
            call, check_stop=self._check_stop, deadline=deadline, name=f"download-{self.id}-request"
        )

    def _write_error(self, exc: OSError, part: Part) -> HubError:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            needed = max(0, (part.size or 0) - part.done) + sum(
                max(0, (p.size or 0) - p.done) for p in self._parts if p is not part and not p.verified
            )
            try:
                free = self.downloader.free_space(self.dest_dir)
            except OSError:
                free = 0
            volume = self._volume()
            if needed > 0:
                shortfall = f"needs {format_size(needed)} more, have {format_size(free)} free on {volume}"
            else:
                shortfall = f"the disk holding {volume} is full"
            return HubError(
                f"Not enough space: {shortfall}. The part already downloaded is kept: free some space and "
                "resume.",
                kind="disk",
            )
        return HubError(
            f"Can't write {part.part_file}: {exc.strerror or exc}. The part already downloaded is kept.",
            kind="disk",
        )

    def _lock_files(self) -> list[DownloadLock]:
        """Lock every destination for this attempt, or raise if another download holds one."""
        locks: list[DownloadLock] = []
        try:
            for part in self._parts:
                lock = DownloadLock(part.dest.with_name(part.dest.name + LOCK_SUFFIX))
                try:
                    acquired = lock.acquire()
                except OSError as exc:
                    raise self._write_error(exc, part) from None
                if not acquired:
                    raise HubError(
                        f"{part.name} is already being downloaded by another LlamaDesk "
                        "window or command: let that download finish, or stop it there first.",
                        kind="other",
                    )
                locks.append(lock)
        except BaseException:
            for lock in reversed(locks):
                lock.release()
            raise
        return locks

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
                for leftover in (part.part_file, sidecar_path(part.part_file)):
                    try:
                        leftover.unlink(missing_ok=True)
                    except OSError as exc:  # a folder in its place, say: not ours to remove
                        log.info("%s: could not delete %s: %s", self.repo_id, leftover, exc.strerror or exc)
        finally:
            for lock in reversed(locks):
                lock.release()

    # -- stopping --------------------------------------------------------------------------

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped()

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

    # -- progress --------------------------------------------------------------------------

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
