"""One download (a file, or every part of a split model) that can pause, resume and cancel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import constants

from ..errors import HubError, translate
from .base import Files
from .install import Install
from .progress import DownloadState, ProgressCallback
from .transfer import Transfer
from .transport import Stopped

if TYPE_CHECKING:
    from .downloader import Downloader

log = logging.getLogger(__name__)


class DownloadTask(Transfer, Install):
    """One download (a file, or all parts of a split model) that can pause, resume and cancel.

    ``start()`` runs it on its own thread; ``run()`` runs it on the caller's. Callbacks come
    from the download thread: at least four progress updates a second while bytes flow,
    and one on every state change (the last one is a finished state). ``pause()`` and
    ``cancel()`` return at once and the thread ends within a second, even while a silent
    server holds a request: its socket is shut down rather than waited on.
    """

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
        super().__init__(downloader, repo_id, files, revision=revision, dest_dir=dest_dir, progress=progress)
        self._exit_hooks: list[Callable[[DownloadTask], None]] = []

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
        """Stop soon (within a second), keeping the partial files and records for a later ``start()``."""
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
        except Stopped:
            paused = self._stop_reason != "cancel"
            if not paused:
                self._delete_parts()
            self._set_state(DownloadState.PAUSED if paused else DownloadState.CANCELLED)
            message = "Download paused." if paused else "Download cancelled."
            raise HubError(message, kind="cancelled") from None
        except (HubError, OSError) as exc:
            # A folder or named pipe where a .part file or record belongs, a read-only folder...
            error = exc if isinstance(exc, HubError) else self._file_error(exc)
            self.error = error
            self._set_state(DownloadState.FAILED, message=str(error))
            if error is exc:
                raise
            raise error from exc
        self._set_state(DownloadState.DONE)
        return result

    @staticmethod
    def _file_error(exc: OSError) -> HubError:
        """A HubError for a file of the download that can't be read or written (says which and why)."""
        reason = exc.strerror or str(exc)
        if exc.filename and str(exc.filename) not in reason:
            reason = f"{exc.filename}: {reason}"
        return HubError(f"Can't download there: {reason}.", kind="disk")

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

    def _run_locked(self) -> Path:
        opener = self.downloader._opener()
        self._resolve(opener)
        todo = [p for p in self._parts if not self._installed(p)]
        for part in todo:
            stale = self._stale_part(part)
            if stale is not None:
                self._restart(part, stale)
        self._check_space(todo)
        for part in todo:
            self._write_record(part.part_file, part, complete=False)
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
