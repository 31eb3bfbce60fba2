"""The model library's list for the GUI, kept off the GUI thread: first what ``stat`` and the
header cache know (at once, even for hundreds of models), then the headers not read yet.

``refresh()`` lists the library on a :class:`~llamadesk.ui.tasks.TaskRunner` worker with
``list_cached()`` (files whose header was never read are "unchecked"), delivers that list,
then reads the missing headers with ``scan()``, delivering what it read a few times a second.
The model picker and My models share one listing, so each header is read once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal

from ..errors import LlamaDeskError
from .tasks import TaskRunner

__all__ = ["CHECKING_TEXT", "UNCHECKED", "Library", "LibraryListing"]

UNCHECKED = "unchecked"  # ``hub.library.UNCHECKED``, without importing the library on the GUI thread
CHECKING_TEXT = "Checking…"  # what an unchecked model says until its header is read
DELIVERY_INTERVAL_MS = 150  # models read in the background reach the views at most this often


class Library(Protocol):
    """The local model library (``hub.library.ModelLibrary``)."""

    models_dir: Path
    warning: str | None

    def list_cached(self) -> list[Any]: ...

    def scan(
        self,
        on_model: Callable[[Any], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Any]: ...

    def import_model(self, path: str | Path, *, copy: bool = False) -> Any: ...

    def remove(self, key: str) -> Any: ...


class LibraryListing(QObject):
    """The library's models as last listed, and the background work that keeps them current.

    ``open_library`` is called on a worker thread (creating the library imports the Hub code).

    Signals:
        changed(list): the whole list: the cached one first, then again as headers are read.
        reading(int): how many headers are left to read; 0 when there are none (or it stopped).
        finished(list): the list is complete, every header read (or known to be unreadable).
        failed(str): the library could not be listed.
    """

    changed = Signal(object)
    reading = Signal(int)
    finished = Signal(object)
    failed = Signal(str)
    _modelsRead = Signal(int)  # from the scanning thread: models of listing number n were read

    def __init__(
        self, tasks: TaskRunner, open_library: Callable[[], Library], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._tasks = tasks
        self._open_library = open_library
        self.models: list[Any] | None = None  # None until the first list arrives
        self._real: dict[str, str] = {}  # resolved path -> key, for models asked for by another path
        self._number = 0  # the current listing; answers of older ones are dropped
        self._busy = False
        self._left = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._read: list[Any] = []  # read by the scanning thread, not delivered yet (under _lock)
        self._deliver_timer = QTimer(self)
        self._deliver_timer.setSingleShot(True)
        self._deliver_timer.setInterval(DELIVERY_INTERVAL_MS)
        self._deliver_timer.timeout.connect(self._deliver_read)
        self._modelsRead.connect(self._on_models_read)

    @property
    def busy(self) -> bool:
        """True from ``refresh()`` until the list is complete (or listing failed or stopped)."""
        return self._busy

    def refresh(self) -> None:
        """List the library again in the background. A listing still running is dropped: one
        not begun is never made, and what a running scan has not read yet the new one reads."""
        self._stop.set()
        self._number += 1
        number = self._number
        self._stop = threading.Event()
        self._busy = True
        self._tasks.cancel("library-scan")
        with self._lock:
            self._read = []
        self._deliver_timer.stop()
        opener = self._open_library

        def listed() -> tuple[Library, list[Any], dict[str, str]]:
            library = opener()
            models = library.list_cached()
            return library, models, {os.path.realpath(m.path): m.key for m in models}

        self._tasks.run(
            listed,
            lambda result: self._on_listed(number, *result),
            lambda error: self._on_failed(number, error),
            channel="library-list",
        )

    def stop(self) -> None:
        """Stop reading headers; the models not read yet stay unchecked."""
        self._stop.set()

    def find(self, path: str | Path) -> Any:
        """The listed model for ``path`` (any spelling: a link, ".."), without reading it; None if unknown."""
        if self.models is None:
            return None
        wanted = str(path)
        found = next((m for m in self.models if str(m.path) == wanted), None)
        if found is None:
            key = self._real.get(os.path.realpath(wanted))  # a few stats, no read
            found = next((m for m in self.models if m.key == key), None) if key else None
        return found

    def update(self, model: Any) -> None:
        """Show ``model`` (just imported, say) now, before the next listing brings it."""
        models = [m for m in self.models or [] if m.key != model.key]
        models.append(model)
        models.sort(key=lambda m: (m.source != "starter", m.kind != "model", m.name.lower(), m.key))
        self._real[os.path.realpath(model.path)] = model.key
        self.models = models
        self.changed.emit(list(models))

    def discard(self, key: str) -> None:
        """Stop showing the model ``key`` (just removed), before the next listing."""
        if self.models is not None:
            self.models = [m for m in self.models if m.key != key]
            self.changed.emit(list(self.models))

    # -- the two steps

    def _on_listed(self, number: int, library: Library, models: list[Any], real: dict[str, str]) -> None:
        if number != self._number:
            return
        self.models, self._real = models, real
        self._left = sum(1 for m in models if m.state == UNCHECKED)
        self.changed.emit(list(models))
        if not self._left:
            self._finish(number, models)
            return
        self.reading.emit(self._left)
        stop, tasks = self._stop, self._tasks

        def found(model: Any) -> None:  # on the scanning thread
            with self._lock:
                self._read.append(model)
                first = len(self._read) == 1
            if first and shiboken6.isValid(self):
                with contextlib.suppress(RuntimeError):  # deleted just now with its window
                    self._modelsRead.emit(number)

        self._tasks.run(
            lambda: library.scan(on_model=found, should_stop=lambda: stop.is_set() or tasks.closed),
            lambda models: self._finish(number, models),
            lambda error: self._on_failed(number, error),
            channel="library-scan",
        )

    def _on_models_read(self, number: int) -> None:
        if number == self._number and not self._deliver_timer.isActive():
            self._deliver_timer.start()

    def _deliver_read(self) -> None:
        with self._lock:
            read, self._read = self._read, []
        if not read or self.models is None:
            return
        by_key = {m.key: m for m in read}
        self.models = [by_key.get(m.key, m) for m in self.models]
        self._left = max(0, self._left - len(read))
        self.changed.emit(list(self.models))
        self.reading.emit(self._left)

    def _finish(self, number: int, models: list[Any]) -> None:
        if number != self._number:
            return
        self._deliver_timer.stop()
        with self._lock:
            self._read = []
        self._busy = False
        if self.models is not models:
            self.models = models
            self.changed.emit(list(models))
        self.reading.emit(0)
        self.finished.emit(list(models))

    def _on_failed(self, number: int, error: LlamaDeskError) -> None:
        if number != self._number:
            return
        self._busy = False
        self.reading.emit(0)
        self.failed.emit(str(error))
