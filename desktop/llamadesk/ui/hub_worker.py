"""Background runners for the Hub: catalog calls on background threads, and a Qt face for the download queue.

Nothing here touches a widget. Results and download callbacks arrive on worker threads and
are re-emitted as signals of objects that live on the GUI thread, so Qt queues them there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from ..errors import LlamaDeskError

if TYPE_CHECKING:
    from ..hub import DownloadProgress, DownloadQueue, DownloadTask, FilePart, ModelFile

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Carries one background result to the GUI thread (it lives there, so the emit is queued)."""

    done = Signal(int, bool, object)  # request id, ok, result or error message


class HubTasks(QObject):
    """Runs catalog calls off the GUI thread; each call has a success and a failure path.

    ``run(work, success, failure)`` returns a request id; results of a call superseded by a
    newer call with the same ``channel`` are dropped (a newer search wins over an older one),
    and a superseded call still waiting for a thread is not made at all (clicking through ten
    repositories fetches the last one, not all ten in turn).

    The threads are daemon threads: a Hub call that hangs (a network that swallows packets)
    never holds up quitting. ``shutdown`` waits a moment for calls that clean up after
    themselves (an import copy removing its partial file), then leaves the rest behind.
    """

    def __init__(self, parent: QObject | None = None, *, max_threads: int = 3) -> None:
        super().__init__(parent)
        self._max_threads = max_threads
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._next = 0
        # GUI thread only: what to call when a request ends.
        self._pending: dict[int, tuple[str, Callable[[Any], None], Callable[[LlamaDeskError], None]]] = {}
        # Shared with the workers, under ``_cond``.
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, str, Callable[[], Any]]] = deque()
        self._latest: dict[str, int] = {}
        self._threads = 0
        self._idle = 0
        self._running = 0
        self._closed = False

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def run(
        self,
        work: Callable[[], Any],
        success: Callable[[Any], None],
        failure: Callable[[LlamaDeskError], None],
        *,
        channel: str = "",
    ) -> int:
        self._next += 1
        request = self._next
        with self._cond:
            if self._closed:
                return request
            self._pending[request] = (channel, success, failure)
            if channel:
                self._latest[channel] = request
            self._queue.append((request, channel, work))
            if self._idle == 0 and self._threads < self._max_threads:
                self._threads += 1
                threading.Thread(target=self._worker, name="hub-call", daemon=True).start()
            self._cond.notify()
        return request

    def cancel(self, channel: str) -> None:
        """Forget the newest call on ``channel``: not made if not yet started, else its answer dropped."""
        with self._cond:
            self._latest.pop(channel, None)

    def shutdown(self, timeout_ms: int = 2_000) -> bool:
        """Drop queued calls and give running ones ``timeout_ms`` to end; True if none is left running."""
        deadline = time.monotonic() + timeout_ms / 1000
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._pending.clear()
            self._cond.notify_all()
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._running:
                log.info("quitting with %d Hub call(s) still waiting for the network", self._running)
            return not self._running

    def _worker(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._queue and not self._closed:
                    self._cond.wait()
                self._idle -= 1
                if self._closed:
                    self._threads -= 1
                    return
                request, channel, work = self._queue.popleft()
                if channel and self._latest.get(channel) != request:
                    with contextlib.suppress(RuntimeError):  # superseded before it started
                        self._relay.done.emit(request, False, None)
                    continue
                self._running += 1
            ok, result = _call(work)
            with self._cond:
                self._running -= 1
                self._cond.notify_all()
                if not self._closed:  # after shutdown the receiver may be gone
                    with contextlib.suppress(RuntimeError):
                        self._relay.done.emit(request, ok, result)

    def _on_done(self, request: int, ok: bool, result: Any) -> None:
        entry = self._pending.pop(request, None)
        if entry is None:
            return
        channel, success, failure = entry
        with self._cond:
            latest = self._latest.get(channel)
        if channel and latest != request:
            return
        if ok:
            success(result)
        else:
            failure(result)


def _call(work: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, work()
    except LlamaDeskError as exc:
        return False, exc
    except Exception as exc:  # never let a traceback reach the user
        log.exception("background Hub call failed")
        return False, LlamaDeskError(f"Something went wrong: {exc}")


class DownloadManager(QObject):
    """The download queue for the whole app, with its thread callbacks turned into GUI-thread signals.

    Signals:
        taskAdded(object): a ``DownloadTask`` was queued.
        progressChanged(str, object): task id and its ``DownloadProgress`` (≥ 4 a second while bytes flow).
        taskFinished(str, object): a task stopped (done, paused, cancelled or failed); the task.
        downloadFinished(object): the installed ``Path`` of a completed download.
        downloadFailed(str, str): task id and the message for the user.
        taskRemoved(str): a finished task was cleared from the list.
    """

    taskAdded = Signal(object)
    taskRemoved = Signal(str)
    progressChanged = Signal(str, object)
    taskFinished = Signal(str, object)
    downloadFinished = Signal(object)
    downloadFailed = Signal(str, str)
    _progress = Signal(object, object)
    _finished = Signal(object)

    def __init__(
        self,
        models_dir: Path,
        *,
        token: str | None = None,
        endpoint: str | None = None,
        max_parallel: int = 1,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        from ..hub import Downloader, DownloadQueue

        self.downloader = Downloader(models_dir, endpoint=endpoint, token=token)
        self.queue: DownloadQueue = DownloadQueue(
            self.downloader,
            max_parallel=max_parallel,
            on_progress=self._on_thread_progress,
            on_finished=self._on_thread_finished,
        )
        self._closed = False
        self._reported: set[tuple[str, str]] = set()
        self._progress.connect(self._emit_progress)
        self._finished.connect(self._emit_finished)

    # -- called from download threads: only emit ---------------------------------------------

    def _on_thread_progress(self, task: DownloadTask, progress: DownloadProgress) -> None:
        if not self._closed:
            self._progress.emit(task, progress)

    def _on_thread_finished(self, task: DownloadTask) -> None:
        if not self._closed:
            self._finished.emit(task)

    # -- GUI thread ----------------------------------------------------------------------------

    @property
    def tasks(self) -> list[DownloadTask]:
        return self.queue.tasks

    def set_token(self, token: str | None) -> None:
        """Use a new access token for downloads started from now on (set in Preferences)."""
        self.downloader._token = token or None

    def set_models_dir(self, folder: Path) -> None:
        """Put downloads queued from now on into ``folder`` (queued ones keep their place)."""
        self.downloader.models_dir = Path(folder)

    def set_max_parallel(self, value: int) -> None:
        self.queue.max_parallel = value

    def add(
        self, repo_id: str, files: ModelFile | Sequence[str | FilePart] | str, *, revision: str = "main"
    ) -> DownloadTask:
        """Queue a download; raises ``HubError`` when it can't be queued."""
        known = {t.id for t in self.queue.tasks}
        task = self.queue.add(repo_id, files, revision=revision)
        if task.id not in known:
            self.taskAdded.emit(task)
        else:  # a paused or failed task taken up again: a new failure must be reported again
            self._reported.discard((task.id, "failed"))
        return task

    def pause(self, task: DownloadTask) -> None:
        self.queue.pause(task)

    def resume(self, task: DownloadTask) -> None:
        self._reported.discard((task.id, "failed"))
        self.queue.resume(task)

    def cancel(self, task: DownloadTask) -> None:
        self.queue.cancel(task)

    def clear_finished(self) -> int:
        """Forget downloads that are done or cancelled (paused and failed ones stay: they can resume)."""
        from ..hub import DownloadState

        cleared = 0
        for task in self.queue.tasks:
            if task.state in (DownloadState.DONE, DownloadState.CANCELLED) and not task.running:
                self.queue.remove(task)
                self._reported = {key for key in self._reported if key[0] != task.id}
                self.taskRemoved.emit(task.id)
                cleared += 1
        return cleared

    def shutdown(self, timeout: float = 10.0) -> None:
        """Pause every download (partial files are kept for next time) and wait for the threads."""
        if self._closed:
            return
        self.queue.shutdown(timeout)
        self._closed = True

    def _emit_progress(self, task: DownloadTask, progress: DownloadProgress) -> None:
        self.progressChanged.emit(task.id, progress)

    def _emit_finished(self, task: DownloadTask) -> None:
        from ..hub import DownloadState

        state = task.state
        key = (task.id, state.value)
        if key in self._reported and state is not DownloadState.PAUSED:
            return  # the queue may report a stop twice (listener and exit hook)
        self._reported.add(key)
        self.taskFinished.emit(task.id, task)
        if state is DownloadState.DONE:
            self.downloadFinished.emit(task.path)
        elif state is DownloadState.FAILED:
            message = str(task.error) if task.error is not None else "The download failed."
            self.downloadFailed.emit(task.id, message)
