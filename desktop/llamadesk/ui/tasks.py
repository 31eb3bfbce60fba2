"""One way to run background work in the GUI: ``TaskRunner.run(op, success, failure)``.

``op`` runs on a small pool of worker threads; ``success(result)`` or ``failure(error)`` is
then called on the GUI thread (like Anki's ``QueryOp``). Nothing heavy (reading the model
library, exporting, compacting the database, Hub calls) has to run on the GUI thread, and no
widget is ever touched from a worker.

The workers are daemon threads: a call that hangs (a network that swallows packets) never
holds up quitting. ``shutdown`` drops queued work, waits at most a given time for running
work, and makes sure nothing is called back afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QObject, Signal

from ..errors import LlamaDeskError

log = logging.getLogger(__name__)

__all__ = ["TaskRunner", "as_error"]

T = TypeVar("T")
Failure = Callable[[LlamaDeskError], None]


class _Relay(QObject):
    """Carries one result to the GUI thread (it lives there, so the emit is queued)."""

    done = Signal(int, bool, object)  # request id, ok, result or error


def as_error(exc: BaseException) -> LlamaDeskError:
    """The error a failure callback gets: the package's own errors as they are (their message is
    for the user); anything else is a bug, logged with its traceback and reported in one line."""
    if isinstance(exc, LlamaDeskError):
        return exc
    log.error("background task failed", exc_info=exc)
    return LlamaDeskError(f"Something went wrong: {exc}")


class TaskRunner(QObject):
    """Runs callables off the GUI thread and calls back on it.

    ``run(op, success, failure, channel=...)`` returns a request id. Results of a call
    superseded by a newer call on the same ``channel`` are dropped (a newer search wins over
    an older one), and a superseded call still waiting for a thread is not made at all.
    Without a ``failure`` callback, errors go to ``on_error`` (the window's banner) or the log.
    """

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        max_threads: int = 3,
        on_error: Callable[[str], None] | None = None,
        name: str = "task",
    ) -> None:
        super().__init__(parent)
        self._max_threads = max_threads
        self._on_error = on_error
        self._name = name
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._next = 0
        # GUI thread only: what to call when a request ends.
        self._pending: dict[int, tuple[str, Callable[[Any], None], Failure | None]] = {}
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
        """True while a call has not been answered yet."""
        return bool(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    def run(
        self,
        op: Callable[[], T],
        success: Callable[[T], None],
        failure: Failure | None = None,
        *,
        channel: str = "",
    ) -> int:
        """Run ``op`` on a worker; then ``success(result)`` or ``failure(error)`` on the GUI thread."""
        self._next += 1
        request = self._next
        with self._cond:
            if self._closed:
                return request
            self._pending[request] = (channel, success, failure)
            if channel:
                self._latest[channel] = request
            self._queue.append((request, channel, op))
            if self._idle == 0 and self._threads < self._max_threads:
                self._threads += 1
                threading.Thread(target=self._worker, name=f"llamadesk-{self._name}", daemon=True).start()
            self._cond.notify()
        return request

    def cancel(self, channel: str) -> None:
        """Forget the newest call on ``channel``: not made if not yet started, else its answer dropped."""
        with self._cond:
            self._latest.pop(channel, None)

    def shutdown(self, timeout_s: float = 0.0) -> bool:
        """Drop queued calls and give running ones ``timeout_s`` to end; True if none is left running.

        Nothing is called back after this, whatever the running calls do.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._pending.clear()
            self._cond.notify_all()
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._running:
                log.info("leaving %d background %s call(s) behind", self._running, self._name)
            return not self._running

    # -- worker threads

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
                request, channel, op = self._queue.popleft()
                if channel and self._latest.get(channel) != request:
                    self._emit(request, False, None)  # superseded before it started: not made
                    continue
                self._running += 1
            try:
                ok, result = True, op()
            except BaseException as exc:  # a failure is reported, never raised on a worker
                ok, result = False, as_error(exc)
            with self._cond:
                self._running -= 1
                self._cond.notify_all()
                if not self._closed:
                    self._emit(request, ok, result)

    def _emit(self, request: int, ok: bool, result: Any) -> None:
        """Queue an answer for the GUI thread (called under ``_cond``, never after shutdown)."""
        if shiboken6.isValid(self._relay):
            with contextlib.suppress(RuntimeError):  # deleted just now with its window
                self._relay.done.emit(request, ok, result)

    # -- GUI thread

    def _on_done(self, request: int, ok: bool, result: Any) -> None:
        entry = self._pending.pop(request, None)
        if entry is None or self._closed:
            return
        channel, success, failure = entry
        with self._cond:
            latest = self._latest.get(channel)
        if channel and latest != request:
            return
        if ok:
            success(result)
        elif result is None:
            return
        elif failure is not None:
            failure(result)
        elif self._on_error is not None:
            self._on_error(str(result))
        else:
            log.warning("background %s call failed: %s", self._name, result)
