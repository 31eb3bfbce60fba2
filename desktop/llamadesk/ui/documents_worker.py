"""Indexing documents off the GUI thread: one job at a time, with progress and Cancel.

A daemon thread starts the indexing child process (:mod:`llamadesk.ui.documents_process`) and
relays its progress and end as queued signals, so no widget is touched from the worker and the GUI
thread never waits on a file being read, nor on a parser holding the GIL. Cancel is a
multiprocessing event the child watches: it stops after the file it is reading. The Documents
embedding model is looked up in the library on the worker too; the child embeds with it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal

from ..docs import DocsError, IndexProgress
from .documents_embedding import EmbeddingChoice
from .documents_process import cancel_event, run_indexing
from .tasks import as_error

log = logging.getLogger(__name__)

__all__ = ["IndexJob"]


class IndexJob(QObject):
    """Adds files to (or refreshes) one collection on a worker thread.

    Signals:
        progress(IndexProgress): a file is being read.
        finished(str, IndexReport): the collection and what changed (``cancelled`` when stopped).
        failed(str, str): the collection and why indexing failed (its message is for the user).
        warning(str): the embedding model cannot be used; the files are indexed by words only.
    """

    progress = Signal(object)
    finished = Signal(str, object)
    failed = Signal(str, str)
    warning = Signal(str)

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._data_dir = data_dir
        self._cancel: Any = cancel_event()
        self._thread: threading.Thread | None = None
        self._busy = False  # GUI thread: from start() until finished or failed is delivered
        self.collection = ""
        self.finished.connect(self._ended)  # connected first: runs before anyone else hears the end
        self.failed.connect(self._ended)

    @property
    def running(self) -> bool:
        """A job was started and its end has not been delivered yet."""
        return self._busy

    def _ended(self, *_args: object) -> None:
        self._busy = False

    def start(
        self, name: str, paths: Sequence[Path] | None, embedding: EmbeddingChoice | Path | None = None
    ) -> None:
        """Index ``paths`` into ``name`` (created when missing); ``paths`` None refreshes the collection.

        ``embedding``: the settings' embedding model (looked up on the worker) or a model file; every
        chunk then gets a vector as well.
        """
        if self._busy or (self._thread is not None and self._thread.is_alive()):
            raise RuntimeError("an indexing job is already running")
        self._busy = True
        self.collection = name
        self._cancel = cancel = cancel_event()
        files = None if paths is None else [Path(p) for p in paths]
        self._thread = threading.Thread(
            target=self._work, args=(name, files, cancel, embedding), name="llamadesk-index", daemon=True
        )
        self._thread.start()

    def cancel(self) -> None:
        """Stop after the file being read; what was indexed so far stays."""
        self._cancel.set()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the worker to end (at close); True when it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(max(0.0, timeout_s))
        return not thread.is_alive()

    def _emit(self, signal_name: str, *args: object) -> None:
        if shiboken6.isValid(self):
            with contextlib.suppress(RuntimeError):  # deleted with its window meanwhile
                getattr(self, signal_name).emit(*args)

    def _work(
        self, name: str, paths: list[Path] | None, cancel: Any, embedding: EmbeddingChoice | Path | None
    ) -> None:
        def progress(update: IndexProgress) -> None:
            self._emit("progress", update)

        def warn(message: str) -> None:
            self._emit("warning", message)

        model: Path | None = None
        try:
            model = embedding.resolve() if isinstance(embedding, EmbeddingChoice) else embedding
        except DocsError as exc:
            warn(str(exc))
        try:
            report = run_indexing(
                self._data_dir,
                name,
                paths,
                cancel=cancel,
                on_progress=progress,
                embedding_model=model,
                on_warning=warn,
            )
        except BaseException as exc:  # reported to the user, never raised on the worker
            self._emit("failed", name, str(as_error(exc)))
            return
        self._emit("finished", name, report)
