"""Indexing in a separate process: reading PDFs and Word files never holds the window's GIL.

Parsers (python-docx's XML, pypdf) hold Python's global lock for tens of milliseconds at a time; run
on a thread of the app they made the window stutter (a 78 ms stall measured on 60 .docx files). The
index is written by a child process started with ``spawn``; progress and the report come back over a
queue. Qt-free on purpose: the child imports only this module and ``llamadesk.docs``. A child killed
mid-file loses nothing already committed (the index is SQLite in WAL mode). Given an embedding model,
the child loads it (llama.cpp) and stores a vector for every chunk, so the window never holds a
second copy of the model for indexing.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ..docs import DocumentIndex, IndexProgress, IndexReport, LlamaEmbedder
from ..errors import LlamaDeskError

__all__ = ["POLL_S", "cancel_event", "run_indexing"]

POLL_S = 0.1  # how often the parent looks for a child that died without a word
CANCEL_GRACE_S = 3.0  # after Cancel, how long a file may go on being read before the child is ended


def _child(
    data_dir: Path,
    name: str,
    paths: list[Path] | None,
    events: Any,
    cancel: Any,
    embedding_model: Path | None = None,
) -> None:
    """The child process: index, sending ("progress", IndexProgress) then ("finished", IndexReport)
    or ("failed", message); ("warning", message) when the embedding model cannot be used."""
    # The index only asks ``cancel.is_set()`` between files. Nothing here waits on the event: a
    # process that ends while waiting on a multiprocessing event would block the next ``set()``.
    stop = cast(threading.Event, cancel)

    def progress(update: IndexProgress) -> None:
        events.put(("progress", update))

    embedder: LlamaEmbedder | None = None
    if embedding_model is not None:
        try:
            embedder = LlamaEmbedder(embedding_model)
        except LlamaDeskError as exc:  # indexed by words only; the user is told why
            events.put(("warning", f"{exc} The files are indexed for search by words only."))
    try:
        with DocumentIndex.in_folder(data_dir) as index:
            if paths is None:
                report = index.refresh(name, progress=progress, cancel=stop, embedder=embedder)
            else:
                report = index.add(name, paths, progress=progress, cancel=stop, embedder=embedder)
    except LlamaDeskError as exc:
        events.put(("failed", str(exc)))
        return
    except Exception as exc:  # a bug: reported in one line, never a traceback in the window
        events.put(("failed", f"Something went wrong while indexing: {exc!r}"))
        return
    finally:
        if embedder is not None:
            embedder.close()
    events.put(("finished", report))


def cancel_event() -> Any:
    """An event that cancels a :func:`run_indexing` from any thread of the app, seen by the child at once."""
    return multiprocessing.get_context("spawn").Event()


def run_indexing(
    data_dir: Path,
    name: str,
    paths: list[Path] | None,
    *,
    cancel: Any,
    on_progress: Callable[[IndexProgress], None],
    embedding_model: Path | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> IndexReport:
    """Index ``paths`` into ``name`` (None: refresh it) in a child process and wait for it.

    ``cancel`` comes from :func:`cancel_event`. With ``embedding_model`` (a GGUF file) every chunk
    also gets a vector; when that model cannot be used the files are indexed by words only and
    ``on_warning`` hears why. Raises LlamaDeskError with the child's message, or when the child
    ended without a report.
    """
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    child = context.Process(
        target=_child,
        args=(data_dir, name, paths, events, cancel, embedding_model),
        name="llamadesk-index",
        daemon=True,
    )
    child.start()
    cancelled_at: float | None = None
    try:
        while True:
            try:
                kind, value = events.get(timeout=POLL_S)
            except queue.Empty:
                if child.is_alive():
                    # Cancel is seen between files; one file that keeps the reader busy (a PDF page
                    # pypdf spins on) is not waited for: the child ends, what it committed stays.
                    if cancel.is_set():
                        now = time.monotonic()
                        cancelled_at = cancelled_at if cancelled_at is not None else now
                        if now - cancelled_at >= CANCEL_GRACE_S:
                            child.kill()
                            child.join(1.0)
                            return IndexReport(cancelled=True)
                    continue
                try:  # it may have sent its last word just before it ended
                    kind, value = events.get(timeout=POLL_S)
                except queue.Empty:
                    raise LlamaDeskError(
                        f"indexing stopped unexpectedly (exit code {child.exitcode}); "
                        "what was indexed before is kept"
                    ) from None
            if kind == "progress":
                on_progress(value)
            elif kind == "warning":
                if on_warning is not None:
                    on_warning(str(value))
            elif kind == "finished":
                return value
            else:
                raise LlamaDeskError(str(value))
    finally:
        cancel.set()  # a child still running (the parent gave up on it) stops after its file
        child.join(5.0)
        if child.is_alive():
            child.kill()
            child.join(1.0)
        events.close()
