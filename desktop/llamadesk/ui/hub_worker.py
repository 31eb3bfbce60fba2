"""A Qt face for the Hub download queue (catalog calls run through ``ui.tasks.TaskRunner``).

Nothing here touches a widget. Download callbacks arrive on download threads and are
re-emitted as signals of an object that lives on the GUI thread, so Qt queues them there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from ..hub import DownloadProgress, DownloadQueue, DownloadTask, FilePart, ModelFile

log = logging.getLogger(__name__)


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

    def shutdown(self, timeout: float = 2.0) -> None:
        """Pause every download (partial files are kept for next time); wait at most ``timeout``
        seconds for the threads (a pause closes the connection, so they end within moments)."""
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
