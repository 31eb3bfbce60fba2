"""Runs downloads on background threads, a few at a time, in the order they were added."""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..errors import HubError
from .base import Files
from .downloader import Downloader
from .progress import DownloadProgress, DownloadState
from .task import DownloadTask


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
        files: Files,
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

    def shutdown(self, timeout: float = 1.0) -> bool:
        """Pause every download and wait up to ``timeout`` seconds for the threads to end.

        The .part files and their records are kept, so each download resumes next time. A
        transfer blocked on a silent server does not hold this up: pausing shuts its socket,
        and the threads end well within a second. True when every thread has ended.
        """
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
        ended = True
        for task in running:
            ended = task.wait(max(0.0, deadline - time.monotonic())) and ended
        return ended

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
